"""``samwsss evaluate`` end to end: table on stdout, JSON report and bar chart on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from samwsss.classes import VOC_CLASSES
from samwsss.cli import cli
from samwsss.labelio import write_label_png

# Two VOC-class images, hand-counted (rows GT, columns prediction, 21 classes):
#   a: GT  [[0, 0, 15, 15], [12, 12, 255, 15]]   pred [[0, 15, 15, 15], [12, 0, 12, 255]]
#      -> (0,0) (0,15) (15,15) (15,15) (12,12) (12,0) ignored (15,0)
#   b: GT  [[0, 0], [12, 255]]                   pred [[0, 0], [12, 15]]
#      -> (0,0) (0,0) (12,12) ignored
GT = {
    "2007_000001": np.array([[0, 0, 15, 15], [12, 12, 255, 15]], dtype=np.uint8),
    "2007_000002": np.array([[0, 0], [12, 255]], dtype=np.uint8),
}
PRED = {
    "2007_000001": np.array([[0, 15, 15, 15], [12, 0, 12, 255]], dtype=np.uint8),
    "2007_000002": np.array([[0, 0], [12, 15]], dtype=np.uint8),
}
# background: TP 3, GT 4, pred 5 -> 3/6; person (15): TP 2, GT 3, pred 3 -> 2/4;
# dog (12): TP 2, GT 3, pred 2 -> 2/3; the other 18 classes are absent.
EXPECTED_IOU = {0: 3 / 6, 15: 2 / 4, 12: 2 / 3}


def _write(folder: Path, labels: dict[str, np.ndarray]) -> Path:
    for image_id, label in labels.items():
        write_label_png(folder / f"{image_id}.png", label)
    return folder


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "pred", PRED), _write(tmp_path / "gt", GT)


def test_evaluate_gt_dir_end_to_end(folders: tuple[Path, Path]) -> None:
    pred, gt = folders
    result = CliRunner().invoke(
        cli, ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "voc"]
    )
    assert result.exit_code == 0, result.output
    expected_miou = sum(EXPECTED_IOU.values()) / 3
    assert f"mIoU: {expected_miou * 100:.2f}%" in result.output
    assert "person" in result.output and "tvmonitor" in result.output

    data = json.loads((pred / "evaluation.json").read_text())
    assert data["miou"] == pytest.approx(expected_miou)
    assert data["pixel_accuracy"] == pytest.approx(7 / 10)
    assert data["num_images"] == 2 and data["num_missing"] == 0
    assert [c["name"] for c in data["classes"]] == list(VOC_CLASSES)
    for index, entry in enumerate(data["classes"]):
        if index in EXPECTED_IOU:
            assert entry["iou"] == pytest.approx(EXPECTED_IOU[index])
        else:
            assert entry["iou"] is None and entry["gt_pixels"] == 0
    assert data["classes"][12]["precision"] == 1.0
    assert data["classes"][12]["recall"] == pytest.approx(2 / 3)
    matrix = np.array(data["confusion_matrix"])
    assert matrix.shape == (21, 21) and matrix.sum() == 10
    assert matrix[15, 0] == 1  # the predicted 255 on a person pixel counts as background

    with Image.open(pred / "evaluation_iou.png") as chart:
        assert chart.format == "PNG" and chart.size[1] > 200


def test_report_and_plot_paths_and_no_plot(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = folders
    report = tmp_path / "reports" / "val.json"
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "voc",
         "--report", str(report), "--no-plot", "--workers", "2", "--backend", "process"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["num_images"] == 2
    assert not (pred / "evaluation.json").exists()
    assert not (pred / "evaluation_iou.png").exists()


def test_missing_predictions_fail_then_count_as_background(folders: tuple[Path, Path]) -> None:
    pred, gt = folders
    (pred / "2007_000002.png").unlink()
    args = ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "voc"]
    failed = CliRunner().invoke(cli, args)
    assert failed.exit_code == 1 and isinstance(failed.exception, SystemExit)
    assert "1 of 2 images have no prediction" in failed.output
    assert "2007_000002" in failed.output and "--missing background" in failed.output
    assert not (pred / "evaluation.json").exists()

    passed = CliRunner().invoke(cli, args + ["--missing", "background"])
    assert passed.exit_code == 0, passed.output
    data = json.loads((pred / "evaluation.json").read_text())
    assert data["missing_ids"] == ["2007_000002"] and data["missing_policy"] == "background"
    # image b predicted all background: (0,0) (0,0) (12,0)
    assert data["classes"][12]["iou"] == pytest.approx(1 / 3)


def test_size_mismatch_is_a_clear_error(folders: tuple[Path, Path]) -> None:
    pred, gt = folders
    write_label_png(pred / "2007_000002.png", np.zeros((5, 7), np.uint8))
    result = CliRunner().invoke(
        cli, ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "voc"]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "2007_000002" in result.output and "7x5" in result.output and "2x2" in result.output


def test_usage_errors(folders: tuple[Path, Path]) -> None:
    pred, gt = folders
    runner = CliRunner()
    no_gt = runner.invoke(cli, ["evaluate", "--pred", str(pred)])
    assert no_gt.exit_code != 0 and "--gt-dir" in no_gt.output
    no_mapping = runner.invoke(cli, ["evaluate", "--pred", str(pred), "--gt-dir", str(gt)])
    assert no_mapping.exit_code != 0 and "--mapping" in no_mapping.output
    bad_mapping = runner.invoke(
        cli, ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "nope.yaml"]
    )
    assert bad_mapping.exit_code != 0 and "nope.yaml" in bad_mapping.output
    split_alone = runner.invoke(
        cli,
        ["evaluate", "--pred", str(pred), "--gt-dir", str(gt), "--mapping", "voc",
         "--split", "val"],
    )  # fmt: skip
    assert split_alone.exit_code != 0 and "--split" in split_alone.output


@pytest.mark.parametrize("ground_truth", ["gt-dir", "voc-like"])
def test_a_missing_pred_folder_is_named_before_the_ground_truth(
    folders: tuple[Path, Path], tmp_path: Path, ground_truth: str
) -> None:
    _, gt = folders
    missing = tmp_path / "no_such_masks"
    if ground_truth == "gt-dir":
        truth = ["--gt-dir", str(gt), "--mapping", "voc"]
    else:  # a dataset path that is itself wrong: --pred is still what the message names
        truth = ["--data", str(tmp_path / "not_voc"), "--split", "val"]
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(missing), *truth])
    assert result.exit_code == 1
    assert f"--pred '{missing}' does not exist" in result.output
    assert "ground-truth" not in result.output and "split" not in result.output


def test_evaluate_voc_split_end_to_end(tmp_path: Path) -> None:
    from tests.data_fixtures import VOC_SPLITS, make_voc_tree, voc_expected_gt

    voc_root = make_voc_tree(tmp_path / "data")
    perfect, empty = VOC_SPLITS["val"]  # 2007_000039 (tvmonitor), 2010_000005 (table, chair)
    pred = tmp_path / "pred"
    gt_perfect, gt_empty = voc_expected_gt(perfect), voc_expected_gt(empty)
    write_label_png(pred / f"{perfect}.png", np.where(gt_perfect == 255, 0, gt_perfect))
    write_label_png(pred / f"{empty}.png", np.zeros_like(gt_empty))
    write_label_png(pred / "2007_000032.png", np.zeros((40, 56), np.uint8))  # train id: ignored

    result = CliRunner().invoke(
        cli, ["evaluate", "--pred", str(pred), "--data", str(voc_root), "--split", "val"]
    )
    assert result.exit_code == 0, result.output
    # background: every GT background pixel is right; predicted background is also every
    # valid pixel of the all-background image -> IoU = TP / predicted background.
    tp = int((gt_perfect == 0).sum() + (gt_empty == 0).sum())
    predicted = int((gt_perfect == 0).sum() + (gt_empty != 255).sum())
    expected = {0: tp / predicted, 20: 1.0, 11: 0.0, 9: 0.0}  # bg, tvmonitor, table, chair
    data = json.loads((pred / "evaluation.json").read_text())
    assert data["dataset"]["kind"] == "voc" and data["dataset"]["split"] == "val"
    assert data["num_images"] == 2 and data["extra_predictions"] == 1
    for index, entry in enumerate(data["classes"]):
        assert entry["iou"] == (pytest.approx(expected[index]) if index in expected else None)
    assert data["miou"] == pytest.approx(sum(expected.values()) / 4)
    assert f"mIoU: {sum(expected.values()) / 4 * 100:.2f}%" in result.output
    assert (pred / "evaluation_iou.png").is_file()

    wrong_split = CliRunner().invoke(
        cli, ["evaluate", "--pred", str(pred), "--data", str(voc_root), "--split", "nope"]
    )
    assert wrong_split.exit_code == 1 and "nope" in wrong_split.output
    assert isinstance(wrong_split.exception, SystemExit)  # a ClickException, not a crash
