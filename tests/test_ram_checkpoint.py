"""RAM / RAM++ network and official-checkpoint loading, on tiny models (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from samwsss.ram.checkpoint import (
    CheckpointError,
    LoadReport,
    convert_official_state_dict,
    load_official_checkpoint,
    official_key_map,
    read_checkpoint,
)
from samwsss.ram.config import RAM_PLUS_SWIN_LARGE, RAM_SWIN_LARGE, RAMConfig
from samwsss.ram.head import CrossAttention, FeedForward, TaggingHead, TaggingLayer
from samwsss.ram.model import RAMModel, reweight_label_embeddings
from samwsss.ram.tagger import RAMTagger
from samwsss.testing.ram import (
    official_state_dict,
    tiny_config,
    tiny_vocabulary,
    write_checkpoint,
)
from tests.ram_fixtures import reference_logits, reference_reweight, reference_swin

VARIANTS = ["ram", "ram_plus"]


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(7))


def _load(config: RAMConfig, state: dict[str, torch.Tensor]) -> tuple[RAMModel, LoadReport]:
    model = RAMModel(config).eval()
    report = load_official_checkpoint(model, state)
    return model, report


@pytest.mark.parametrize("variant", VARIANTS)
def test_loaded_checkpoint_matches_reference_forward(
    variant: str, tmp_path: Path, pixels: torch.Tensor
) -> None:
    config = tiny_config(variant)
    state = official_state_dict(config, seed=1)
    path = write_checkpoint(tmp_path / "ram.pth", state)
    tagger = RAMTagger.from_pretrained(path, config=config, vocabulary=tiny_vocabulary())
    assert tagger.config.variant == variant
    with torch.no_grad():
        tokens = tagger.model.visual_encoder(pixels)
    expected_tokens = reference_swin(state, config, pixels)
    assert tokens.shape == (3, 1 + 4 * 4, config.vision_width)
    torch.testing.assert_close(tokens, expected_tokens, atol=1e-4, rtol=1e-4)
    logits = tagger.logits(pixels)
    expected = reference_logits(state, config, pixels)
    assert logits.shape == (3, config.num_tags)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    # Random weights still give different logits per image and per tag.
    assert logits.std(dim=0).min() > 1e-3 and logits.std(dim=1).min() > 1e-3


def test_swin_encoder_matches_timm_reading_the_microsoft_layout(pixels: torch.Tensor) -> None:
    timm_swin = pytest.importorskip("timm.models.swin_transformer")
    config = tiny_config("ram")
    state = official_state_dict(config, seed=2, buffers=False)
    model, _ = _load(config, state)
    reference = timm_swin.SwinTransformer(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        num_classes=0,
        drop_path_rate=0.0,
    ).eval()
    swin_only = {
        k[len("visual_encoder.") :]: v for k, v in state.items() if k.startswith("visual_encoder.")
    }
    reference.load_state_dict(timm_swin.checkpoint_filter_fn(swin_only, reference))
    with torch.no_grad():
        expected = reference.forward_features(pixels).flatten(1, 2)  # (B, 16, C), normed
        tokens = model.visual_encoder(pixels)
    torch.testing.assert_close(tokens[:, 1:], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tokens[:, 0], expected.mean(dim=1), atol=1e-4, rtol=1e-4)


def test_qkv_split_order_matters(pixels: torch.Tensor) -> None:
    """A checkpoint whose fused qkv has q and k exchanged must not reproduce the reference."""
    config = tiny_config("ram_plus")
    state = official_state_dict(config, seed=3)
    swapped = dict(state)
    key = "visual_encoder.layers.0.blocks.0.attn.qkv.weight"
    q, k, v = state[key].chunk(3, dim=0)
    swapped[key] = torch.cat([k, q, v])
    model, _ = _load(config, swapped)
    with torch.no_grad():
        difference = (model(pixels) - reference_logits(state, config, pixels)).abs().max()
    assert difference > 1e-3


def test_missing_keys_are_listed(pixels: torch.Tensor) -> None:
    config = tiny_config("ram_plus")
    state = official_state_dict(config)
    del state["fc.bias"]
    del state["visual_encoder.layers.1.downsample.norm.weight"]
    with pytest.raises(CheckpointError) as info:
        _load(config, state)
    message = str(info.value)
    assert "2 missing key(s)" in message
    assert "fc.bias" in message and "visual_encoder.layers.1.downsample.norm.weight" in message


def test_unexpected_keys_are_listed() -> None:
    config = tiny_config("ram_plus")
    state = official_state_dict(config)
    state["visual_encoder.head.weight"] = torch.zeros(3, config.vision_width)
    state["visual_encoder.layers.3.downsample.reduction.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        _load(config, state)
    message = str(info.value)
    assert "2 unexpected key(s)" in message
    assert "visual_encoder.head.weight" in message
    assert "visual_encoder.layers.3.downsample.reduction.weight" in message


def test_wrong_shapes_are_listed() -> None:
    config = tiny_config("ram")
    state = official_state_dict(config)
    state["visual_encoder.layers.0.blocks.1.attn.relative_position_bias_table"] = torch.zeros(81, 1)
    with pytest.raises(
        CheckpointError, match=r"relative_position_bias_table: \(81, 1\) \(expected \(49, 1\)\)"
    ):
        _load(config, state)


@pytest.mark.parametrize("variant,other", [("ram_plus", "ram"), ("ram", "ram_plus")])
def test_variant_mismatch_is_rejected(variant: str, other: str, tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "x.pth", official_state_dict(tiny_config(variant)))
    with pytest.raises(ValueError, match="variant"):
        RAMTagger.from_pretrained(
            path, variant=other, config=tiny_config(other), vocabulary=tiny_vocabulary()
        )
    with pytest.raises(CheckpointError, match="reweight_scale"):
        _load(tiny_config(other), official_state_dict(tiny_config(variant)))


def test_vision_multi_alias(pixels: torch.Tensor) -> None:
    config = tiny_config("ram")
    state = official_state_dict(config, seed=4)
    old = {k.replace("tagging_head.", "vision_multi.", 1): v for k, v in state.items()}
    model, report = _load(config, old)
    assert report.renamed and all(k.startswith("vision_multi.") for k in report.renamed)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixels), reference_logits(state, config, pixels), atol=1e-4, rtol=1e-4
        )
    both = dict(state)
    both["vision_multi.encoder.layer.0.output.dense.bias"] = state[
        "tagging_head.encoder.layer.0.output.dense.bias"
    ]
    with pytest.raises(CheckpointError, match="keep only one naming"):
        _load(config, both)


def test_captioning_keys_ignored_and_buffers_optional(pixels: torch.Tensor) -> None:
    config = tiny_config("ram")
    with_all = official_state_dict(config, seed=5, buffers=True, captioning=True)
    bare = official_state_dict(config, seed=5, buffers=False, captioning=False)
    model_a, report = _load(config, with_all)
    model_b, report_b = _load(config, bare)
    assert report.ignored and all(
        k.startswith(("tag_encoder.", "text_decoder.")) for k in report.ignored
    )
    assert any(k.endswith("attn_mask") for k in report.recomputed)
    assert any(k.endswith("relative_position_index") for k in report.recomputed)
    assert report_b.ignored == () and report_b.recomputed == ()
    with torch.no_grad():
        torch.testing.assert_close(model_a(pixels), model_b(pixels))


def test_read_checkpoint_formats(tmp_path: Path) -> None:
    state = {"fc.weight": torch.ones(1, 2)}
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pth")
    torch.save(state, tmp_path / "bare.pth")
    assert read_checkpoint(tmp_path / "wrapped.pth").keys() == state.keys()
    assert read_checkpoint(tmp_path / "bare.pth").keys() == state.keys()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        read_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pth")
    torch.save({"model": state, "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        read_checkpoint(tmp_path / "pickled.pth")
    assert read_checkpoint(tmp_path / "pickled.pth", allow_pickle=True).keys() == state.keys()


def test_reweighting_matches_direct_formula() -> None:
    gen = torch.Generator().manual_seed(11)
    image_cls = torch.randn(2, 6, generator=gen)
    label_embed = torch.randn(5 * 4, 6, generator=gen)
    scale = torch.tensor(1.3)
    got = reweight_label_embeddings(image_cls, label_embed, scale, descriptions_per_tag=4)
    assert got.shape == (2, 5, 6)
    torch.testing.assert_close(got, reference_reweight(image_cls, label_embed, scale, 4))
    # The mixture depends on the image: two images give two different tag embeddings.
    assert (got[0] - got[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="multiple of 4"):
        reweight_label_embeddings(image_cls, label_embed[:-1], scale, descriptions_per_tag=4)


def test_tagging_head_is_cross_attention_only() -> None:
    config = tiny_config("ram_plus")
    head = TaggingHead(config)
    assert len(head.layers) == config.head_num_layers
    for layer in head.layers:
        assert isinstance(layer, TaggingLayer)
        assert [name for name, _ in layer.named_children()] == ["cross_attention", "feed_forward"]
        attention = layer.cross_attention
        assert isinstance(attention, CrossAttention) and isinstance(layer.feed_forward, FeedForward)
        # queries come from the tag stream, keys and values from the image tokens.
        assert attention.query.in_features == config.head_hidden_size
        assert attention.key.in_features == attention.value.in_features == config.label_dim
    names = [name for name, _ in head.named_modules()]
    assert not any("self" in name or "embed" in name for name in names)
    # Tags do not see each other: changing one tag's query leaves the others' outputs unchanged.
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(1, 5, config.head_hidden_size, generator=gen)
    image = torch.randn(1, 9, config.label_dim, generator=gen)
    changed = queries.clone()
    changed[0, 2] += 1.0
    with torch.no_grad():
        a, b = head(queries, image), head(changed, image)
    torch.testing.assert_close(a[0, [0, 1, 3, 4]], b[0, [0, 1, 3, 4]])
    assert (a[0, 2] - b[0, 2]).abs().max() > 1e-3


def test_full_size_key_map() -> None:
    plus = official_key_map(RAM_PLUS_SWIN_LARGE)
    ram = official_key_map(RAM_SWIN_LARGE)
    assert set(plus) - set(ram) == {"reweight_scale"}
    assert plus["visual_encoder.layers.2.blocks.17.attn.qkv.weight"] == (
        "visual_encoder.swin.encoder.layers.2.blocks.17.attention.q_proj.weight",
        "visual_encoder.swin.encoder.layers.2.blocks.17.attention.k_proj.weight",
        "visual_encoder.swin.encoder.layers.2.blocks.17.attention.v_proj.weight",
    )
    assert "visual_encoder.layers.2.downsample.reduction.weight" in plus
    assert "visual_encoder.layers.3.downsample.reduction.weight" not in plus
    assert "visual_encoder.layers.2.blocks.18.norm1.weight" not in plus
    assert "tagging_head.encoder.layer.1.crossattention.self.key.weight" in plus
    assert not any(
        ".attention.self." in k or "embeddings" in k for k in plus if k.startswith("tagging")
    )
    # 24 Swin blocks x 13 tensors + patch embed 4 + 3 merges x 3 + final norm 2,
    # image_proj 2, label_embed 1, wordvec_proj 2, head 2 x 16, fc 2 (+ reweight_scale).
    assert len(ram) == 24 * 13 + 4 + 9 + 2 + 2 + 1 + 2 + 32 + 2


@pytest.mark.parametrize("config", [RAM_PLUS_SWIN_LARGE, RAM_SWIN_LARGE], ids=["ram_plus", "ram"])
def test_full_size_official_layout_fits(config: RAMConfig) -> None:
    """Every official Swin-L tensor (shapes from DESIGN.md) maps onto the full-size model."""
    with torch.device("meta"):
        model = RAMModel(config)
    state = official_state_dict(config, device="meta", captioning=True)
    assert state["visual_encoder.layers.0.blocks.0.attn.relative_position_bias_table"].shape == (
        529,
        6,
    )
    assert state["label_embed"].shape == ((233835 if config.is_plus else 4585), 512)
    assert state["tagging_head.encoder.layer.0.crossattention.self.key.weight"].shape == (768, 512)
    assert state["image_proj.weight"].shape == (512, 1536)
    converted, report = convert_official_state_dict(state, model)
    assert set(converted) == set(model.state_dict())
    assert converted[
        "visual_encoder.swin.encoder.layers.3.blocks.1.attention.v_proj.weight"
    ].shape == (1536, 1536)
    assert any(k.endswith("layers.2.blocks.17.attn_mask") for k in report.recomputed)
    assert not any(
        k.startswith("visual_encoder.layers.3") and k.endswith("attn_mask")
        for k in report.recomputed
    )


def test_config_validation() -> None:
    assert RAM_PLUS_SWIN_LARGE.vision_width == 1536
    assert RAM_PLUS_SWIN_LARGE.stage_resolutions == (96, 48, 24, 12)
    assert RAM_PLUS_SWIN_LARGE.num_image_tokens == 145
    assert RAM_PLUS_SWIN_LARGE.label_rows == 4585 * 51 and RAM_SWIN_LARGE.label_rows == 4585
    with pytest.raises(ValueError, match="whole number"):
        RAMConfig(image_size=64, patch_size=4, window_size=4, embed_dim=24)
    with pytest.raises(ValueError, match="variant"):
        RAMConfig(variant="ram2")
    with pytest.raises(ValueError, match="divisible"):
        RAMConfig(head_num_heads=5)
