"""``samwsss train-deeplab`` / ``samwsss predict`` end to end on a tiny VOC tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from samwsss.cli import cli
from samwsss.labelio import read_label_png, write_label_png
from tests.data_fixtures import VOC_SIZES, VOC_SPLITS, make_voc_tree
from tests.deeplab_fixtures import TINY_MODEL_SECTION, one_torch_thread

TINY_MODEL = {
    "model": TINY_MODEL_SECTION,
    "train": {
        "iterations": 2,
        "batch_size": 2,
        "crop_size": 32,
        "workers": 0,
        "checkpoint_every": 1,
    },
}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


def _invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_train_on_gt_then_predict_and_evaluate(tmp_path) -> None:
    voc = make_voc_tree(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MODEL), encoding="utf-8")
    run = tmp_path / "run"
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--out",
        str(run),
        "--config",
        str(config),
        "--init",
        "none",
        "--device",
        "cpu",
        "--set",
        "lr=0.001",
    )
    assert result.exit_code == 0, result.output
    assert "trained 2 iterations (from 0)" in result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lr"] == 0.001 and saved["backbone_layers"] == [1, 1, 1, 1]
    assert saved["batch_size"] == 2 and saved["split"] == "train_aug" and saved["data"] == str(voc)
    # --resume needs only the run directory: data and settings come from config.yaml
    again = _invoke("train-deeplab", "--out", str(run), "--resume")
    assert again.exit_code == 0, again.output
    assert "trained 2 iterations (from 2)" in again.output

    preds = tmp_path / "preds"
    result = _invoke(
        "predict",
        "--checkpoint",
        str(run / "model_final.pt"),
        "--data",
        str(voc),
        "--split",
        "val",
        "--out",
        str(preds),
        "--scales",
        "0.75,1,1.25",
        "--flip",
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 predictions" in result.output and "mIoU" in result.output
    for image_id in VOC_SPLITS["val"]:
        assert read_label_png(preds / f"{image_id}.png").shape == VOC_SIZES[image_id]
    report = json.loads((preds / "evaluation.json").read_text())
    assert "miou" in json.dumps(report)
    predict_args = [
        "predict",
        "--checkpoint",
        str(run / "model_final.pt"),
        "--data",
        str(voc),
        "--split",
        "val",
        "--out",
        str(preds),
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    # the same checkpoint and settings resume; other scales are refused
    same = _invoke(*predict_args, "--scales", "0.75,1,1.25", "--flip")
    assert same.exit_code == 0, same.output
    assert "wrote 0 predictions" in same.output and "(2 existed)" in same.output
    other = _invoke(*predict_args, "--scales", "1")
    assert other.exit_code == 1
    assert "inference scales" in other.output and "--overwrite" in other.output
    assert (preds / "evaluation.json").is_file()
    redone = _invoke(*predict_args, "--scales", "1", "--overwrite", "--no-eval")
    assert redone.exit_code == 0, redone.output
    assert "wrote 2 predictions" in redone.output and "(0 existed)" in redone.output
    assert not (preds / "evaluation.json").exists()  # the old run's report went with it
    identity = json.loads((preds / "prediction_identity.json").read_text())
    assert identity["inference"]["scales"] == [1.0] and identity["inference"]["flip"] is False
    assert identity["dataset"]["split"] == "val"


def test_train_on_pseudo_masks_and_errors(tmp_path) -> None:
    voc = make_voc_tree(tmp_path)
    masks = tmp_path / "pseudo"
    for image_id in VOC_SPLITS["train"]:
        height, width = VOC_SIZES[image_id]
        mask = np.zeros((height, width), np.uint8)
        mask[: height // 2] = 15  # person
        write_label_png(masks / f"{image_id}.png", mask)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MODEL), encoding="utf-8")
    common = ["--config", str(config), "--init", "none", "--device", "cpu"]
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train",
        "--masks",
        str(masks),
        "--out",
        str(tmp_path / "run"),
        *common,
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model_final.pt").is_file()
    # train_aug has an image without a pseudo mask
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--masks",
        str(masks),
        "--out",
        str(tmp_path / "run2"),
        *common,
    )
    assert result.exit_code == 1 and "have no mask" in result.output
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--masks",
        str(masks),
        "--out",
        str(tmp_path / "run2"),
        "--missing-masks",
        "skip",
        *common,
    )
    assert result.exit_code == 0, result.output
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train",
        "--out",
        str(tmp_path / "run3"),
        "--set",
        "learning_rate=1",
        *common,
    )
    assert result.exit_code == 1 and "unknown config key 'learning_rate'" in result.output
    result = _invoke("train-deeplab", "--out", str(tmp_path / "run4"), *common)
    assert result.exit_code == 1 and "--data" in result.output


def test_predict_plain_folder_without_gt(tmp_path) -> None:
    voc = make_voc_tree(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MODEL), encoding="utf-8")
    run = tmp_path / "run"
    assert (
        _invoke(
            "train-deeplab",
            "--data",
            str(voc),
            "--split",
            "train",
            "--out",
            str(run),
            "--config",
            str(config),
            "--init",
            "none",
            "--device",
            "cpu",
            "--iterations",
            "1",
        ).exit_code
        == 0
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((21, 34, 3), 90, np.uint8)).save(folder / "a.jpg")
    result = _invoke(
        "predict",
        "--checkpoint",
        str(run / "model_final.pt"),
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--plain",
    )
    assert result.exit_code == 0, result.output
    assert read_label_png(tmp_path / "out" / "a.png").shape == (21, 34)
    assert not (tmp_path / "out" / "evaluation.json").exists()
    bad = _invoke(
        "predict",
        "--checkpoint",
        str(run / "model_final.pt"),
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--scales",
        "0,1",
    )
    assert bad.exit_code == 2 and "positive" in bad.output


def test_train_refuses_unusable_class_lists_and_validation_settings(tmp_path) -> None:
    voc = make_voc_tree(tmp_path)
    folder = tmp_path / "photos"
    masks = tmp_path / "masks"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(folder / f"{name}.jpg")
        write_label_png(masks / f"{name}.png", np.zeros((24, 24), np.uint8))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MODEL), encoding="utf-8")
    common = ["--config", str(config), "--init", "none", "--device", "cpu"]
    result = _invoke(
        "train-deeplab",
        "--data",
        str(folder),
        "--masks",
        str(masks),
        "--out",
        str(tmp_path / "run"),
        *common,
    )
    assert result.exit_code == 1
    assert "--mapping voc|coco|FILE" in result.output and "['background']" in result.output
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train",
        "--out",
        str(tmp_path / "run"),
        "--val-every",
        "1",
        *common,
    )
    assert result.exit_code == 1 and "--val-every 1 needs" in result.output
    assert "--val-split" in result.output
    result = _invoke(
        "train-deeplab",
        "--data",
        str(voc),
        "--split",
        "train",
        "--out",
        str(tmp_path / "run"),
        "--val-data",
        str(folder),
        *common,
    )
    assert result.exit_code == 1
    assert "validation dataset has the classes ['background']" in result.output
    assert "'aeroplane'" in result.output
    assert not (tmp_path / "run").exists()  # every check ran before training


def test_deeplab_commands_report_user_errors_and_leave_other_os_errors_alone() -> None:
    """train-deeplab/predict wrap their work in ``fail_cleanly(download_errors=False)``."""
    import click

    from samwsss.cli.options import fail_cleanly

    with pytest.raises(click.ClickException, match="^bad value$"):
        with fail_cleanly(download_errors=False):
            raise ValueError("bad value")
    with pytest.raises(click.ClickException, match="no such file"):
        with fail_cleanly(download_errors=False):
            raise FileNotFoundError("no such file")
    with pytest.raises(PermissionError, match="denied"):
        with fail_cleanly(download_errors=False):
            raise PermissionError("denied")
    with pytest.raises(click.ClickException, match="--tagger"):  # the zero-shot commands
        with fail_cleanly():
            raise PermissionError("denied")
