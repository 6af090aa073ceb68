"""Plain image folders: scanning, JSON/CSV labels, GT, odd image modes, and user errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samwsss.data import DatasetError, FolderDataset, load_rgb, open_dataset
from samwsss.mapping import MappingError
from tests.data_fixtures import (
    FOLDER_CLASSES,
    FOLDER_LABELS,
    FOLDER_SHAPES,
    FolderFixture,
    folder_expected_gt,
    make_image_folder,
)


@pytest.fixture()
def folder(tmp_path: Path) -> FolderFixture:
    return make_image_folder(tmp_path)


def test_scan_top_level_images_sorted(folder: FolderFixture) -> None:
    dataset = open_dataset(folder.images)
    assert isinstance(dataset, FolderDataset) and dataset.kind == "folder"
    assert dataset.ids == ["a", "b", "c", "d"]  # notes.txt and extra/e.jpg are not read
    assert dataset.class_names == ("background",) and dataset.mapping is None
    assert not dataset.has_gt
    for sample, name in zip(dataset, FOLDER_SHAPES, strict=True):
        assert dataset.image_path(sample.image_id).name == name
        assert sample.image.shape == FOLDER_SHAPES[name] and sample.image.dtype == np.uint8
        assert sample.labels is None and sample.gt is None


@pytest.mark.parametrize("which", ["labels_json", "labels_csv"])
def test_labels_files(folder: FolderFixture, which: str, caplog: pytest.LogCaptureFixture) -> None:
    dataset = open_dataset(folder.images, mapping=folder.mapping, labels=getattr(folder, which))
    assert dataset.class_names == FOLDER_CLASSES
    assert {i: dataset.labels(i) for i in dataset.ids} == FOLDER_LABELS
    assert "1 of 4 images" in caplog.text  # d.jpg is not labelled: unknown, with a warning


def test_csv_without_header_and_with_pipes(folder: FolderFixture, tmp_path: Path) -> None:
    labels = tmp_path / "plain.csv"
    labels.write_text('d.jpg,dog|cat\n"a.jpg"," traffic cone ; CAT "\n', encoding="utf-8")
    dataset = open_dataset(folder.images, mapping=folder.mapping, labels=labels)
    assert dataset.labels("d") == (1, 2) and dataset.labels("a") == (1, 3)
    assert dataset.labels("b") is None


def test_mapping_as_names_and_gt(folder: FolderFixture) -> None:
    dataset = open_dataset(folder.images, mapping=list(FOLDER_CLASSES[1:]), gt_dir=folder.gt_dir)
    assert dataset.has_gt and dataset.class_names == FOLDER_CLASSES
    for sample in dataset:
        np.testing.assert_array_equal(sample.gt, folder_expected_gt(sample.image_id))
        assert sample.gt is not None and sample.gt.shape == sample.image.shape[:2]
    by_gt = open_dataset(
        folder.images, mapping=folder.mapping, gt_dir=folder.gt_dir, label_source="gt"
    )
    assert [by_gt.labels(i) for i in by_gt.ids] == [(1, 2), (3,), (), (1,)]


def test_pickle_round_trip(folder: FolderFixture) -> None:
    dataset = open_dataset(
        folder.images, mapping=folder.mapping, labels=folder.labels_json, gt_dir=folder.gt_dir
    )
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.ids == dataset.ids and clone.mapping == dataset.mapping
    np.testing.assert_array_equal(clone[3].image, dataset[3].image)
    assert clone.labels("a") == (1, 2)


# ------------------------------------------------------------------ images through load_rgb


def test_exif_rotation_is_applied(folder: FolderFixture) -> None:
    image = load_rgb(folder.images / "d.jpg")
    assert image.shape == (40, 30, 3)  # stored 40 wide x 30 high, orientation 6
    top, bottom = image[:15].reshape(-1, 3).mean(0), image[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the stored left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_rgba_and_grayscale(folder: FolderFixture) -> None:
    rgba = load_rgb(folder.images / "b.png")
    assert rgba.shape == (24, 24, 3)
    assert tuple(rgba[0, 0]) == (200, 100, 50)  # alpha dropped, colour kept
    gray = load_rgb(folder.images / "c.jpg")
    assert gray.shape == (20, 28, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert abs(int(gray[10, 10, 0]) - 90) <= 2


def test_corrupt_image_is_named(folder: FolderFixture) -> None:
    (folder.images / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    dataset = open_dataset(folder.images)  # indexing does not decode
    with pytest.raises(ValueError, match="a.jpg"):
        dataset[0]


# ----------------------------------------------------------------------------- errors


def test_labels_need_a_mapping(folder: FolderFixture) -> None:
    with pytest.raises(DatasetError, match="pass mapping"):
        open_dataset(folder.images, labels=folder.labels_csv)
    with pytest.raises(DatasetError, match="ground truth needs a class list"):
        open_dataset(folder.images, gt_dir=folder.gt_dir)


def test_unknown_class_names_file_and_line(folder: FolderFixture) -> None:
    folder.labels_csv.write_text("image,labels\na.jpg,cat\nb.png,cat;dgo\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        open_dataset(folder.images, mapping=folder.mapping, labels=folder.labels_csv)
    message = str(info.value)
    assert f"{folder.labels_csv}:3" in message and "'dgo'" in message and "traffic cone" in message

    folder.labels_json.write_text('{\n  "a.jpg": ["cat"],\n  "c": ["horse"]\n}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"labels.json:3: image 'c'.*'horse'"):
        open_dataset(folder.images, mapping=folder.mapping, labels=folder.labels_json)


def test_labels_naming_missing_images(folder: FolderFixture) -> None:
    folder.labels_json.write_text('{"a": ["cat"], "zebra.jpg": [], "q": ["dog"]}', encoding="utf-8")
    expected = r"names 2 image\(s\) that are not in the image folder: zebra.jpg, q"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(folder.images, mapping=folder.mapping, labels=folder.labels_json)


def test_labels_file_format_errors(folder: FolderFixture, tmp_path: Path) -> None:
    cases = {
        "twice.csv": ("a.jpg,cat\na,dog\n", "already has labels at .*twice.csv:1"),
        "wide.csv": ("a.jpg,cat,dog\n", "expected 2 columns"),
        "broken.json": ('{"a": ["cat"]', "not valid JSON"),
        "list.json": ('[["a", "cat"]]', "must hold a JSON object"),
        "number.json": ('{"a": 3}', "must be a list of class names"),
        "labels.txt": ("a cat\n", r"must end in \.json or \.csv"),
    }
    for name, (text, pattern) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DatasetError, match=pattern):
            open_dataset(folder.images, mapping=folder.mapping, labels=path)
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(folder.images, mapping=folder.mapping, labels=tmp_path / "absent.json")
    with pytest.raises(MappingError, match="not found"):
        open_dataset(folder.images, mapping=tmp_path / "absent.yaml")


def test_empty_folder_and_subfolder_hint(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no images"):
        open_dataset(empty)
    Image.new("RGB", (4, 4)).save(empty / "..hidden.jpg")
    (empty / "photos").mkdir()
    Image.new("RGB", (4, 4)).save(empty / "photos" / "x.jpg")
    with pytest.raises(DatasetError, match="subfolders are not searched: point at one of photos"):
        open_dataset(empty)


def test_duplicate_stems(folder: FolderFixture) -> None:
    Image.new("RGB", (4, 4)).save(folder.images / "a.png")
    with pytest.raises(DatasetError, match="'a.jpg' and 'a.png' share the id 'a'"):
        open_dataset(folder.images)


def test_option_errors(folder: FolderFixture) -> None:
    with pytest.raises(DatasetError, match="split='train' applies to VOC and COCO only"):
        open_dataset(folder.images, "train")
    with pytest.raises(DatasetError, match="label_source='gt' needs gt_dir"):
        open_dataset(folder.images, mapping=folder.mapping, label_source="gt")
    with pytest.raises(DatasetError, match="either a labels file or label_source='gt'"):
        FolderDataset(
            folder.images,
            mapping=folder.mapping,
            labels=folder.labels_csv,
            gt_dir=folder.gt_dir,
            label_source="gt",
        )
    (folder.gt_dir / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* no ground-truth PNG .*: c "):
        open_dataset(folder.images, mapping=folder.mapping, gt_dir=folder.gt_dir)
