"""Datasets, evaluation inputs and reports on fsspec URLs (``memory://``; no network).

Each test copies a tiny local fixture tree (:mod:`tests.data_fixtures`) into its own
``memory://`` prefix and checks that opening the URL reads back exactly what opening the
local copy does: ids, labels, decoded images, ground truth and class names.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from samwsss.classes import VOC_CLASSES
from samwsss.data import (
    DatasetError,
    ImageReadError,
    SegmentationDataset,
    load_rgb,
    open_dataset,
)
from samwsss.evaluation import (
    EvaluationReport,
    GroundTruthFolder,
    MissingPredictionsError,
    evaluate_folder,
)
from samwsss.labelio import write_label_png
from samwsss.storage import is_remote
from tests.data_fixtures import make_coco_tree, make_image_folder, make_voc_tree


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[str]:
    """A fresh ``memory://`` prefix of this test, removed afterwards."""
    root = f"memory://samwsss-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    try:
        fs.rm(root, recursive=True)
    except FileNotFoundError:
        pass


def upload(local: Path, url: str) -> str:
    """Copy every file under ``local`` to ``url`` (file by file); return ``url``."""
    fs = fsspec.filesystem("memory")
    for folder, _, files in os.walk(local):
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(local).as_posix()
            fs.pipe_file(f"{url}/{relative}", path.read_bytes())
    return url


def assert_same_dataset(local: SegmentationDataset, remote: SegmentationDataset) -> None:
    """Same kind, class names, ids, labels, decoded images and ground truth."""
    assert type(remote) is type(local)
    assert remote.kind == local.kind
    assert remote.class_names == local.class_names
    assert remote.ids == local.ids
    assert remote.has_gt == local.has_gt
    for image_id in local.ids:
        path = remote.image_path(image_id)
        assert is_remote(path) and str(path).startswith("memory://")
        assert path.name == local.image_path(image_id).name
        assert remote.labels(image_id) == local.labels(image_id)
        assert np.array_equal(remote.load_image(image_id), local.load_image(image_id))
        local_gt, remote_gt = local.gt(image_id), remote.gt(image_id)
        if local_gt is None:
            assert remote_gt is None
        else:
            assert remote_gt is not None
            assert remote_gt.dtype == np.uint8
            assert np.array_equal(remote_gt, local_gt)
    for local_sample, remote_sample in zip(local, remote, strict=True):
        assert remote_sample.image_id == local_sample.image_id
        assert remote_sample.labels == local_sample.labels


# --------------------------------------------------------------------------- VOC


@pytest.mark.parametrize(
    ("split", "options"),
    [
        ("val", {}),
        ("train", {"label_source": "gt"}),
        ("train_aug", {}),
    ],
)
def test_voc_from_url_matches_local(
    tmp_path: Path, remote: str, split: str, options: dict[str, Any]
) -> None:
    make_voc_tree(tmp_path)
    url = upload(tmp_path / "VOCdevkit", f"{remote}/VOCdevkit")
    local = open_dataset(tmp_path / "VOCdevkit", split, **options)
    opened = open_dataset(url, split, **options)
    assert_same_dataset(local, opened)
    assert str(opened.root) == f"{url}/VOC2012"
    assert str(opened.gt_dir).startswith(f"{url}/VOC2012/SegmentationClass")


def test_voc_split_file_and_gt_dir_as_urls(tmp_path: Path, remote: str) -> None:
    make_voc_tree(tmp_path)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    url = upload(voc, f"{remote}/VOC2012")
    split_url = f"{url}/ImageSets/Segmentation/val.txt"
    gt_url = f"{url}/SegmentationClassAug"
    local = open_dataset(
        voc, str(voc / "ImageSets/Segmentation/val.txt"), gt_dir=voc / "SegmentationClassAug"
    )
    opened = open_dataset(url, split_url, gt_dir=gt_url)
    assert opened.split == "val"
    assert str(opened.split_file) == split_url
    assert str(opened.gt_dir) == gt_url
    assert_same_dataset(local, opened)


