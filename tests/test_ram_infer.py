"""The RAM configuration read off a checkpoint's tensor shapes (samwsss.ram.infer)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from samwsss.ram.checkpoint import CheckpointError, convert_official_state_dict
from samwsss.ram.config import RAM_PLUS_SWIN_LARGE, RAM_SWIN_LARGE, RAMConfig
from samwsss.ram.infer import infer_config
from samwsss.ram.model import RAMModel
from samwsss.ram.tagger import RAMTagger
from samwsss.testing.ram import (
    TINY_TAGS,
    TINY_THRESHOLDS,
    official_state_dict,
    tiny_config,
    tiny_vocabulary,
    write_checkpoint,
)

VARIANTS = ["ram", "ram_plus"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_checkpoint_gives_tiny_config(variant: str) -> None:
    state = official_state_dict(tiny_config(variant), seed=3)
    assert infer_config(state, num_tags=len(TINY_TAGS)) == tiny_config(variant)
    if variant == "ram":  # RAM's tag count is label_embed's rows, vocabulary or not
        assert infer_config(state) == tiny_config("ram")


def test_other_image_size_read_from_masks() -> None:
    """A 256-pixel model: its masks have 4x the windows of the 128 one."""
    config = dataclasses.replace(tiny_config(), image_size=256)
    state = official_state_dict(config, device="meta")
    assert state["visual_encoder.layers.0.blocks.1.attn_mask"].shape[0] == 256
    assert infer_config(state, num_tags=len(TINY_TAGS)) == config


@pytest.mark.parametrize("config", [RAM_PLUS_SWIN_LARGE, RAM_SWIN_LARGE], ids=VARIANTS[::-1])
@pytest.mark.parametrize("buffers", [True, False], ids=["buffers", "no-buffers"])
def test_full_size_official_shapes_give_official_config(config: RAMConfig, buffers: bool) -> None:
    state = official_state_dict(config, device="meta", buffers=buffers, captioning=True)
    assert infer_config(state) == config
    assert infer_config(state, num_tags=4585) == config
    with torch.device("meta"):
        model = RAMModel(infer_config(state))
    converted, _ = convert_official_state_dict(state, model)
    assert set(converted) == set(model.state_dict())


def test_without_masks_image_size_is_the_official_384() -> None:
    state = official_state_dict(tiny_config(), buffers=False, device="meta")
    inferred = infer_config(state, num_tags=len(TINY_TAGS))
    assert inferred == dataclasses.replace(tiny_config(), image_size=384)


def test_legacy_head_prefix() -> None:
    state = official_state_dict(tiny_config("ram"), device="meta")
    legacy = {
        ("vision_multi." + k[len("tagging_head.") :] if k.startswith("tagging_head.") else k): v
        for k, v in state.items()
    }
    assert infer_config(legacy) == tiny_config("ram")


@pytest.mark.parametrize("variant", VARIANTS)
def test_from_pretrained_without_config_matches_explicit(tmp_path: Path, variant: str) -> None:
    state = official_state_dict(tiny_config(variant), seed=11)
    path = write_checkpoint(tmp_path / f"{variant}.pth", state)
    inferred = RAMTagger.from_pretrained(path, vocabulary=tiny_vocabulary())
    explicit = RAMTagger.from_pretrained(
        path, config=tiny_config(variant), vocabulary=tiny_vocabulary()
    )
    assert inferred.config == tiny_config(variant) and inferred.image_size == 128
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(inferred.logits(pixels), explicit.logits(pixels), rtol=0, atol=0)


def test_from_pretrained_vocabulary_that_does_not_divide_label_embed(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "plus.pth", official_state_dict(tiny_config(), seed=1))
    vocabulary = tiny_vocabulary().__class__(TINY_TAGS[:4], TINY_THRESHOLDS[:4])
    with pytest.raises(ValueError, match="label_embed.*21 rows.*4 tags"):
        RAMTagger.from_pretrained(path, vocabulary=vocabulary)


def _tiny(variant: str = "ram_plus") -> dict[str, torch.Tensor]:
    return official_state_dict(tiny_config(variant), device="meta")


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


def _edit(key: str, value: torch.Tensor | None, **more: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tiny RAM++ shapes with ``key`` replaced (or deleted for ``None``); ``more``:
    further replacements, their dots written as ``__``."""
    state = _tiny()
    if value is None:
        del state[key]
    else:
        state[key] = value
    state.update({k.replace("__", "."): t for k, t in more.items()})
    return state


