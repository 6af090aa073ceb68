"""open_dataset: what each --data form resolves to, and the messages for wrong paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from samwsss.data import COCODataset, DatasetError, FolderDataset, VOCDataset, open_dataset
from tests.data_fixtures import make_coco_tree, make_image_folder, make_voc_tree


def test_each_form_resolves_to_its_kind(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path / "v")
    coco = make_coco_tree(tmp_path / "c")
    folder = make_image_folder(tmp_path / "f")
    assert isinstance(open_dataset(str(voc.parent), split="val"), VOCDataset)
    assert isinstance(open_dataset(coco / "val2014"), COCODataset)
    assert isinstance(open_dataset(coco, "val2014"), COCODataset)
    assert isinstance(open_dataset(folder.images), FolderDataset)


def test_opened_dataset_passes_through(tmp_path: Path) -> None:
    dataset = open_dataset(make_image_folder(tmp_path).images)
    assert open_dataset(dataset) is dataset
    with pytest.raises(DatasetError, match="already an opened dataset"):
        open_dataset(dataset, "val")


def test_indexing_decodes_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voc = make_voc_tree(tmp_path / "v")
    coco = make_coco_tree(tmp_path / "c")
    folder = make_image_folder(tmp_path / "f")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was opened while indexing")

    monkeypatch.setattr(Image, "open", refuse)
    assert len(open_dataset(voc, "train_aug")) == 3
    assert len(open_dataset(coco / "val2014")) == 4
    labelled = open_dataset(
        folder.images, mapping=folder.mapping, labels=folder.labels_json, gt_dir=folder.gt_dir
    )
    assert len(labelled) == 4


def test_import_stays_light() -> None:
    code = (
        "import sys, samwsss.data\n"
        "names = ('torch', 'pycocotools', 'transformers', 'matplotlib')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_missing_path_and_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist; give a VOC root"):
        open_dataset(tmp_path / "nowhere")
    file = tmp_path / "x.jpg"
    Image.new("RGB", (4, 4)).save(file)
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        open_dataset(file)


def test_voc_without_imagesets(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path)
    shutil.rmtree(voc / "ImageSets")
    with pytest.raises(DatasetError, match="JPEGImages/ but no ImageSets/"):
        open_dataset(voc, "train")
    with pytest.raises(DatasetError, match="JPEGImages/ but no ImageSets/"):
        open_dataset(voc.parent, "train")


def test_wrong_root_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "VOC2012" / "Annotations").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path, "train")
    message = str(info.value)
    assert "applies to VOC and COCO only" in message and "JPEGImages/ + ImageSets/" in message
    expected = "is not a PASCAL VOC root: looked for JPEGImages/ and ImageSets/"
    with pytest.raises(DatasetError, match=expected):
        VOCDataset(tmp_path, "train")


def test_coco_folder_without_annotations_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coco = make_coco_tree(tmp_path)
    (coco / "annotations" / "instances_val2014.json").unlink()
    dataset = open_dataset(coco / "val2014")
    assert isinstance(dataset, FolderDataset) and len(dataset) == 4
    assert "looks like a COCO image folder" in caplog.text
    assert dataset.labels(dataset.ids[0]) is None