def test_voc_unknown_split_names_the_url(tmp_path: Path, remote: str) -> None:
    make_voc_tree(tmp_path)
    url = upload(tmp_path / "VOCdevkit", f"{remote}/VOCdevkit")
    with pytest.raises(DatasetError, match="VOC split 'nope' not found") as caught:
        open_dataset(url, "nope")
    message = str(caught.value)
    assert f"{url}/VOC2012/ImageSets/Segmentation" in message
    assert "/." not in message  # the root itself is named as the root
    assert "Available splits: train, train_aug, trainval, val" in message


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the memory file system's metadata and read calls."""
    calls: Counter[str] = Counter()
    for method in ("ls", "info", "exists", "isdir", "isfile", "_open", "cat_file"):
        original: Callable[..., Any] = getattr(MemoryFileSystem, method)

        def wrapper(self: Any, *args: Any, _m: str = method, _o: Any = original, **kw: Any) -> Any:
            calls[_m] += 1
            return _o(self, *args, **kw)

        monkeypatch.setattr(MemoryFileSystem, method, wrapper)
    return calls


def _synthetic_voc(url: str, count: int) -> None:
    """A VOC2012 tree of ``count`` undecodable images (opening a dataset decodes none)."""
    fs = fsspec.filesystem("memory")
    ids = [f"2012_{number:06d}" for number in range(count)]
    for image_id in ids:
        fs.pipe_file(f"{url}/JPEGImages/{image_id}.jpg", b"jpeg")
        fs.pipe_file(f"{url}/Annotations/{image_id}.xml", b"<annotation/>")
        fs.pipe_file(f"{url}/SegmentationClass/{image_id}.png", b"png")
    fs.pipe_file(f"{url}/ImageSets/Segmentation/val.txt", "\n".join(ids).encode())


def _synthetic_folder(url: str, count: int) -> None:
    fs = fsspec.filesystem("memory")
    for number in range(count):
        fs.pipe_file(f"{url}/images/img{number:04d}.jpg", b"jpeg")
        fs.pipe_file(f"{url}/gt/img{number:04d}.png", b"png")
    fs.pipe_file(f"{url}/images/sub/x.jpg", b"jpeg")


