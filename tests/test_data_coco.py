"""COCO dataset: detection forms, labels, both GT rules pixel by pixel, pickling, errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from samwsss.classes import COCO_CLASSES
from samwsss.data import COCODataset, DatasetError, open_dataset
from samwsss.data.coco import annotation_mask, paint_semantic
from samwsss.labelio import write_label_png
from tests.data_fixtures import (
    COCO_CAT42_BOX,
    COCO_LABELS,
    COCO_PERSON42_BOX,
    COCO_SIZES,
    box_mask,
    compressed_rle,
    make_coco_tree,
    uncompressed_rle,
)

# pycocotools 2.0.x decodes through a Cython object numpy 2 warns about; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PERSON, BICYCLE, CAT, DOG = (COCO_CLASSES.index(n) for n in ("person", "bicycle", "cat", "dog"))
ID42, ID73, ID74, ID133 = (f"COCO_val2014_{n:012d}" for n in (42, 73, 74, 133))


@pytest.fixture()
def coco(tmp_path: Path) -> Path:
    return make_coco_tree(tmp_path)


def _annotation_file(coco: Path) -> Path:
    return coco / "annotations" / "instances_val2014.json"


def _edit_json(coco: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = _annotation_file(coco)
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


# Polygons rasterise with pycocotools' convention: the square with corners (10,10)-(20,20)
# covers rows/cols 10..19, exactly the half-open box [10:20, 10:20].
def _dog42() -> np.ndarray:
    return box_mask(*COCO_SIZES[42], 10, 20, 10, 20)


def _expected_42(rule: str) -> np.ndarray:
    label = np.zeros(COCO_SIZES[42], np.uint8)
    label[box_mask(*COCO_SIZES[42], *COCO_PERSON42_BOX)] = PERSON
    if rule == "smallest":  # dog (100 px) beats the person (600 px) that covers it
        label[_dog42()] = DOG
    label[box_mask(*COCO_SIZES[42], *COCO_CAT42_BOX)] = CAT  # smaller and later: wins both ways
    return label  # the crowd car (rows 0..3) is never painted


def _expected_73(rule: str) -> np.ndarray:
    height, width = COCO_SIZES[73]
    bicycle = box_mask(height, width, 2, 10, 2, 12) | box_mask(height, width, 2, 10, 16, 26)
    person = box_mask(height, width, 6, 22, 8, 20)  # 192 px, bicycle 160 px
    label = np.zeros((height, width), np.uint8)
    if rule == "overwrite":
        label[bicycle] = BICYCLE
        label[person] = PERSON
    else:
        label[person] = PERSON
        label[bicycle] = BICYCLE
    return label


def test_image_folder_and_root_forms(coco: Path) -> None:
    by_folder = open_dataset(coco / "val2014")
    by_root = open_dataset(coco, "val2014")
    assert isinstance(by_folder, COCODataset) and isinstance(by_root, COCODataset)
    assert by_folder.ids == by_root.ids == [ID42, ID73, ID74, ID133]  # file-name order
    assert by_folder.kind == "coco" and by_folder.class_names == COCO_CLASSES
    assert open_dataset(coco / "val2014", "val2014").ids == by_folder.ids
    assert by_folder.image_path(ID42) == coco / "val2014" / f"{ID42}.jpg"


def test_labels_exclude_crowd(coco: Path) -> None:
    dataset = open_dataset(coco / "val2014")
    assert {i: dataset.labels(i) for i in dataset.ids} == COCO_LABELS
    assert dataset.labels(ID42) == (PERSON, CAT, DOG)


@pytest.mark.parametrize("rule", ["overwrite", "smallest"])
def test_gt_rules_pixel_by_pixel(coco: Path, rule: str) -> None:
    dataset = open_dataset(coco / "val2014", coco_gt_rule=rule)
    assert dataset.has_gt
    np.testing.assert_array_equal(dataset.gt(ID42), _expected_42(rule))
    np.testing.assert_array_equal(dataset.gt(ID73), _expected_73(rule))
    for image_id, number in ((ID74, 74), (ID133, 133)):  # none / only crowd
        np.testing.assert_array_equal(dataset.gt(image_id), np.zeros(COCO_SIZES[number], np.uint8))
    for sample in dataset:
        assert sample.gt is not None and sample.gt.dtype == np.uint8
        assert not (sample.gt == 255).any()
        assert sample.image.shape == (*sample.gt.shape, 3)


def test_rules_really_differ(coco: Path) -> None:
    overwrite = open_dataset(coco / "val2014").gt(ID42)
    smallest = open_dataset(coco / "val2014", coco_gt_rule="smallest").gt(ID42)
    assert overwrite is not None and smallest is not None
    assert (overwrite == DOG).sum() == 0 and (smallest == DOG).sum() == 100


def test_gt_label_source_follows_the_mask(coco: Path) -> None:
    dataset = open_dataset(coco / "val2014", label_source="gt")
    assert dataset.labels(ID42) == (PERSON, CAT)  # the dog is painted over by the person
    smallest = open_dataset(coco / "val2014", label_source="gt", coco_gt_rule="smallest")
    assert smallest.labels(ID42) == (PERSON, CAT, DOG)


def test_precomputed_gt_dir(coco: Path, tmp_path: Path) -> None:
    gt_dir = tmp_path / "coco_gt"
    for number in COCO_SIZES:
        label = np.full(COCO_SIZES[number], 5, np.uint8)
        write_label_png(gt_dir / f"COCO_val2014_{number:012d}.png", label, palette=False)
    dataset = open_dataset(coco / "val2014", gt_dir=gt_dir)
    gt = dataset.gt(ID73)
    assert gt is not None and gt.shape == COCO_SIZES[73] and (gt == 5).all()
    assert dataset.labels(ID74) == ()  # labels still come from the annotations
    (gt_dir / f"{ID133}.png").unlink()
    with pytest.raises(DatasetError, match=f"{ID133}.*coco_gt"):
        open_dataset(coco / "val2014", gt_dir=gt_dir)


def test_pickle_drops_polygons_and_rebuilds_gt(coco: Path) -> None:
    dataset = open_dataset(coco / "val2014", coco_gt_rule="smallest")
    clone = pickle.loads(pickle.dumps(dataset))
    assert isinstance(clone, COCODataset)
    assert clone._annotations is None  # reloaded from the JSON in the new process
    assert clone.ids == dataset.ids and clone.labels(ID42) == dataset.labels(ID42)
    np.testing.assert_array_equal(clone.gt(ID42), _expected_42("smallest"))
    assert clone._annotations is not None


def test_annotation_mask_forms() -> None:
    mask = box_mask(12, 9, 3, 10, 2, 7)
    mask[5, 0] = True
    np.testing.assert_array_equal(annotation_mask(uncompressed_rle(mask), 12, 9), mask)
    np.testing.assert_array_equal(annotation_mask(compressed_rle(mask), 12, 9), mask)
    polygon = annotation_mask([[2.0, 3.0, 7.0, 3.0, 7.0, 10.0, 2.0, 10.0]], 12, 9)
    np.testing.assert_array_equal(polygon, box_mask(12, 9, 3, 10, 2, 7))
    assert not annotation_mask([[1.0, 1.0, 5.0, 5.0]], 12, 9).any()  # degenerate: skipped
    with pytest.raises(ValueError, match="differs from the image size"):
        annotation_mask(uncompressed_rle(mask), 9, 12)
    with pytest.raises(ValueError, match="list of polygons or an RLE"):
        annotation_mask("nope", 12, 9)


def test_paint_semantic_skips_crowd() -> None:
    crowd = uncompressed_rle(box_mask(4, 4, 0, 4, 0, 4))
    small = uncompressed_rle(box_mask(4, 4, 1, 2, 1, 2))
    label = paint_semantic([(3, False, small, 1), (7, True, crowd, 2)], 4, 4)
    expected = np.zeros((4, 4), np.uint8)
    expected[1, 1] = 3
    np.testing.assert_array_equal(label, expected)


# ----------------------------------------------------------------------------- errors


def test_invalid_json(coco: Path) -> None:
    path = _annotation_file(coco)
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")
    with pytest.raises(DatasetError, match="instances_val2014.json is not valid JSON.*truncated"):
        open_dataset(coco / "val2014")


def test_not_an_instances_file(coco: Path) -> None:
    payload = json.dumps({"images": [], "annotations": []})
    _annotation_file(coco).write_text(payload, encoding="utf-8")
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        open_dataset(coco, "val2014")


def test_listed_image_missing(coco: Path) -> None:
    (coco / "val2014" / f"{ID74}.jpg").unlink()
    with pytest.raises(DatasetError) as info:
        open_dataset(coco / "val2014")
    assert ID74 in str(info.value) and str(coco / "val2014" / f"{ID74}.jpg") in str(info.value)


def test_unknown_category_and_image(coco: Path) -> None:
    def bad_category(data: dict) -> None:  # type: ignore[type-arg]
        data["annotations"][0]["category_id"] = 12  # a gap in COCO's ids

    _edit_json(coco, bad_category)
    with pytest.raises(DatasetError, match="annotation id 101 has unknown category_id 12"):
        open_dataset(coco / "val2014")

    def bad_image(data: dict) -> None:  # type: ignore[type-arg]
        data["annotations"][0]["category_id"] = 18
        data["annotations"][1]["image_id"] = 999

    _edit_json(coco, bad_image)
    with pytest.raises(DatasetError, match="annotation id 201 refers to unknown image_id 999"):
        open_dataset(coco / "val2014")


def test_undecodable_segmentation_names_annotation(coco: Path) -> None:
    def bad_rle(data: dict) -> None:  # type: ignore[type-arg]
        data["annotations"][2]["segmentation"]["size"] = [7, 7]

    _edit_json(coco, bad_rle)
    dataset = open_dataset(coco / "val2014")
    with pytest.raises(DatasetError, match=f"{ID42}.*annotation id 102.*RLE size"):
        dataset.gt(ID42)


def test_root_without_or_with_wrong_split(coco: Path) -> None:
    with pytest.raises(DatasetError, match="COCO root; give a split: available val2014"):
        open_dataset(coco)
    with pytest.raises(DatasetError, match="'train2014' not found: available val2014"):
        open_dataset(coco, "train2014")
    with pytest.raises(DatasetError, match="omit the split"):
        open_dataset(coco / "val2014", "train2014")


def test_direct_class_errors(coco: Path) -> None:
    with pytest.raises(DatasetError, match="available splits.*val2014"):
        COCODataset(coco, "train2014")
    (coco / "train2014").mkdir()
    with pytest.raises(DatasetError, match="instances_train2014.json not found"):
        COCODataset(coco, "train2014")


def test_bad_rule_and_mapping(coco: Path) -> None:
    with pytest.raises(DatasetError, match="coco_gt_rule='largest'"):
        open_dataset(coco / "val2014", coco_gt_rule="largest")
    with pytest.raises(DatasetError, match="COCO has 81"):
        open_dataset(coco / "val2014", mapping=["cat"])
    with pytest.raises(DatasetError, match="is for plain image folders"):
        open_dataset(coco / "val2014", labels="labels.csv")
