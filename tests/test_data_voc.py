"""PASCAL VOC dataset: layouts, splits, GT, label sources and the errors users make."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samwsss.classes import VOC_CLASSES
from samwsss.data import DatasetError, VOCDataset, open_dataset
from samwsss.labelio import write_label_png
from tests.data_fixtures import (
    VOC_GT_LABELS,
    VOC_SIZES,
    VOC_SPLITS,
    VOC_XML_LABELS,
    make_voc_tree,
    voc_expected_gt,
)


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    return make_voc_tree(tmp_path)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_root_forms_are_accepted(voc: Path, level: int) -> None:
    # VOC2012, VOCdevkit and the folder holding VOCdevkit all resolve to the same root.
    data = [voc, voc.parent, voc.parent.parent][level]
    dataset = open_dataset(data, "train")
    assert isinstance(dataset, VOCDataset)
    assert dataset.root == voc
    assert dataset.ids == VOC_SPLITS["train"]
    assert dataset.kind == "voc"
    assert dataset.class_names == VOC_CLASSES


@pytest.mark.parametrize("split", ["train", "val", "trainval", "train_aug"])
def test_splits_images_gt_and_xml_labels(voc: Path, split: str) -> None:
    dataset = open_dataset(voc, split)
    assert dataset.ids == VOC_SPLITS[split]
    assert dataset.has_gt
    assert dataset.gt_dir is not None
    aug = split == "train_aug"
    assert dataset.gt_dir.name == ("SegmentationClassAug" if aug else "SegmentationClass")
    for sample in dataset:
        height, width = VOC_SIZES[sample.image_id]
        assert sample.image.shape == (height, width, 3) and sample.image.dtype == np.uint8
        assert sample.gt is not None and sample.gt.dtype == np.uint8
        np.testing.assert_array_equal(sample.gt, voc_expected_gt(sample.image_id, aug=aug))
        assert sample.labels == VOC_XML_LABELS[sample.image_id]


def test_palette_gt_keeps_255_borders_and_aug_has_none(voc: Path) -> None:
    with Image.open(voc / "SegmentationClass" / "2007_000032.png") as image:
        assert image.mode == "P"  # real palette PNG on disk
    gt = open_dataset(voc, "train").gt("2007_000032")
    assert gt is not None
    assert (gt == 255).sum() > 0
    assert gt[5, 5] == 255 and gt[6, 6] == VOC_CLASSES.index("aeroplane")
    aug = open_dataset(voc, "train_aug").gt("2007_000032")
    assert aug is not None and not (aug == 255).any()


def test_xml_labels_include_difficult_and_ignore_parts(voc: Path) -> None:
    dataset = open_dataset(voc, "val")
    # 2007_000039 has a difficult bottle that is not drawn in the GT.
    bottle, tv = VOC_CLASSES.index("bottle"), VOC_CLASSES.index("tvmonitor")
    assert dataset.labels("2007_000039") == (bottle, tv)
    # person objects carry a <part><name>head</name> that must not be read as a class
    assert open_dataset(voc, "train").labels("2007_000032") == (1, VOC_CLASSES.index("person"))


def test_gt_label_source(voc: Path) -> None:
    dataset = open_dataset(voc, "trainval", label_source="gt")
    assert dataset.label_source == "gt"
    for image_id in dataset.ids:
        assert dataset.labels(image_id) == VOC_GT_LABELS[image_id]
    assert dataset.labels("2007_000039") == (VOC_CLASSES.index("tvmonitor"),)
    assert VOC_XML_LABELS["2007_000039"] != VOC_GT_LABELS["2007_000039"]


def test_annotations_is_a_synonym_of_xml(voc: Path) -> None:
    dataset = open_dataset(voc, "train", label_source="annotations")
    assert dataset.label_source == "xml"
    assert dataset.labels("2008_000002") == VOC_XML_LABELS["2008_000002"]


def test_train_aug_list_in_segmentation_aug_with_paths(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path, aug_list_dir="ImageSets/SegmentationAug", aug_list_style="paths")
    assert not (voc / "ImageSets" / "Segmentation" / "train_aug.txt").exists()
    for name in ("train_aug", "trainaug"):
        dataset = open_dataset(voc, name)
        assert dataset.ids == VOC_SPLITS["train_aug"]
        assert dataset.gt_dir == voc / "SegmentationClassAug"


def test_split_given_as_a_list_file(voc: Path, tmp_path: Path) -> None:
    listing = tmp_path / "my_ids.txt"
    listing.write_text("# hand-picked\n2010_000005\n\n2007_000032 extra-column\n", encoding="utf-8")
    dataset = open_dataset(voc, str(listing))
    assert dataset.split == "my_ids"
    assert dataset.ids == ["2010_000005", "2007_000032"]
    assert dataset.gt_dir == voc / "SegmentationClass"


def test_duplicate_ids_are_used_once(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "dups.txt").write_text(
        "2007_000032\n2008_000002\n2007_000032\n", encoding="utf-8"
    )
    assert open_dataset(voc, "dups").ids == ["2007_000032", "2008_000002"]


def test_test_split_has_no_gt_and_unknown_labels(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("2011_000010\n", encoding="utf-8")
    dataset = open_dataset(voc, "test")
    assert not dataset.has_gt
    sample = dataset[0]
    assert sample.gt is None and sample.labels is None and sample.image.shape == (32, 32, 3)
    with pytest.raises(DatasetError, match="label_source='gt' needs ground truth"):
        open_dataset(voc, "test", label_source="gt")


def test_gt_dir_override(voc: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    for image_id in VOC_SPLITS["train"]:
        label = np.full(VOC_SIZES[image_id], 3, np.uint8)
        write_label_png(other / f"{image_id}.png", label, palette=False)
    dataset = open_dataset(voc, "train", gt_dir=other, label_source="gt")
    assert dataset.labels("2007_000032") == (3,)
    gt = dataset.gt("2008_000002")
    assert gt is not None and (gt == 3).all()


def test_pickle_round_trip(voc: Path) -> None:
    dataset = open_dataset(voc, "trainval")
    dataset.labels(dataset.ids[0])  # fill the label cache first
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.ids == dataset.ids
    for index in range(len(dataset)):
        a, b = dataset[index], clone[index]
        assert a.image_id == b.image_id and a.labels == b.labels
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.gt, b.gt)


def test_mapping_must_keep_voc_classes(voc: Path, tmp_path: Path) -> None:
    names = list(VOC_CLASSES[1:])
    assert open_dataset(voc, "train", mapping=names).mapping.class_names == VOC_CLASSES
    swapped = names[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    expected = "names class 1 'bicycle' but VOC class 1 is 'aeroplane'"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(voc, "train", mapping=swapped)
    with pytest.raises(DatasetError, match="has 3 classes but VOC has 21"):
        open_dataset(voc, "train", mapping=["cat", "dog"])


def test_builtin_mapping_loads_lazily(voc: Path) -> None:
    from samwsss.mapping import builtin_mapping_path

    assert builtin_mapping_path("voc").is_file()
    assert open_dataset(voc, "val").mapping.class_names == VOC_CLASSES


# ----------------------------------------------------------------------------- errors


def test_missing_split_lists_available(voc: Path) -> None:
    splits = "train, train_aug, trainval, val"
    with pytest.raises(DatasetError, match=f"needs a split; available: {splits}"):
        open_dataset(voc)
    with pytest.raises(DatasetError) as info:
        open_dataset(voc, "tarin")
    message = str(info.value)
    assert "'tarin' not found" in message and f"Available splits: {splits}" in message
    assert "ImageSets/Segmentation" in message


def test_missing_train_aug_explains_where_to_put_it(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    with pytest.raises(DatasetError, match="10,582-id list"):
        open_dataset(voc, "train_aug")


def test_listed_id_without_image(voc: Path) -> None:
    (voc / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(DatasetError) as info:
        open_dataset(voc, "train")
    message = str(info.value)
    assert "'2008_000002' (line 2)" in message
    assert str(voc / "JPEGImages" / "2008_000002.jpg") in message
    assert "train.txt" in message


def test_empty_split_file(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="lists no image ids"):
        open_dataset(voc, "val")


def test_xml_class_not_in_class_list(voc: Path) -> None:
    xml = voc / "Annotations" / "2007_000039.xml"
    text = xml.read_text(encoding="utf-8").replace("<name>bottle</name>", "<name>unicorn</name>")
    xml.write_text(text, encoding="utf-8")
    dataset = open_dataset(voc, "val")
    with pytest.raises(DatasetError) as info:
        dataset.labels("2007_000039")
    message = str(info.value)
    assert "'unicorn'" in message and str(xml) in message and "object 2" in message


def test_malformed_xml(voc: Path) -> None:
    xml = voc / "Annotations" / "2007_000032.xml"
    xml.write_text("<annotation><object><name>cat</name>", encoding="utf-8")
    with pytest.raises(DatasetError, match="not valid XML"):
        open_dataset(voc, "train").labels("2007_000032")


def test_missing_xml_suggests_gt_labels(voc: Path) -> None:
    (voc / "Annotations" / "2008_000002.xml").unlink()
    with pytest.raises(DatasetError, match="2008_000002.*label_source='gt'"):
        open_dataset(voc, "train")
    by_gt = open_dataset(voc, "train", label_source="gt")
    assert by_gt.labels("2008_000002") == VOC_GT_LABELS["2008_000002"]
    shutil.rmtree(voc / "Annotations")
    with pytest.raises(DatasetError, match="Annotations not found"):
        open_dataset(voc, "train")


def test_incomplete_gt_folder_names_the_missing_mask(voc: Path) -> None:
    (voc / "SegmentationClass" / "2010_000005.png").unlink()
    with pytest.raises(DatasetError, match="2010_000005.*SegmentationClass"):
        open_dataset(voc, "val")


def test_gt_value_outside_class_list(voc: Path) -> None:
    bad = voc_expected_gt("2007_000032")
    bad[0, 0] = 30
    write_label_png(voc / "SegmentationClass" / "2007_000032.png", bad)
    with pytest.raises(DatasetError, match="holds value 30"):
        open_dataset(voc, "train").gt("2007_000032")


def test_train_aug_without_aug_gt(voc: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.rmtree(voc / "SegmentationClassAug")
    dataset = open_dataset(voc, "train_aug")
    assert not dataset.has_gt and dataset.gt("2011_000010") is None
    assert "SegmentationClassAug not found" in caplog.text
    assert dataset.labels("2011_000010") == VOC_XML_LABELS["2011_000010"]
    with pytest.raises(DatasetError, match="needs ground truth"):
        open_dataset(voc, "train_aug", label_source="gt")


def test_bad_options(voc: Path) -> None:
    with pytest.raises(DatasetError, match="label_source='mask'"):
        open_dataset(voc, "train", label_source="mask")
    with pytest.raises(ValueError, match="is for plain image folders"):
        open_dataset(voc, "train", labels=voc / "labels.json")
    with pytest.raises(KeyError, match="not in VOC split"):
        open_dataset(voc, "train").image_path("2007_000039")
