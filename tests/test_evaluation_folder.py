"""evaluate_folder over real PNG files, the ground-truth folder, and the report formats."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samwsss.classes import VOC_CLASSES
from samwsss.data.base import SegmentationDataset
from samwsss.evaluation import (
    ConfusionMatrix,
    EvaluationReport,
    GroundTruthFolder,
    MissingPredictionsError,
    PredictionSizeError,
    evaluate_folder,
)
from samwsss.labelio import write_label_png

NAMES = ("background", "cat", "dog")

# Two images, hand-counted (rows GT, columns prediction):
#   img_a: (0,0) (0,1) (1,1) (1,1) / (2,2) (2,0) (255,2) (1,255->0)
#   img_b: (0,0) (0,0) / (2,2) (255,1)
GT = {
    "img_a": np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8),
    "img_b": np.array([[0, 0], [2, 255]], dtype=np.uint8),
}
PRED = {
    "img_a": np.array([[0, 1, 1, 1], [2, 0, 2, 255]], dtype=np.uint8),
    "img_b": np.array([[0, 0], [2, 1]], dtype=np.uint8),
}
CONFUSION = np.array([[3, 1, 0], [1, 2, 0], [1, 0, 2]], dtype=np.int64)


class MemoryDataset(SegmentationDataset):
    """Ground truth held in memory (ids may be a subset of the prediction files)."""

    kind = "memory"

    def __init__(self, gts: dict[str, np.ndarray], has_gt: bool = True) -> None:
        self.class_names = NAMES
        self.split = "val"
        self._gts = gts
        self._has_gt = has_gt

    @property
    def ids(self) -> list[str]:
        return list(self._gts)

    def image_path(self, image_id: str) -> Path:
        return Path(f"{image_id}.jpg")

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        return None

    @property
    def has_gt(self) -> bool:
        return self._has_gt

    def gt(self, image_id: str) -> np.ndarray | None:
        return self._gts[image_id] if self._has_gt else None


def _write(folder: Path, labels: dict[str, np.ndarray], palette: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, label in labels.items():
        write_label_png(folder / f"{image_id}.png", label, palette=palette)
    return folder


@pytest.fixture()
def gt_dir(tmp_path: Path) -> Path:
    return _write(tmp_path / "gt", GT, palette=True)


@pytest.fixture()
def pred_dir(tmp_path: Path) -> Path:
    return _write(tmp_path / "pred", PRED, palette=False)  # plain PNGs, as the authors wrote


def test_folder_matches_hand_counted_matrix(gt_dir: Path, pred_dir: Path) -> None:
    dataset = GroundTruthFolder(gt_dir, NAMES)
    assert dataset.ids == ["img_a", "img_b"]
    report = evaluate_folder(pred_dir, dataset, workers=1)
    np.testing.assert_array_equal(report.metrics.confusion, CONFUSION)
    assert report.num_images == 2 and report.num_missing == 0
    # IoU = TP / (GT + pred - TP): bg 3/(4+5-3), cat 2/(3+3-2), dog 2/(3+2-2)
    np.testing.assert_allclose(report.metrics.iou, [3 / 6, 2 / 4, 2 / 3])
    assert report.miou == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert report.pixel_accuracy == pytest.approx(7 / 10)
    assert report.dataset_kind == "gt-folder"


@pytest.mark.parametrize(("workers", "backend"), [(2, "thread"), (2, "process"), (None, "thread")])
def test_parallel_backends_agree_with_serial(
    tmp_path: Path, workers: int | None, backend: str
) -> None:
    rng = np.random.default_rng(3)
    gts, preds = {}, {}
    for index in range(23):
        shape = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
        gts[f"i{index:03d}"] = rng.choice([0, 1, 2, 255], size=shape).astype(np.uint8)
        preds[f"i{index:03d}"] = rng.choice([0, 1, 2, 255], size=shape).astype(np.uint8)
    dataset = GroundTruthFolder(_write(tmp_path / "gt", gts), NAMES)
    folder = _write(tmp_path / "pred", preds)
    expected = ConfusionMatrix(3)
    for image_id in gts:
        expected.update(preds[image_id], gts[image_id])
    report = evaluate_folder(
        folder,
        dataset,
        workers=workers,
        backend=backend,
        chunk_size=4,  # type: ignore[arg-type]
    )
    np.testing.assert_array_equal(report.metrics.confusion, expected.counts)
    assert report.num_images == 23


def test_missing_predictions_fail_with_count_and_ids(gt_dir: Path, tmp_path: Path) -> None:
    gts = {f"m{index:02d}": GT["img_b"] for index in range(14)}
    _write(gt_dir, gts)
    pred = _write(tmp_path / "p", {"img_a": PRED["img_a"], "img_b": PRED["img_b"]})
    dataset = GroundTruthFolder(gt_dir, NAMES)
    with pytest.raises(MissingPredictionsError) as info:
        evaluate_folder(pred, dataset)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.missing_ids == tuple(f"m{index:02d}" for index in range(14))
    message = str(error)
    assert "14 of 16 images" in message
    assert "m00, m01" in message and "(4 more)" in message and "m13" not in message
    assert "--missing background" in message


def test_missing_predictions_as_background(gt_dir: Path, tmp_path: Path) -> None:
    pred = _write(tmp_path / "p", {"img_a": PRED["img_a"]})
    report = evaluate_folder(pred, GroundTruthFolder(gt_dir, NAMES), missing="background")
    assert report.missing_ids == ("img_b",) and report.missing_policy == "background"
    # img_b predicted all background: (0,0) (0,0) / (2,0) and its 255 pixel ignored
    expected = np.array([[1, 1, 0], [1, 2, 0], [1, 0, 1]]) + np.array(
        [[2, 0, 0], [0, 0, 0], [1, 0, 0]]
    )
    np.testing.assert_array_equal(report.metrics.confusion, expected)
    assert report.num_images == 2
    assert "1 missing, counted as background" in report.format_table()


def test_size_mismatch_names_image_and_both_sizes(gt_dir: Path, tmp_path: Path) -> None:
    pred = _write(
        tmp_path / "p",
        {"img_a": PRED["img_a"], "img_b": np.zeros((3, 5), dtype=np.uint8)},
    )
    with pytest.raises(PredictionSizeError, match=r"'img_b'.*5x3 \(WxH\).*2x2"):
        evaluate_folder(pred, GroundTruthFolder(gt_dir, NAMES), workers=1)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_worker_errors_reach_the_caller(gt_dir: Path, tmp_path: Path, backend: str) -> None:
    bad = PRED["img_b"].copy()
    bad[0, 0] = 9
    pred = _write(tmp_path / "p", {"img_a": PRED["img_a"], "img_b": bad})
    dataset = GroundTruthFolder(gt_dir, NAMES)
    with pytest.raises(ValueError, match=r"'img_b'.*predicted class value 9"):
        evaluate_folder(pred, dataset, workers=2, backend=backend, chunk_size=1)  # type: ignore
    _write(pred, {"img_b": np.zeros((3, 3), np.uint8)})
    with pytest.raises(PredictionSizeError, match="'img_b'"):
        evaluate_folder(pred, dataset, workers=2, backend=backend, chunk_size=1)  # type: ignore


def test_colour_png_prediction_is_a_clear_error(gt_dir: Path, pred_dir: Path) -> None:
    Image.new("RGB", (2, 2), (128, 0, 0)).save(pred_dir / "img_b.png")
    with pytest.raises(ValueError, match=r"'img_b'.*cannot read prediction.*mode 'RGB'"):
        evaluate_folder(pred_dir, GroundTruthFolder(gt_dir, NAMES), workers=1)


def test_dataset_subset_and_extra_files(pred_dir: Path) -> None:
    _write(pred_dir, {"not_in_split": np.zeros((2, 2), np.uint8)})
    dataset = MemoryDataset({"img_b": GT["img_b"]})
    report = evaluate_folder(pred_dir, dataset)
    np.testing.assert_array_equal(report.metrics.confusion, [[2, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert report.extra_predictions == 2  # img_a and not_in_split
    assert report.split == "val" and report.dataset_kind == "memory"
    assert math.isnan(report.metrics.iou[1])


def test_argument_errors(gt_dir: Path, pred_dir: Path, tmp_path: Path) -> None:
    dataset = GroundTruthFolder(gt_dir, NAMES)
    with pytest.raises(ValueError, match="missing must be"):
        evaluate_folder(pred_dir, dataset, missing="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_folder(tmp_path / "nope", dataset)
    with pytest.raises(ValueError, match="workers"):
        evaluate_folder(pred_dir, dataset, workers=-1)
    with pytest.raises(ValueError, match="backend must be"):
        evaluate_folder(pred_dir, dataset, backend="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        evaluate_folder(pred_dir, dataset, chunk_size=0)
    with pytest.raises(ValueError, match="no ground truth"):
        evaluate_folder(pred_dir, MemoryDataset(GT, has_gt=False))
    with pytest.raises(ValueError, match="holds no .png"):
        GroundTruthFolder(tmp_path, NAMES)
    with pytest.raises(ValueError, match="value 2 is out of range for 2 classes"):
        evaluate_folder(pred_dir, GroundTruthFolder(gt_dir, NAMES[:2]), workers=1)


def test_json_report_round_trip(gt_dir: Path, tmp_path: Path) -> None:
    names = NAMES + ("bird",)  # absent everywhere -> IoU null
    pred = _write(tmp_path / "p", {"img_a": PRED["img_a"]})
    report = evaluate_folder(pred, GroundTruthFolder(gt_dir, names), missing="background")
    path = report.to_json(tmp_path / "out" / "evaluation.json")
    data = json.loads(path.read_text())
    assert data["format"] == "samwsss-evaluation" and data["version"] == 1
    assert data["miou"] == pytest.approx(report.miou)
    assert data["classes"][3] == {
        "index": 3,
        "name": "bird",
        "iou": None,
        "precision": None,
        "recall": None,
        "gt_pixels": 0,
        "pred_pixels": 0,
    }
    assert data["missing_ids"] == ["img_b"] and data["num_missing"] == 1
    assert data["dataset"]["kind"] == "gt-folder"
    assert len(data["confusion_matrix"]) == 4
    assert not list(path.parent.glob(".tmp-*"))
    back = EvaluationReport.from_json(path)
    np.testing.assert_array_equal(back.metrics.confusion, report.metrics.confusion)
    assert back.miou == report.miou and back.missing_ids == report.missing_ids
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a samwsss evaluation report"):
        EvaluationReport.from_json(tmp_path / "other.json")


def test_format_table(gt_dir: Path, pred_dir: Path) -> None:
    names = ("background", "cat", "dog", "a very long class name")
    report = evaluate_folder(pred_dir, GroundTruthFolder(gt_dir, names), workers=1)
    table = report.format_table()
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("class"))
    assert header.split() == ["class", "IoU", "precision", "recall", "GT", "pixels"]
    dog = next(line for line in lines if line.startswith("dog "))
    # dog: IoU 2/3, precision 2/2, recall 2/3, 3 GT pixels
    assert dog.split() == ["dog", "66.67", "100.00", "66.67", "3"]
    long_row = next(line for line in lines if line.startswith("a very long class name"))
    assert long_row.split()[-4:] == ["n/a", "n/a", "n/a", "0"]
    miou_line = next(line for line in lines if line.startswith("mIoU"))
    assert f"{report.miou * 100:.2f}" in miou_line and "3 of 4 classes" in miou_line
    assert any(line.startswith("pixel accuracy") and "70.00" in line for line in lines)


def test_plot_writes_a_png(gt_dir: Path, pred_dir: Path, tmp_path: Path) -> None:
    report = evaluate_folder(pred_dir, GroundTruthFolder(gt_dir, VOC_CLASSES[:3]), workers=1)
    path = report.plot(tmp_path / "charts" / "iou.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        width, height = image.size
    assert width > 300 and height > 200
    assert not list(path.parent.glob(".tmp-*"))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_coco_ground_truth_painted_from_annotations(tmp_path: Path, backend: str) -> None:
    from samwsss.data import open_dataset
    from tests.data_fixtures import make_coco_tree

    dataset = open_dataset(make_coco_tree(tmp_path) / "val2014")
    pred = tmp_path / "pred"
    truth = {image_id: dataset.gt(image_id) for image_id in dataset.ids}
    _write(pred, truth)  # the GT itself, 0..80, no 255: a perfect prediction
    report = evaluate_folder(
        pred,
        dataset,
        workers=2,
        backend=backend,
        chunk_size=1,  # type: ignore[arg-type]
    )
    assert report.num_images == len(truth) and report.dataset_kind == "coco"
    assert report.miou == 1.0 and report.pixel_accuracy == 1.0
    present = sorted({int(v) for label in truth.values() for v in np.unique(label)})
    assert np.flatnonzero(report.metrics.present).tolist() == present
    assert report.metrics.num_classes == 81


def test_auto_backend_avoids_fork_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from samwsss.evaluation import folder

    monkeypatch.setattr(folder, "_start_method", lambda: "fork")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert folder._resolve_backend("auto") == "process"
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert folder._resolve_backend("auto") == "thread"
    monkeypatch.setattr(folder, "_start_method", lambda: "spawn")
    monkeypatch.delitem(sys.modules, "torch")
    assert folder._resolve_backend("auto") == "thread"
    assert folder._resolve_backend("process") == "process"
