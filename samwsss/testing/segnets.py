"""Tiny random backbones and architectures for the segmenter-architecture tests.

:func:`write_tiny_backbone` saves a seeded random image-classification (or self-supervised)
backbone with ``save_pretrained`` into a folder, so tests initialise architectures through
the same ``from_pretrained`` path a hub id takes (nothing is downloaded):

* ``"mit"``: ``SegformerForImageClassification`` (as ``nvidia/mit-b5``), widths 8-32, one
  block per stage, 10 ImageNet-like labels;
* ``"swin"``: ``SwinForImageClassification`` (as ``microsoft/swin-*-in22k``), embed 16,
  depths 1-1-2-1, window 4, 10 labels;
* ``"dinov2"``: ``Dinov2Model`` (as ``facebook/dinov2-large``), width 32, 3 layers,
  patch 8.

:func:`tiny_arch` returns an architecture of :data:`samwsss.segnets.registry.ARCHS` with
tiny head options (Mask2Former: hidden 32, 3 decoder layers, 6 queries, dense loss unless
asked otherwise). The same ``seed`` writes the same files; the global RNG is left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from samwsss.segnets.registry import family, make_arch

#: Backbone kinds :func:`write_tiny_backbone` writes.
TINY_BACKBONES = ("mit", "swin", "dinov2")


def _tiny_labels(count: int = 10) -> dict[str, Any]:
    id2label = {i: f"imagenet_class_{i}" for i in range(count)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def tiny_backbone_model(kind: str) -> Any:
    """A random tiny backbone model of ``kind`` (see the module docstring)."""
    config: Any
    if kind == "mit":
        from transformers import SegformerConfig, SegformerForImageClassification

        config = SegformerConfig(
            depths=[1, 1, 1, 1],
            hidden_sizes=[8, 16, 24, 32],
            num_attention_heads=[1, 1, 2, 2],
            sr_ratios=[4, 2, 1, 1],
            decoder_hidden_size=16,
            **_tiny_labels(),
        )
        return SegformerForImageClassification(config)
    if kind == "swin":
        from transformers import SwinConfig, SwinForImageClassification

        config = SwinConfig(
            image_size=64,
            embed_dim=16,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 2, 4],
            window_size=4,
            **_tiny_labels(),
        )
        return SwinForImageClassification(config)
    if kind == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        config = Dinov2Config(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            mlp_ratio=2,
            patch_size=8,
            image_size=64,
        )
        return Dinov2Model(config)
    raise ValueError(f"kind must be one of {', '.join(TINY_BACKBONES)}; got {kind!r}")


def write_tiny_backbone(kind: str, directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a seeded random tiny ``kind`` backbone into ``directory``; return the folder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tiny_backbone_model(kind)
    path = Path(directory)
    model.save_pretrained(path)
    return path


def tiny_arch(name: str, **options: Any) -> Any:
    """The architecture ``name`` of the registry with tiny head options (``options`` win)."""
    kind = family(name)
    defaults: dict[str, Any] = {}
    if kind == "mask2former":
        defaults = {
            "config": {
                "hidden_dim": 32,
                "feature_size": 32,
                "mask_feature_size": 32,
                "encoder_feedforward_dim": 64,
                "dim_feedforward": 64,
                "encoder_layers": 1,
                "decoder_layers": 3,
                "num_attention_heads": 2,
                "num_queries": 6,
            },
            "num_points": None,
        }
    elif kind == "eomt":
        defaults = {
            "config": {"num_blocks": 2, "num_queries": 6, "num_upscale_blocks": 1},
            "image_size": 48,
            "num_points": None,
        }
    defaults.update(options)
    return make_arch(name, defaults)