def test_opening_lists_folders_instead_of_asking_per_image(
    remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _synthetic_voc(f"{remote}/small/VOC2012", 3)
    _synthetic_voc(f"{remote}/large/VOC2012", 60)
    _synthetic_folder(f"{remote}/fsmall", 3)
    _synthetic_folder(f"{remote}/flarge", 60)
    calls = _counting(monkeypatch)
    counts = []
    for name in ("small", "large"):
        calls.clear()
        assert len(open_dataset(f"{remote}/{name}", "val")) in (3, 60)
        counts.append(dict(calls))
    assert counts[0] == counts[1]
    assert sum(counts[0].values()) < 40
    counts = []
    for name in ("fsmall", "flarge"):
        calls.clear()
        dataset = open_dataset(
            f"{remote}/{name}/images", mapping=["cat"], gt_dir=f"{remote}/{name}/gt"
        )
        assert len(dataset) in (3, 60)
        counts.append(dict(calls))
    assert counts[0] == counts[1]


# --------------------------------------------------------------------------- COCO


def test_coco_root_and_image_folder_urls_match_local(tmp_path: Path, remote: str) -> None:
    coco = make_coco_tree(tmp_path)
    url = upload(coco, f"{remote}/coco")
    local = open_dataset(coco, "val2014")
    from_root = open_dataset(url, "val2014")
    from_folder = open_dataset(f"{url}/val2014")
    assert_same_dataset(local, from_root)
    assert_same_dataset(local, from_folder)
    assert str(from_folder.annotation_file) == (f"{url}/annotations/instances_val2014.json")
    # a pickled copy (DataLoader / Ray workers) reloads the annotations from the URL
    copy = pickle.loads(pickle.dumps(from_root))
    for image_id in local.ids:
        gt = local.gt(image_id)
        assert gt is not None
        assert np.array_equal(copy.gt(image_id), gt)


def test_coco_root_without_split_lists_remote_splits(tmp_path: Path, remote: str) -> None:
    coco = make_coco_tree(tmp_path)
    url = upload(coco, f"{remote}/coco")
    with pytest.raises(DatasetError, match=r"is a COCO root; give a split: available val2014"):
        open_dataset(url)


def test_coco_missing_image_is_named_by_url(tmp_path: Path, remote: str) -> None:
    coco = make_coco_tree(tmp_path)
    url = upload(coco, f"{remote}/coco")
    dataset = open_dataset(url, "val2014")
    victim = dataset.ids[0]
    fsspec.filesystem("memory").rm_file(str(dataset.image_path(victim)))
    with pytest.raises(ImageReadError, match="file not found") as caught:
        dataset.load_image(victim)
    assert str(caught.value).startswith(f"{url}/val2014/{victim}.jpg: ")


# --------------------------------------------------------------------------- folder


@pytest.mark.parametrize("labels_name", ["labels_json", "labels_csv"])
def test_folder_with_labels_and_gt_urls_matches_local(
    tmp_path: Path, remote: str, labels_name: str
) -> None:
    fixture = make_image_folder(tmp_path)
    url = upload(tmp_path, f"{remote}/data")
    labels: Path = getattr(fixture, labels_name)
    local = open_dataset(
        fixture.images, labels=labels, gt_dir=fixture.gt_dir, mapping=fixture.mapping
    )
    opened = open_dataset(
        f"{url}/images",
        labels=f"{url}/{labels.name}",
        gt_dir=f"{url}/gt",
        mapping=fixture.mapping,
    )
    assert opened.ids == ["a", "b", "c", "d"]  # notes.txt and extra/e.jpg are not images
    assert_same_dataset(local, opened)
    assert str(opened.labels_file) == f"{url}/{labels.name}"


def test_folder_label_source_gt_from_url(tmp_path: Path, remote: str) -> None:
    fixture = make_image_folder(tmp_path)
    url = upload(tmp_path, f"{remote}/data")
    local = open_dataset(
        fixture.images, gt_dir=fixture.gt_dir, mapping=fixture.mapping, label_source="gt"
    )
    opened = open_dataset(
        f"{url}/images", gt_dir=f"{url}/gt", mapping=fixture.mapping, label_source="gt"
    )
    assert_same_dataset(local, opened)


def test_folder_labels_url_errors_name_the_url(tmp_path: Path, remote: str) -> None:
    fixture = make_image_folder(tmp_path)
    url = upload(tmp_path, f"{remote}/data")
    with pytest.raises(DatasetError, match=f"labels file {url}/missing.json not found"):
        open_dataset(f"{url}/images", labels=f"{url}/missing.json", mapping=fixture.mapping)
    fsspec.filesystem("memory").pipe_file(f"{url}/bad.json", b'{"zebra.jpg": ["cat"]}')
    with pytest.raises(DatasetError, match="not in the image folder: zebra.jpg") as caught:
        open_dataset(f"{url}/images", labels=f"{url}/bad.json", mapping=fixture.mapping)
    assert f"labels file {url}/bad.json" in str(caught.value)


def test_incomplete_remote_gt_dir_is_named(tmp_path: Path, remote: str) -> None:
    fixture = make_image_folder(tmp_path)
    url = upload(tmp_path, f"{remote}/data")
    fsspec.filesystem("memory").rm_file(f"{url}/gt/c.png")
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* have no ground-truth PNG") as caught:
        open_dataset(f"{url}/images", gt_dir=f"{url}/gt", mapping=fixture.mapping)
    assert f"{url}/gt/c.png" in str(caught.value)
    with pytest.raises(DatasetError, match=f"ground-truth folder {url}/nowhere not found"):
        open_dataset(f"{url}/images", gt_dir=f"{url}/nowhere", mapping=fixture.mapping)


# --------------------------------------------------------------------------- errors


def test_url_that_is_not_a_dataset_gives_the_local_message(tmp_path: Path, remote: str) -> None:
    local = tmp_path / "photos"
    (local / "holiday").mkdir(parents=True)
    (local / "holiday" / "x.jpg").write_bytes(b"jpeg")
    (local / "readme.txt").write_text("no images here\n", encoding="utf-8")
    url = upload(local, f"{remote}/photos")
    with pytest.raises(DatasetError) as local_error:
        open_dataset(local)
    with pytest.raises(DatasetError) as remote_error:
        open_dataset(url)
    assert "holds no images" in str(remote_error.value)
    assert "point at one of holiday" in str(remote_error.value)
    assert str(remote_error.value).replace(url, "ROOT") == str(local_error.value).replace(
        str(local), "ROOT"
    )


def test_missing_and_file_urls(remote: str) -> None:
    with pytest.raises(DatasetError, match=f"data path {remote}/nothing does not exist"):
        open_dataset(f"{remote}/nothing")
    fsspec.filesystem("memory").pipe_file(f"{remote}/file.jpg", b"jpeg")
    with pytest.raises(DatasetError, match=f"data path {remote}/file.jpg is a file"):
        open_dataset(f"{remote}/file.jpg")


def test_unreadable_remote_images_name_the_url(tmp_path: Path, remote: str) -> None:
    fixture = make_image_folder(tmp_path)
    url = upload(fixture.images, f"{remote}/images")
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{url}/broken.jpg", b"this is not a JPEG")
    fs.pipe_file(f"{url}/nested.png/inner.png", b"png")  # a folder with an image name
    dataset = open_dataset(url)
    assert dataset.ids == ["a", "b", "broken", "c", "d", "nested"]
    with pytest.raises(ImageReadError, match="cannot decode image") as caught:
        dataset.load_image("broken")
    assert str(caught.value).startswith(f"{url}/broken.jpg: ")
    with pytest.raises(ImageReadError, match=f"^{url}/nested.png: is a folder"):
        dataset.load_image("nested")
    fs.rm_file(f"{url}/a.jpg")
    with pytest.raises(ImageReadError, match=f"^{url}/a.jpg: file not found$"):
        dataset.load_image("a")
    with pytest.raises(ImageReadError, match=f"^{url}/zz.jpg: file not found$"):
        load_rgb(f"{url}/zz.jpg")
    assert load_rgb(f"{url}/b.png").shape == (24, 24, 3)


def test_missing_backend_names_the_package(tmp_path: Path, without_s3fs: None) -> None:
    with pytest.raises(ValueError, match=r"needs s3fs; install it \(pip install s3fs\)"):
        open_dataset("s3://samwsss-no-such-bucket/VOCdevkit", "val")
    with pytest.raises(ValueError, match="needs s3fs"):
        load_rgb("s3://samwsss-no-such-bucket/a.jpg")
    dataset = GroundTruthFolder(_gt_folder(tmp_path / "gt"), VOC_CLASSES)
    with pytest.raises(ValueError, match="needs s3fs"):
        evaluate_folder("s3://samwsss-no-such-bucket/pred", dataset, workers=0)
    with pytest.raises(ValueError, match="needs s3fs"):
        open_dataset(tmp_path / "gt", gt_dir="s3://samwsss-no-such-bucket/gt", mapping="voc")


# --------------------------------------------------------------------------- evaluation


def _gt_folder(folder: Path) -> Path:
    """Three VOC-class ground-truth PNGs in ``folder``."""
    rng = np.random.default_rng(0)
    for number in range(3):
        label = rng.integers(0, 4, size=(12, 16), dtype=np.uint8)
        label[0, :] = 255
        write_label_png(folder / f"img{number}.png", label)
    return folder


def _predictions(dataset: SegmentationDataset, folder: Path) -> Path:
    """Predictions that are each image's GT with a few pixels changed, plus a stray file."""
    for position, image_id in enumerate(dataset.ids):
        gt = dataset.gt(image_id)
        assert gt is not None
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        pred[: position + 2, : position + 3] = (position + 1) % len(dataset.class_names)
        write_label_png(folder / f"{image_id}.png", pred)
    write_label_png(folder / "not_in_dataset.png", np.zeros((4, 4), dtype=np.uint8))
    return folder


def _same_report(local: EvaluationReport, remote: EvaluationReport) -> None:
    assert np.array_equal(remote.metrics.confusion, local.metrics.confusion)
    assert remote.metrics.class_names == local.metrics.class_names
    assert remote.num_images == local.num_images
    assert remote.missing_ids == local.missing_ids
    assert remote.extra_predictions == local.extra_predictions == 1
    assert remote.unreadable == local.unreadable == ()
    assert remote.miou == pytest.approx(local.miou)


@pytest.mark.parametrize(("workers", "backend"), [(0, "thread"), (2, "thread"), (2, "process")])
def test_evaluate_remote_predictions_and_dataset(
    tmp_path: Path, remote: str, workers: int, backend: Any
) -> None:
    make_voc_tree(tmp_path)
    devkit = tmp_path / "VOCdevkit"
    local_dataset = open_dataset(devkit, "trainval")
    pred = _predictions(local_dataset, tmp_path / "pred")
    devkit_url = upload(devkit, f"{remote}/VOCdevkit")
    pred_url = upload(pred, f"{remote}/pred")
    expected = evaluate_folder(pred, local_dataset, workers=0)
    report = evaluate_folder(
        pred_url, open_dataset(devkit_url, "trainval"), workers=workers, backend=backend
    )
    _same_report(expected, report)
    assert report.pred_dir == pred_url
    assert devkit_url in report.description


def test_evaluate_remote_gt_folder_and_write_reports(tmp_path: Path, remote: str) -> None:
    gt = _gt_folder(tmp_path / "gt")
    local_gt = GroundTruthFolder(gt, VOC_CLASSES)
    pred = _predictions(local_gt, tmp_path / "pred")
    gt_url = upload(gt, f"{remote}/gt")
    pred_url = upload(pred, f"{remote}/pred")
    remote_gt = GroundTruthFolder(gt_url, VOC_CLASSES)
    assert remote_gt.ids == local_gt.ids == ["img0", "img1", "img2"]
    assert str(remote_gt.gt_path("img1")) == f"{gt_url}/img1.png"
    expected = evaluate_folder(pred, local_gt, workers=0)
    report = evaluate_folder(pred_url, remote_gt, workers=0)
    _same_report(expected, report)

    json_url = f"{remote}/reports/eval.json"
    plot_url = f"{remote}/reports/iou.png"
    written = report.to_json(json_url)
    assert str(written) == json_url
    fs = fsspec.filesystem("memory")
    data = json.loads(fs.cat_file(json_url))
    assert data["predictions"] == pred_url
    assert data["confusion_matrix"] == expected.metrics.confusion.tolist()
    again = EvaluationReport.from_json(json_url)
    assert np.array_equal(again.metrics.confusion, report.metrics.confusion)
    assert str(report.plot(plot_url)) == plot_url
    assert fs.cat_file(plot_url).startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(fs.ls(f"{remote}/reports", detail=False)) == sorted(
        [fs._strip_protocol(json_url), fs._strip_protocol(plot_url)]
    )


def test_evaluate_remote_errors_name_the_url(tmp_path: Path, remote: str) -> None:
    gt = _gt_folder(tmp_path / "gt")
    dataset = GroundTruthFolder(gt, VOC_CLASSES)
    pred_url = upload(_predictions(dataset, tmp_path / "pred"), f"{remote}/pred")
    fsspec.filesystem("memory").rm_file(f"{pred_url}/img2.png")
    with pytest.raises(MissingPredictionsError, match="img2") as caught:
        evaluate_folder(pred_url, dataset, workers=0)
    assert caught.value.pred_dir == pred_url
    report = evaluate_folder(pred_url, dataset, workers=0, missing="background")
    assert report.missing_ids == ("img2",)
    with pytest.raises(ValueError, match=f"predictions folder '{remote}/none' does not exist"):
        evaluate_folder(f"{remote}/none", dataset, workers=0)
    with pytest.raises(ValueError, match=f"ground-truth folder '{remote}/none' does not exist"):
        GroundTruthFolder(f"{remote}/none", VOC_CLASSES)
