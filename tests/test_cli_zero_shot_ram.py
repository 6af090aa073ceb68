"""``samwsss zero-shot`` with a RAM++ checkpoint file: tags -> VOC classes -> boxes -> masks.

The tagger is a tiny RAM++ written in the official checkpoint layout; the CLI is given only
its path (no architecture), so the configuration is read off the tensor shapes, including
its 128-pixel input size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from samwsss.cli import cli
from samwsss.labelio import read_label_png
from samwsss.mapping import load_mapping
from samwsss.testing.ram import TINY_TAGS, official_state_dict, tiny_config, write_checkpoint

#: Image stem -> (height, width).
SIZES = {"a": (40, 56), "b": (64, 48), "c": (33, 70)}
#: Tags given threshold 0 (always fire: a sigmoid is > 0); the rest get 1 (never fire).
FIRED = ("cat", "dog", "person")


@pytest.fixture()
def ram_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    checkpoint = write_checkpoint(
        tmp_path / "tiny_ram_plus.pth", official_state_dict(tiny_config("ram_plus"), seed=4)
    )
    vocabulary = tmp_path / "tags.txt"
    vocabulary.write_text("".join(f"{tag}\n" for tag in TINY_TAGS), encoding="utf-8")
    thresholds = tmp_path / "thresholds.txt"
    thresholds.write_text(
        "".join(f"{0.0 if tag in FIRED else 1.0}\n" for tag in TINY_TAGS), encoding="utf-8"
    )
    return checkpoint, vocabulary, thresholds


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, (height, width) in SIZES.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{stem}.jpg", quality=90)
    return folder


def test_zero_shot_with_ram_checkpoint(
    tmp_path: Path,
    ram_files: tuple[Path, Path, Path],
    images: Path,
    tiny_gdino_small_dir: Path,
    tiny_sam_session_dir: Path,
) -> None:
    checkpoint, vocabulary, thresholds = ram_files
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "zero-shot",
            "--data",
            str(images),
            "--mapping",
            "voc",
            "--tagger",
            str(checkpoint),
            "--ram-vocabulary",
            str(vocabulary),
            "--ram-thresholds",
            str(thresholds),
            "--boxer",
            str(tiny_gdino_small_dir),
            "--masker",
            str(tiny_sam_session_dir),
            "--box-threshold",
            "0.2",
            "--text-threshold",
            "0",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--instances",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output

    voc = load_mapping("voc")
    expected_sources = {voc.classes[voc.class_of_tag(tag)].name: [tag] for tag in FIRED}
    assert set(expected_sources) == {"cat", "dog", "person"}
    for stem, (height, width) in SIZES.items():
        mask = read_label_png(out / "masks" / f"{stem}.png")
        assert mask.shape == (height, width)
        record = json.loads((out / "instances" / f"{stem}.json").read_text())
        assert (record["height"], record["width"]) == (height, width)
        assert set(record["tags"]) == set(FIRED)
        assert all(0.0 < p <= 1.0 for p in record["tags"].values())
        assert record["tag_sources"] == expected_sources
        # boxes are only looked for with the tagged classes' prompts
        assert {a["category_name"] for a in record["annotations"]} <= set(expected_sources)
        labels = set(np.unique(mask).tolist()) - {0, 255}
        assert labels <= {voc.index_of(name) for name in expected_sources}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["complete"] == len(SIZES) and manifest["counts"]["failed"] == 0
