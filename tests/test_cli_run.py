"""``samwsss text-input`` / ``zero-shot`` end to end on fixture trees with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from samwsss.cli import cli
from samwsss.labelio import read_label_png
from tests.data_fixtures import (
    VOC_SIZES,
    VOC_SPLITS,
    make_coco_tree,
    make_image_folder,
    make_voc_tree,
)


def _run(args: list[str]) -> Result:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for sub in ("masks", "masks_plain", "instances", "overlays")
        for path in sorted((folder / sub).glob("*"))
    }


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc_tree(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def voc_run(voc: Path, models: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "voc_full"
    result = _run(
        [
            "text-input",
            "--data",
            str(voc),
            "--split",
            "train_aug",
            "--out",
            str(out),
            "--plain",
            "--instances",
            "--overlays",
            "2",
            "--workers",
            "2",
            *models,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    return out


def test_text_input_on_voc_writes_every_output(voc_run: Path) -> None:
    for image_id in VOC_SPLITS["train_aug"]:
        height, width = VOC_SIZES[image_id]
        mask = read_label_png(voc_run / "masks" / f"{image_id}.png")
        assert mask.shape == (height, width)
        with Image.open(voc_run / "masks" / f"{image_id}.png") as png:
            assert png.mode == "P"
        with Image.open(voc_run / "masks_plain" / f"{image_id}.png") as png:
            assert png.mode == "L"
        np.testing.assert_array_equal(
            mask, read_label_png(voc_run / "masks_plain" / f"{image_id}.png")
        )
        record = json.loads((voc_run / "instances" / f"{image_id}.json").read_text())
        assert (record["height"], record["width"]) == (height, width)
        for annotation in record["annotations"]:
            x, y, w, h = annotation["bbox"]
            assert 0 <= x <= x + w <= width + 1e-3 and 0 <= y <= y + h <= height + 1e-3
            assert annotation["segmentation"]["size"] == [height, width]
            assert mask.max() >= 1  # something was segmented
    assert len(list((voc_run / "overlays").glob("*.jpg"))) == 2
    manifest = json.loads((voc_run / "manifest.json").read_text())
    assert manifest["counts"] == {"images": 3, "complete": 3, "failed": 0, "remaining": 0}
    assert manifest["last_invocation"] == {"skipped_complete": 0, "processed": 3, "failed": 0}
    assert manifest["environment"]["device"] == "cpu"
    assert manifest["config"]["pipeline"]["box_threshold"] == 0.2
    config = yaml.safe_load((voc_run / "config.yaml").read_text())
    assert config["route"] == "text-input" and config["data"]["split"] == "train_aug"
    report = json.loads((voc_run / "evaluation.json").read_text())
    assert 0.0 <= report["miou"] <= 1.0 and (voc_run / "evaluation_iou.png").is_file()


def test_interrupted_run_resumes_to_identical_outputs(
    voc: Path, voc_run: Path, models: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    args = [
        "text-input",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--out",
        str(out),
        "--plain",
        "--instances",
        "--overlays",
        "2",
        "--workers",
        "0",
        *models,
    ]
    first = _run([*args, "--max-images", "1"])  # "killed" after one image
    assert first.exit_code == 0, first.output
    assert len(list((out / "masks").glob("*.png"))) == 1
    # a crash mid-image leaves an instances file without its mask, and a temp file
    (out / "instances" / "2008_000002.json").write_text("{}")
    (out / "masks" / ".tmp-2011_000010.png.abc").write_bytes(b"\x89PNG partial")
    second = _run(args)
    assert second.exit_code == 0, second.output
    assert "2 images processed, 1 already done" in second.output
    assert not list((out / "masks").glob(".tmp-*"))
    assert _outputs(out) == _outputs(voc_run)


def test_shards_together_equal_one_run(
    voc: Path, voc_run: Path, models: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "sharded"
    base = [
        "text-input",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--out",
        str(out),
        "--plain",
        "--instances",
        "--overlays",
        "2",
        "--workers",
        "0",
        *models,
    ]
    zero = _run([*base, "--shard", "0/2"])
    assert zero.exit_code == 0 and "mIoU" not in zero.output  # waits for shard 1
    one = _run([*base, "--shard", "1/2"])
    assert one.exit_code == 0 and "mIoU" in one.output  # the last shard evaluates all
    assert _outputs(out) == _outputs(voc_run)
    assert (out / "manifest-shard-0-of-2.json").is_file() and (
        out / "manifest-shard-1-of-2.json"
    ).is_file()
    shard0 = json.loads((out / "manifest-shard-0-of-2.json").read_text())["counts"]["complete"]
    shard1 = json.loads((out / "manifest-shard-1-of-2.json").read_text())["counts"]["complete"]
    assert (shard0, shard1) == (2, 1)
    merged = json.loads((out / "manifest.json").read_text())
    assert merged["shards"] == 2 and merged["counts"]["complete"] == 3 and 0 <= merged["miou"] <= 1
    assert merged["last_invocation"]["processed"] == 3


def test_a_different_run_in_the_output_folder_is_refused(
    voc: Path, voc_run: Path, models: list[str]
) -> None:
    args = [
        "text-input",
        "--data",
        str(voc),
        "--split",
        "train_aug",
        "--out",
        str(voc_run),
        "--workers",
        "0",
        *models,
    ]
    refused = CliRunner().invoke(cli, [*args, "--merge-rule", "area"])
    assert (
        refused.exit_code != 0
        and "holds a different run" in refused.output
        and "--overwrite" in refused.output
    )


def test_zero_shot_on_coco_folder_with_grounding_tagger(tmp_path: Path, models: list[str]) -> None:
    coco = make_coco_tree(tmp_path)
    out = tmp_path / "coco_run"
    result = _run(
        [
            "zero-shot",
            "--data",
            str(coco / "val2014"),
            "--out",
            str(out),
            "--tagger",
            "grounding",
            "--instances",
            "--workers",
            "0",
            *models,
        ]
    )
    assert result.exit_code == 0, result.output
    masks = sorted((out / "masks").glob("*.png"))
    assert masks and all(p.stem.startswith("COCO_val2014_") for p in masks)
    from samwsss.classes import COCO_CATEGORY_IDS

    records = [json.loads(p.read_text()) for p in sorted((out / "instances").glob("*.json"))]
    annotated = [r for r in records if r["annotations"]]
    assert annotated, "the grounding tagger found nothing in any image"
    for record in annotated:
        assert all(a["category_id"] in COCO_CATEGORY_IDS for a in record["annotations"])
        assert set(record["tag_sources"]) == {a["category_name"] for a in record["annotations"]}
    assert (out / "evaluation.json").is_file()


def _bad_image_folder(root: Path) -> Path:
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / "good.jpg")
    (folder / "corrupt.jpg").write_bytes(b"this is not a jpeg at all")
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
        folder / "full.jpg", quality=95
    )
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    Image.fromarray(rng.integers(0, 255, (25, 35), dtype=np.uint8), mode="L").save(
        folder / "gray.png"
    )
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), mode="RGBA").save(
        folder / "rgba.png"
    )
    Image.fromarray(rng.integers(0, 255, (22, 33, 3), dtype=np.uint8)).convert("CMYK").save(
        folder / "cmyk.jpg"
    )
    Image.fromarray(rng.integers(0, 65535, (18, 26), dtype=np.uint16)).save(folder / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 40 wide x 30 high, shown 30 wide x 40 high
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
        folder / "rotated.jpg", exif=exif
    )
    Image.fromarray(np.full((1, 1, 3), 128, dtype=np.uint8)).save(folder / "tiny.png")
    Image.fromarray(rng.integers(0, 255, (1600, 2400, 3), dtype=np.uint8)).save(
        folder / "large.jpg", quality=50
    )
    labels = {
        name: ["cat"]
        for name in (
            "good.jpg",
            "corrupt.jpg",
            "truncated.jpg",
            "gray.png",
            "rgba.png",
            "cmyk.jpg",
            "deep16.png",
            "rotated.jpg",
            "tiny.png",
            "large.jpg",
        )
    }
    (root / "labels.json").write_text(json.dumps(labels))
    return folder


def test_bad_images_are_recorded_and_skipped(tmp_path: Path, models: list[str]) -> None:
    folder = _bad_image_folder(tmp_path)
    out = tmp_path / "out"
    result = _run(
        [
            "text-input",
            "--data",
            str(folder),
            "--labels",
            str(tmp_path / "labels.json"),
            "--mapping",
            "voc",
            "--out",
            str(out),
            "--workers",
            "0",
            *models,
        ]
    )
    assert result.exit_code == 3, result.output  # done, with unreadable images
    assert "2 unreadable images (exit code 3" in result.output
    failures = [
        json.loads(line) for line in (out / "failures" / "failures.jsonl").read_text().splitlines()
    ]
    assert sorted(f["image_id"] for f in failures) == ["corrupt", "truncated"]
    assert all(f["reason"] for f in failures)
    expected = {
        "good": (30, 40),
        "gray": (25, 35),
        "rgba": (20, 30),
        "cmyk": (22, 33),
        "deep16": (18, 26),
        "rotated": (40, 30),
        "tiny": (1, 1),
        "large": (1600, 2400),
    }
    for stem, shape in expected.items():
        assert read_label_png(out / "masks" / f"{stem}.png").shape == shape, stem
    again = _run(
        [
            "text-input",
            "--data",
            str(folder),
            "--labels",
            str(tmp_path / "labels.json"),
            "--mapping",
            "voc",
            "--out",
            str(out),
            "--workers",
            "0",
            *models,
        ]
    )
    assert "2 images processed" not in again.output and "8 already done" in again.output
    assert again.exit_code == 3  # the folder still holds two unreadable images


def test_a_run_in_which_no_image_succeeds_fails(tmp_path: Path, models: list[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "labels.json").write_text(json.dumps({"broken.jpg": ["cat"]}))
    result = _run(
        ["text-input", "--data", str(folder), "--labels", str(tmp_path / "labels.json"),
         "--mapping", "voc", "--out", str(tmp_path / "out"), "--workers", "0", *models]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "no image of the run succeeded: 1 unreadable" in result.output
    assert "--retry-failures" in result.output


@pytest.mark.parametrize(
    ("complete", "failed", "torchrun", "code"),
    [(5, 0, False, 0), (5, 2, False, 3), (0, 2, False, 1), (5, 2, True, 0), (0, 2, True, 1),
     (0, 0, False, 0)],
)  # fmt: skip
def test_exit_codes(
    complete: int, failed: int, torchrun: bool, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samwsss.cli.exit_codes import run_exit_code

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    if torchrun:  # torchrun's agent stops every shard when one exits non-zero
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    assert int(run_exit_code(complete, failed)) == code


def test_plain_folder_zero_shot_and_user_errors(tmp_path: Path, models: list[str]) -> None:
    fixture = make_image_folder(tmp_path)
    out = tmp_path / "folder_run"
    result = _run(
        [
            "zero-shot",
            "--data",
            str(fixture.images),
            "--mapping",
            str(fixture.mapping),
            "--tagger",
            "grounding",
            "--out",
            str(out),
            "--workers",
            "0",
            *models,
        ]
    )
    assert result.exit_code == 0, result.output
    assert read_label_png(out / "masks" / "d.png").shape == (40, 30)  # EXIF-rotated
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = CliRunner().invoke(
        cli,
        [
            "zero-shot",
            "--data",
            str(empty),
            "--tagger",
            "grounding",
            "--out",
            str(tmp_path / "o2"),
            *models,
        ],
    )
    assert failed.exit_code != 0 and "no images" in failed.output.lower()
    no_labels = CliRunner().invoke(
        cli, ["text-input", "--data", str(fixture.images), "--out", str(tmp_path / "o3"), *models]
    )
    assert no_labels.exit_code != 0 and "labels" in no_labels.output
    bad_class = tmp_path / "bad.json"
    bad_class.write_text(json.dumps({"a.jpg": ["kitten"]}))
    wrong = CliRunner().invoke(
        cli,
        [
            "text-input",
            "--data",
            str(fixture.images),
            "--labels",
            str(bad_class),
            "--mapping",
            "voc",
            "--out",
            str(tmp_path / "o4"),
            *models,
        ],
    )
    assert wrong.exit_code != 0 and "kitten" in wrong.output


def test_yaml_config_file_with_command_line_override(
    voc: Path, models: list[str], tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "preset": "paper",
                "min-area": 3,
                "split": "val",
                "box_threshold": 0.5,
                "evaluate": True,
            }
        )
    )
    out = tmp_path / "cfg"
    result = _run(
        [
            "text-input",
            "--config",
            str(config),
            "--data",
            str(voc),
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-evaluate",
            *models,
        ]
    )  # models set --box-threshold 0.2
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["pipeline"]["merge_rule"] == "paper"  # the preset named in the YAML file
    assert saved["pipeline"]["min_area"] == 3  # YAML keys may use dashes
    assert saved["pipeline"]["box_threshold"] == 0.2  # the command line wins over the file
    assert saved["data"]["split"] == "val"
    assert not (out / "evaluation.json").exists()  # --no-evaluate wins over the file
    config.write_text(yaml.safe_dump({"merge_rules": "area"}))
    bad = CliRunner().invoke(
        cli,
        [
            "text-input",
            "--config",
            str(config),
            "--data",
            str(voc),
            "--out",
            str(tmp_path / "x"),
            *models,
        ],
    )
    assert bad.exit_code != 0 and "unknown setting(s) merge_rules" in bad.output


def test_set_overrides_every_layer(voc: Path, models: list[str], tmp_path: Path) -> None:
    """``--set key=value`` (the trainer's last layer) wins over the YAML file and the
    options, its values read as YAML; an unknown key names the valid ones."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"min_area": 3, "split": "val"}))
    out = tmp_path / "set"
    args = ["text-input", "--config", str(config), "--data", str(voc), "--out", str(out),
            "--workers", "0", "--no-evaluate", *models]  # fmt: skip
    result = _run([*args, "--set", "min_area=5", "--set", "box-threshold=0.25"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["pipeline"]["min_area"] == 5 and saved["pipeline"]["box_threshold"] == 0.25
    assert saved["data"]["split"] == "val"
    bad = CliRunner().invoke(cli, [*args, "--set", "merge_rules=area"])
    assert bad.exit_code != 0 and "--set: unknown setting(s) merge_rules" in bad.output
    assert "merge_rule" in bad.output
    malformed = CliRunner().invoke(cli, [*args, "--set", "min_area"])
    assert malformed.exit_code != 0 and "must look like key=value" in malformed.output
