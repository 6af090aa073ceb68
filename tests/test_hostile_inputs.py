"""Hostile files: decompression bombs, dangling links, folders named like images and an
unwritable output folder are reported and skipped at every step that opens an image."""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from samwsss.data import open_dataset
from samwsss.evaluation import evaluate_folder
from samwsss.labelio import LabelReadError, read_label_png, write_label_png
from samwsss.training.data import AugmentedSegmentationData
from samwsss.training.predict import iterate_images
from samwsss.training.transforms import TrainAugmentation
from tests.data_fixtures import VOC_SPLITS, make_image_folder, make_voc_tree

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE


def write_bomb_png(path: Path, side: int = 20000) -> None:
    """A PNG whose header claims ``side x side`` pixels (PIL refuses it at open: more than
    twice ``Image.MAX_IMAGE_PIXELS``); the pixel data is left out, as opening never gets
    that far."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _failures(out: Path) -> dict[str, str]:
    lines = (out / "failures" / "failures.jsonl").read_text().splitlines()
    return {json.loads(line)["image_id"]: json.loads(line)["reason"] for line in lines}


def test_a_folder_with_a_bomb_a_dangling_link_and_a_folder_named_like_an_image(
    tmp_path: Path, models: list[str]
) -> None:
    fixture = make_image_folder(tmp_path)
    write_bomb_png(fixture.images / "bomb.png")
    os.symlink(tmp_path / "gone.jpg", fixture.images / "dangling.jpg")
    (fixture.images / "folder.jpg").mkdir()
    out = tmp_path / "run"
    args = [
        "zero-shot", "--data", str(fixture.images), "--mapping", str(fixture.mapping),
        "--tagger", "grounding", "--out", str(out), "--workers", "0", *models,
    ]  # fmt: skip
    result = _run(args)
    assert result.exit_code == UNREADABLE, result.output
    failures = _failures(out)
    assert set(failures) == {"bomb", "dangling", "folder"}
    assert "too large to decode safely" in failures["bomb"]
    assert "dangling symbolic link" in failures["dangling"]
    assert "is a folder" in failures["folder"]
    assert {p.stem for p in (out / "masks").glob("*.png")} == {"a", "b", "c", "d"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"images": 7, "complete": 4, "failed": 3, "remaining": 0}
    assert manifest["last_invocation"]["failed"] == 3
    # a resume skips the known failures, and the counts still describe the whole run
    again = _run(args)
    assert again.exit_code == UNREADABLE, again.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"images": 7, "complete": 4, "failed": 3, "remaining": 0}
    assert manifest["last_invocation"] == {"skipped_complete": 4, "processed": 0, "failed": 0}
    assert "4 of 7 images complete, 3 unreadable" in again.output
    assert len(_failures(out)) == 3


def test_a_voc_split_with_a_bomb_runs_and_evaluates(tmp_path: Path, models: list[str]) -> None:
    voc = make_voc_tree(tmp_path)
    bomb_id = VOC_SPLITS["train_aug"][0]
    write_bomb_png(voc / "JPEGImages" / f"{bomb_id}.jpg")
    out = tmp_path / "run"
    result = _run(
        [
            "text-input", "--data", str(voc), "--split", "train_aug", "--out", str(out),
            "--workers", "1", *models,
        ]
    )  # fmt: skip
    assert result.exit_code == UNREADABLE, result.output
    assert list(_failures(out)) == [bomb_id]
    assert "mIoU" in result.output
    report = json.loads((out / "evaluation.json").read_text())
    assert report["missing_ids"] == [bomb_id]


def test_evaluation_leaves_out_unreadable_masks(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path)
    dataset = open_dataset(voc, "trainval")
    preds = tmp_path / "preds"
    for image_id in dataset.ids:
        write_label_png(preds / f"{image_id}.png", np.asarray(dataset.gt(image_id)))
    bad_pred, bad_gt = dataset.ids[0], dataset.ids[1]
    write_bomb_png(preds / f"{bad_pred}.png")
    write_bomb_png(voc / "SegmentationClass" / f"{bad_gt}.png")
    with pytest.raises(LabelReadError, match="too large"):
        read_label_png(preds / f"{bad_pred}.png")
    report = evaluate_folder(preds, open_dataset(voc, "trainval"), workers=1)
    assert [image_id for image_id, _ in report.unreadable] == [bad_pred, bad_gt]
    assert report.num_images == len(dataset.ids) - 2
    assert report.miou == pytest.approx(1.0)
    assert "2 unreadable, left out" in report.format_table()
    report.to_json(tmp_path / "report.json")
    assert (
        json.loads((tmp_path / "report.json").read_text())["unreadable"][0]["image_id"] == bad_pred
    )


def test_deeplab_training_data_and_prediction_skip_unreadable_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    voc = make_voc_tree(tmp_path)
    dataset = open_dataset(voc, "train")
    bad = dataset.ids[0]
    write_bomb_png(voc / "JPEGImages" / f"{bad}.jpg")
    data = AugmentedSegmentationData(
        open_dataset(voc, "train"), TrainAugmentation(crop_size=16, scale_min=1.0, scale_max=1.0)
    )
    with caplog.at_level(logging.WARNING):
        image, label = data[(0, 0)]  # replaced by the next readable sample
    assert image.shape == (16, 16, 3) and label.shape == (16, 16)
    assert f"skipped {bad} in training" in caplog.text
    failures: dict[str, str] = {}
    decoded = [
        i for batch in iterate_images(dataset, dataset.ids, 2, 0, failures) for i, _ in batch
    ]
    assert decoded == dataset.ids[1:] and list(failures) == [bad]


def test_predict_over_a_dataset_with_a_bomb(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path)
    bad = VOC_SPLITS["val"][0]
    write_bomb_png(voc / "JPEGImages" / f"{bad}.jpg")
    config = tmp_path / "tiny.yaml"
    tiny = {
        "model": {"backbone": "custom", "backbone_layers": [1, 1, 1, 1], "width_per_group": 8},
        "train": {"iterations": 1, "batch_size": 2, "crop_size": 32, "workers": 0},
    }
    config.write_text(yaml.safe_dump(tiny), encoding="utf-8")
    trained = _run(
        [
            "train-deeplab", "--data", str(voc), "--split", "train", "--out", str(tmp_path / "t"),
            "--config", str(config), "--init", "none", "--device", "cpu",
        ]
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--checkpoint", str(tmp_path / "t" / "model_final.pt"), "--data", str(voc),
            "--split", "val", "--out", str(tmp_path / "pred"), "--device", "cpu", "--workers", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 images could not be read" in result.output
    assert not (tmp_path / "pred" / f"{bad}.png").exists()
    assert "mIoU" in result.output


def test_an_unwritable_output_folder_is_named(tmp_path: Path, models: list[str]) -> None:
    fixture = make_image_folder(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(
        cli,
        [
            "zero-shot", "--data", str(fixture.images), "--mapping", str(fixture.mapping),
            "--tagger", "grounding", "--out", str(blocker / "run"), "--workers", "0", *models,
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert f"cannot write the output folder {blocker / 'run'}" in result.output
    assert "Traceback" not in result.output
