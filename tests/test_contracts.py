"""Stage contracts, the registry route, shared checks and the batch plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from samwsss import registry
from samwsss.checks import (
    check_choice,
    check_count,
    check_fraction,
    check_optional_fraction,
    parse_dtype,
)
from samwsss.cli import cli
from samwsss.pipeline import Pipeline, PipelineConfig
from samwsss.pipeline.batching import BatchPlan
from samwsss.stages.contracts import Boxer, ImageBatch, Masker, ModelSource, Stage, Tagger


def test_parse_dtype_accepts_names_and_dtypes_once() -> None:
    assert parse_dtype(None) is None and parse_dtype("auto") is None
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("FP16") is torch.float16
    assert parse_dtype("float32") is torch.float32 and parse_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match="one of auto, bfloat16, float16, float32, bf16"):
        parse_dtype("int8")
    with pytest.raises(ValueError, match="got torch.int64"):
        parse_dtype(torch.int64)


def test_range_checks_name_the_value_and_the_interval() -> None:
    assert check_fraction("t", 0) == 0.0 and check_fraction("t", 1) == 1.0
    with pytest.raises(ValueError, match=r"t must be in \(0, 1\], got 0"):
        check_fraction("t", 0.0, include_low=False)
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\), got 1.0"):
        check_fraction("t", 1.0, include_high=False)
    with pytest.raises(ValueError, match="must be a number"):
        check_fraction("t", "0.5")
    assert check_optional_fraction("t", None) is None
    with pytest.raises(ValueError, match="or None to turn it off"):
        check_optional_fraction("t", 2.0)
    assert check_count("n", 3) == 3 and check_count("n", 0, minimum=0) == 0
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            check_count("n", bad)
    with pytest.raises(ValueError, match="x must be one of a, b; got 'c'"):
        check_choice("x", "c", ("a", "b"))


def test_config_and_stages_agree_on_the_intervals() -> None:
    # box_threshold 1.0 is a valid (if useless) threshold everywhere, 1.1 nowhere
    PipelineConfig(box_threshold=1.0)
    with pytest.raises(ValueError, match="box_threshold must be in"):
        PipelineConfig(box_threshold=1.1)
    with pytest.raises(ValueError, match="nms_iou must be in"):
        PipelineConfig(nms_iou=0.0)


def test_batch_plan_is_decided_in_one_place() -> None:
    cpu = BatchPlan.for_device(4, "cpu")
    assert (cpu.images, cpu.boxer_rows, cpu.encoder_images) == (4, 16, 1)
    gpu = BatchPlan.for_device(1, "cuda")
    assert (gpu.images, gpu.boxer_rows, gpu.encoder_images) == (1, 8, 8)
    assert BatchPlan.for_device(5, "cuda").halved("cuda") == BatchPlan.for_device(2, "cuda")
    assert BatchPlan.for_device(1, "cpu").halved("cpu").images == 1
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        BatchPlan.for_device(0, "cpu")


def test_image_batch_checks_once_and_shares_memory() -> None:
    pixels = np.zeros((4, 5, 3), dtype=np.uint8)
    batch = ImageBatch([pixels, torch.ones((2, 3, 3), dtype=torch.uint8)], "cpu")
    assert batch.sizes == [(4, 5), (2, 3)] and len(batch) == 2
    pixels[0, 0, 0] = 7  # no copy of numpy input
    assert int(batch.host[0][0, 0, 0]) == 7 and batch.on_device[0] is batch.host[0]
    subset = batch.select([1])
    assert subset.sizes == [(2, 3)] and ImageBatch.of(subset, "cpu") is subset
    with pytest.raises(ValueError, match=r"images\[1\] has dtype float32"):
        ImageBatch([pixels, pixels.astype(np.float32)])
    with pytest.raises(ValueError, match="wrap it in a list"):
        ImageBatch(pixels)


def test_built_stages_satisfy_their_protocols(
    tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path
) -> None:
    config = PipelineConfig(
        boxer=str(tiny_gdino_small_dir), masker=str(tiny_sam_session_dir), tagger="grounding"
    )
    pipe = Pipeline.from_config(config, device="cpu")
    assert isinstance(pipe.boxer, Boxer) and isinstance(pipe.masker, Masker)
    assert (
        pipe.tagger is None
        and isinstance(pipe.require_tagger(), Tagger)
        and all(isinstance(s, Stage) for s in pipe.stages.values())
    )
    assert pipe.boxer.source == ModelSource(str(tiny_gdino_small_dir))
    assert pipe.masker.source == ModelSource(str(tiny_sam_session_dir))
    assert pipe.tagger.source.weights == f"grounding({tiny_gdino_small_dir})"
    rng = np.random.default_rng(0)
    batch = ImageBatch([rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)], "cpu")
    (result,) = pipe.tagger.tag(batch)
    assert result.class_ids is not None and result.detections is not None
    assert result.indices == tuple(c - 1 for c in result.class_ids)  # rows of the class list
    assert set(result.detections.class_ids.tolist()) == set(result.class_ids)


def test_registry_route_builds_names_and_paths(tiny_sam_session_dir: Path) -> None:
    masker = registry.create("masker", str(tiny_sam_session_dir), multimask="best", device="cpu")
    assert masker.multimask == "best" and masker.source.weights == str(tiny_sam_session_dir)
    assert registry.weights_of("masker", "sam-vit-huge") == "facebook/sam-vit-huge"
    assert registry.card("masker", "no-such-model") is None
    with pytest.raises(ValueError, match="unknown stage kind 'colorizer'"):
        registry.create("colorizer", "x")
    official = registry.list_models("masker")["sam-vit-huge-official"].weights
    assert official == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"


def test_models_command_prints_every_kind() -> None:
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for name in (
        "grounding-dino-tiny",
        "sam-vit-huge",
        "sam-vit-base-official",
        "ram-plus-swin-large-14m",
        "grounding",
    ):
        assert name in result.output
    only = CliRunner().invoke(cli, ["models", "--kind", "boxer"])
    assert "grounding-dino-base" in only.output and "sam-vit-huge" not in only.output
