"""Random RAM / RAM++ models: tiny configs, checkpoints in the authors' layout, taggers.

:func:`official_state_dict` writes the checkpoint keys from the authors' released layout
(``visual_encoder.*`` Swin, ``image_proj``, ``label_embed``, ``tagging_head.*`` BERT
cross-attention head, ``fc``), not derived from :mod:`samwsss.ram.checkpoint`, so a test
that loads it checks the loader's key mapping. :func:`write_checkpoint` saves it as the
authors do. :func:`build_ram_tagger` gives the benchmarks a tagger by size: the tiny RAM++
through a ``.pth`` file, or a full-size RAM++ built in memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samwsss.ram.config import RAMConfig, default_config
from samwsss.ram.model import RAMModel
from samwsss.ram.vocabulary import RAMVocabulary
from samwsss.registry import create
from samwsss.testing import check_size

TINY_TAGS = ("cat", "dog", "grass", "person", "car", "table", "sky")
TINY_THRESHOLDS = (0.5, 0.6, 0.7, 0.55, 0.65, 0.9, 0.45)


def tiny_config(variant: str = "ram_plus") -> RAMConfig:
    """A tiny RAM/RAM++: 128x128 input, Swin 16-wide with 2 blocks per stage, 7 tags.

    Stages are 32, 16, 8, 4 tokens wide with window 4 — the same window pattern as the
    official 96/48/24/12 at window 12 (shifted windows in stages 0-2, none in stage 3).
    RAM++ has 3 descriptions per tag; RAM keeps the (unused) default, as a RAM checkpoint's
    shapes cannot tell it.
    """
    descriptions = 3 if variant == "ram_plus" else RAMConfig.descriptions_per_tag
    return RAMConfig(
        variant=variant,
        num_tags=len(TINY_TAGS),
        descriptions_per_tag=descriptions,
        image_size=128,
        patch_size=4,
        window_size=4,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        label_dim=24,
        head_hidden_size=32,
        head_num_layers=2,
        head_num_heads=4,
        head_intermediate_size=64,
    )


def tiny_vocabulary() -> RAMVocabulary:
    """The 7-tag vocabulary of :func:`tiny_config`."""
    return RAMVocabulary(TINY_TAGS, TINY_THRESHOLDS, source="tiny")


def official_state_dict(
    config: RAMConfig,
    seed: int = 0,
    *,
    buffers: bool = True,
    captioning: bool = False,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Random tensors under the official key names for ``config``.

    LayerNorm weights and biases are random too (not 1/0), so swapping two norms shows.
    ``buffers`` adds the Swin ``relative_position_index`` / ``attn_mask`` buffers the
    official model stores; ``captioning`` adds RAM's ``tag_encoder.*`` / ``text_decoder.*``.
    ``device="meta"`` gives shapes only (for full-size checks without memory).
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=gen) * scale

    def linear(name: str, out_f: int, in_f: int, bias: bool = True) -> None:
        sd[f"{name}.weight"] = rand(out_f, in_f, scale=1.0 / math.sqrt(in_f))
        if bias:
            sd[f"{name}.bias"] = rand(out_f, scale=0.05)

    def norm(name: str, width: int) -> None:
        sd[f"{name}.weight"] = 1.0 + rand(width, scale=0.2)
        sd[f"{name}.bias"] = rand(width, scale=0.1)

    v = "visual_encoder."
    e = config.embed_dim
    sd[f"{v}patch_embed.proj.weight"] = rand(e, 3, config.patch_size, config.patch_size, scale=0.2)
    sd[f"{v}patch_embed.proj.bias"] = rand(e, scale=0.05)
    norm(f"{v}patch_embed.norm", e)
    ws = config.window_size
    for i, depth in enumerate(config.depths):
        c = e * 2**i
        heads = config.num_heads[i]
        side = config.image_size // config.patch_size // 2**i
        for j in range(depth):
            b = f"{v}layers.{i}.blocks.{j}."
            norm(b + "norm1", c)
            linear(b + "attn.qkv", 3 * c, c)
            linear(b + "attn.proj", c, c)
            sd[b + "attn.relative_position_bias_table"] = rand((2 * ws - 1) ** 2, heads, scale=0.5)
            norm(b + "norm2", c)
            linear(b + "mlp.fc1", 4 * c, c)
            linear(b + "mlp.fc2", c, 4 * c)
            if buffers:
                sd[b + "attn.relative_position_index"] = torch.zeros(
                    ws * ws, ws * ws, dtype=torch.long, device=device
                )
                if j % 2 == 1 and side > ws:
                    sd[b + "attn_mask"] = torch.zeros(
                        (side // ws) ** 2, ws * ws, ws * ws, device=device
                    )
        if i < len(config.depths) - 1:
            linear(f"{v}layers.{i}.downsample.reduction", 2 * c, 4 * c, bias=False)
            norm(f"{v}layers.{i}.downsample.norm", 4 * c)
    norm(f"{v}norm", config.vision_width)

    linear("image_proj", config.label_dim, config.vision_width)
    sd["label_embed"] = rand(config.label_rows, config.label_dim, scale=1.0)
    if config.is_plus:
        sd["reweight_scale"] = torch.tensor(math.log(1 / 0.07), device=device)
    linear("wordvec_proj", config.head_hidden_size, config.label_dim)
    hidden, inter = config.head_hidden_size, config.head_intermediate_size
    for layer in range(config.head_num_layers):
        h = f"tagging_head.encoder.layer.{layer}."
        linear(h + "crossattention.self.query", hidden, hidden)
        linear(h + "crossattention.self.key", hidden, config.label_dim)
        linear(h + "crossattention.self.value", hidden, config.label_dim)
        linear(h + "crossattention.output.dense", hidden, hidden)
        norm(h + "crossattention.output.LayerNorm", hidden)
        linear(h + "intermediate.dense", inter, hidden)
        linear(h + "output.dense", hidden, inter)
        norm(h + "output.LayerNorm", hidden)
    linear("fc", 1, hidden)
    if captioning:
        sd["tag_encoder.encoder.layer.0.attention.self.query.weight"] = rand(8, 8)
        sd["tag_encoder.embeddings.word_embeddings.weight"] = rand(10, 8)
        sd["text_decoder.cls.predictions.bias"] = rand(10)
        sd["text_decoder.bert.encoder.layer.0.output.dense.weight"] = rand(8, 8)
    return sd


def write_checkpoint(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """Save as the authors do: ``torch.save({'model': state_dict}, path)``."""
    torch.save({"model": state_dict}, path)
    return path


# -- full size (benchmarks) -------------------------------------------------------------------
def random_ram_model(variant: str = "ram_plus", seed: int = 0) -> Any:
    """A full-size :class:`~samwsss.ram.model.RAMModel` (Swin-L 384, 4,585 tags) with seeded
    random weights, built in memory (the global RNG is left untouched).

    The label embeddings are drawn small (``N(0, 0.05)``) and RAM++'s ``reweight_scale`` is
    set to the trained ``log(1 / 0.07)``, so the description mixing is a soft average as in
    the released model.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RAMModel(default_config(variant))
        with torch.no_grad():
            model.label_embed.normal_(0.0, 0.05)
            if model.reweight_scale is not None:
                model.reweight_scale.fill_(float(np.log(1 / 0.07)))
    return model