v = "visual_encoder."


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (_edit(f"{v}patch_embed.proj.weight", None), "patch_embed.proj.weight"),
        (_edit(f"{v}patch_embed.proj.weight", _meta(16, 3, 4, 2)), "patch_embed.proj.weight"),
        (
            _edit(f"{v}layers.1.blocks.1.norm1.weight", _meta(48)),
            r"layers\.1\.blocks\.1\.norm1\.weight.*48 wide.*32",
        ),
        (
            _edit(f"{v}layers.0.blocks.0.attn.relative_position_bias_table", _meta(50, 1)),
            r"layers\.0\.blocks\.0\.attn\.relative_position_bias_table.*50 rows",
        ),
        (
            _edit(f"{v}layers.2.blocks.1.attn.relative_position_bias_table", _meta(25, 2)),
            r"layers\.2\.blocks\.1\.attn\.relative_position_bias_table.*window 3.*window 4",
        ),
        (
            _edit(f"{v}layers.1.blocks.1.attn.relative_position_bias_table", _meta(49, 4)),
            r"layers\.1\.blocks\.1\.attn\.relative_position_bias_table.*4 heads.*2",
        ),
        (
            _edit(f"{v}layers.1.blocks.1.attn_mask", _meta(4, 16, 16)),
            r"layers\.1\.blocks\.1\.attn_mask.*64-pixel.*layers\.0\.blocks\.1\.attn_mask.*128",
        ),
        (
            _edit(f"{v}layers.0.blocks.1.attn_mask", _meta(60, 16, 16)),
            r"layers\.0\.blocks\.1\.attn_mask",
        ),
        (_edit(f"{v}layers.1.blocks.0.norm1.weight", None), r"layers\.1\.blocks\.0\.norm1\.weight"),
        (_edit("image_proj.weight", _meta(24, 64)), r"image_proj\.weight.*64.*128"),
        (_edit("label_embed", _meta(21, 20)), r"label_embed.*20 wide"),
        (_edit("wordvec_proj.weight", _meta(32, 20)), r"wordvec_proj\.weight.*20"),
        (
            _edit("tagging_head.encoder.layer.0.intermediate.dense.weight", _meta(64, 30)),
            r"layer\.0\.intermediate\.dense\.weight.*30",
        ),
        (
            _edit(
                "wordvec_proj.weight",
                _meta(30, 24),
                tagging_head__encoder__layer__0__intermediate__dense__weight=_meta(64, 30),
            ),
            r"wordvec_proj\.weight.*head_num_heads",
        ),
        (
            _edit(
                f"{v}layers.0.blocks.0.attn.relative_position_bias_table",
                _meta(49, 3),
                visual_encoder__layers__0__blocks__1__attn__relative_position_bias_table=_meta(
                    49, 3
                ),
            ),
            r"not a valid RAM configuration.*divisible.*config=",
        ),
    ],
    ids=[
        "missing-patch-embed",
        "non-square-patch",
        "stage-width",
        "table-rows",
        "window-differs",
        "heads-differ",
        "masks-disagree",
        "mask-not-square",
        "missing-block-key",
        "image-proj",
        "label-width",
        "wordvec",
        "intermediate",
        "head-heads-unknown",
        "invalid-config",
    ],
)
def test_inconsistent_shapes_name_the_key(state: dict[str, torch.Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        infer_config(state, num_tags=len(TINY_TAGS))
    assert isinstance(error.value, CheckpointError)


def test_tag_counts() -> None:
    with pytest.raises(ValueError, match="label_embed.*21 rows.*51 descriptions"):
        infer_config(_tiny("ram_plus"))
    with pytest.raises(ValueError, match="label_embed.*7 tags.*vocabulary has 5"):
        infer_config(_tiny("ram"), num_tags=5)


def test_gap_in_block_numbers() -> None:
    state = _tiny()
    for key in [k for k in state if ".layers.2.blocks.1." in k]:
        state[key.replace(".blocks.1.", ".blocks.3.")] = state.pop(key)
    with pytest.raises(ValueError, match=r"blocks of Swin stage 2 numbered \[0, 3\]"):
        infer_config(state, num_tags=7)
