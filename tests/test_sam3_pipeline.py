"""The ``sam3`` preset end to end: SAM 3 replaces boxer + masker in both routes, its
presence score tags zero-shot, and a run resumes like the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.labelio import read_label_png
from samwsss.testing.sam3 import build_tiny_sam3
from tests.data_fixtures import make_voc_tree


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"))


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc_tree(tmp_path_factory.mktemp("voc"))


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for sub in ("masks", "instances")
        for path in sorted((folder / sub).glob("*"))
    }


def test_the_sam3_preset_builds_one_segmenter_and_no_boxer_or_masker(sam3_dir: Path) -> None:
    from samwsss.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_preset(
        "sam3", mapping="voc", device="cpu", segmenter=str(sam3_dir), segment_threshold=0.2
    )
    assert pipe.masker is None and set(pipe.stages) == {"segmenter"}
    assert type(pipe.boxer).__name__ == "Sam3Segmenter" and pipe.boxer.score_threshold == 0.2
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    result = pipe.text_input(image, ["cat", "dog"])
    assert result.mask.shape == (60, 90)
    assert result.detections.masks is not None and len(result.detections) > 0
    assert set(result.detections.class_ids.tolist()) <= {8, 12}  # VOC cat, dog
    direct = pipe.boxer([image], [[(8, "cat"), (12, "dog")]])[0]
    assert np.array_equal(pipe.merger([direct])[0].numpy(), result.mask)
    tagger = pipe.require_tagger()
    assert type(tagger).__name__ == "Sam3PresenceTagger" and tagger.segmenter is pipe.boxer
    assert set(pipe.stages) == {"segmenter", "tagger"}


@pytest.mark.parametrize("route", ["text-input", "zero-shot"])
def test_a_sam3_run_writes_masks_and_resumes(
    sam3_dir: Path, voc: Path, tmp_path: Path, route: str
) -> None:
    out = tmp_path / "run"
    args = [
        route, "--data", str(voc), "--split", "train_aug", "--out", str(out),
        "--preset", "sam3", "--segmenter", str(sam3_dir), "--segment-threshold", "0.2",
        "--device", "cpu", "--workers", "0", "--instances", "--batch-size", "2",
        "--threads", "1",
    ]  # fmt: skip
    if route == "zero-shot":
        args += ["--tag-threshold", "0.3"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "3 images processed" in first.output and "mIoU" in first.output
    manifest = json.loads((out / "manifest.json").read_text())
    models = manifest["environment"]["models"]
    assert models["segmenter"]["weights"] == str(sam3_dir)
    if route == "zero-shot":
        assert models["tagger"]["weights"] == f"sam3-presence({sam3_dir})"
    assert manifest["config"]["pipeline"]["segmenter"] == str(sam3_dir)
    for path in (out / "masks").glob("*.png"):
        assert read_label_png(path).ndim == 2
    written = _outputs(out)
    (out / "masks" / "2007_000032.png").unlink()  # as if killed before this image
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "1 images processed, 2 already done" in again.output
    assert _outputs(out) == written