def class_tag_vocabulary(mapping: Any, num_tags: int, threshold: float = 0.5) -> RAMVocabulary:
    """A ``num_tags``-tag RAM vocabulary whose first tags are one curated tag per class of
    ``mapping`` (so exact matching reaches every class) and the rest neutral fillers."""
    class_tags = [entry.tags[0] for entry in mapping.classes[1:] if entry.tags]
    if len(class_tags) > num_tags:
        raise ValueError(f"{len(class_tags)} class tags do not fit {num_tags} tags")
    fillers = [f"filler tag {i}" for i in range(num_tags - len(class_tags))]
    tags = tuple(class_tags + fillers)
    return RAMVocabulary(tags, (threshold,) * len(tags), source="benchmark")


def build_ram_tagger(size: str, mapping: Any, directory: str | Path, seed: int = 0) -> Any:
    """A RAM++ tagger with random weights.

    ``tiny``: :func:`tiny_config` RAM++ (128x128, the 7 tags of :data:`TINY_TAGS`) written
    as an official checkpoint ``directory/ram_plus_tiny.pth`` and loaded through
    ``registry.create("tagger", path)``. ``full``: :func:`random_ram_model` (RAM++ Swin-L
    384, 4,585 tags x 51 descriptions) built in memory (writing and re-reading 1.7 GB of
    random numbers measures nothing), whose vocabulary names one tag per class of
    ``mapping``.
    """
    check_size(size)
    from samwsss.ram.tagger import RAMTagger

    if size == "tiny":
        config = tiny_config("ram_plus")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = write_checkpoint(
            directory / "ram_plus_tiny.pth", official_state_dict(config, seed=seed)
        )
        return create("tagger", path, vocabulary=tiny_vocabulary(), config=config)
    model = random_ram_model("ram_plus", seed=seed)
    vocabulary = class_tag_vocabulary(mapping, model.config.num_tags)
    return RAMTagger(model, vocabulary, name="random ram_plus swin-l")
