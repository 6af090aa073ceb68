"""The architectures users pick with ``--arch``: names, default weights and recipes.

Every default ``init`` is an image-classification (ImageNet-22k Swin, ImageNet-1k MiT) or
self-supervised (DINOv2) checkpoint: the WSSS protocol forbids segmentation pretraining.

Recipes and their sources:

* Mask2Former (Swin-L / Swin-B): AdamW, lr 1e-4, weight decay 0.05 (none on norms and
  embeddings), backbone lr x0.1, poly schedule (power 0.9), 512 x 512 crops, 80k iterations,
  global batch 8 (4 per GPU on 2 GPUs). The optimiser numbers are Mask2Former's
  (facebookresearch/Mask2Former ``configs/ade20k/semantic-segmentation/
  Base-ADE20K-SemanticSegmentation.yaml``: ``BASE_LR 0.0001``, ``WEIGHT_DECAY 0.05``,
  ``OPTIMIZER ADAMW``, ``BACKBONE_MULTIPLIER 0.1``, ``WarmupPolyLR`` without warm-up; its
  ``train_net.py`` sets no decay on norms, embeddings and Swin's position tables); crops, iterations and batch are
  FMA-WSSS's (issue 13; its config names read ``m2f-sl22-bt4-80k-512x``: Swin-L IN-22k,
  batch 4, 80k iterations, 512 crops). Mask2Former also clips gradients (full-model norm
  0.01), which :class:`~samwsss.segnets.arch.Recipe` has no field for.
* SegFormer-B5: AdamW, lr 6e-5 on the encoder with the head at x10 (so ``lr`` 6e-4 and
  ``backbone_lr_mult`` 0.1), weight decay 0.01 (none on norms), poly power 1.0, 512 crops
  (mmsegmentation ``configs/segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py``, which
  the B5 config inherits; it trains 160k iterations at batch 16 with a 1500-iteration
  linear warm-up); iterations and batch here match the Mask2Former budget (80k at 8).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samwsss.segnets.arch import ArchCard, Recipe, SegmentationArch

logger = logging.getLogger(__name__)

MASK2FORMER_RECIPE = Recipe(
    optimizer="adamw",
    lr=1e-4,
    backbone_lr_mult=0.1,
    weight_decay=0.05,
    iterations=80_000,
    batch_size=8,
    crop_size=512,
    poly_power=0.9,
    clip_grad_norm=0.01,
    source=(
        "Mask2Former's AdamW recipe (lr 1e-4, wd 0.05, backbone x0.1, poly 0.9; "
        "facebookresearch/Mask2Former ADE20K semantic configs) with FMA-WSSS's schedule "
        "(512 crops, 80k iterations, batch 4 per GPU x 2 GPUs; issue 13)"
    ),
)

SEGFORMER_RECIPE = Recipe(
    optimizer="adamw",
    lr=6e-4,
    backbone_lr_mult=0.1,
    weight_decay=0.01,
    iterations=80_000,
    batch_size=8,
    crop_size=512,
    poly_power=1.0,
    warmup_iterations=1500,
    source=(
        "mmsegmentation SegFormer (AdamW, encoder lr 6e-5 with head x10, wd 0.01, poly 1.0, "
        "512 crops; segformer_mit-b0_8xb2-160k_ade20k-512x512.py); 80k iterations at batch 8 "
        "to match the Mask2Former budget (mmseg: 160k at 16, 1500 warm-up iterations)"
    ),
)

EOMT_RECIPE = Recipe(
    optimizer="adamw",
    lr=1e-4,
    backbone_lr_mult=0.1,
    weight_decay=0.05,
    iterations=80_000,
    batch_size=8,
    crop_size=518,
    poly_power=0.9,
    clip_grad_norm=0.01,
    source=(
        "Mask2Former's AdamW numbers (lr 1e-4, wd 0.05, backbone x0.1, poly 0.9) and budget "
        "(80k iterations, batch 8), not checked against EoMT's own configs; crops 518 = 37 "
        "patches of 14 (DINOv2); EoMT's layer-wise lr decay and mask annealing are not used"
    ),
)

#: The named architectures (the first is the default).
ARCHS: dict[str, ArchCard] = {
    "mask2former-swin-large": ArchCard(
        name="mask2former-swin-large",
        description="Mask2Former on Swin-L (ImageNet-22k weights): the default, FMA-WSSS's segmenter",
        init="microsoft/swin-large-patch4-window12-384-in22k",
        recipe=MASK2FORMER_RECIPE,
    ),
    "mask2former-swin-base": ArchCard(
        name="mask2former-swin-base",
        description="Mask2Former on Swin-B (ImageNet-22k weights): lighter than Swin-L",
        init="microsoft/swin-base-patch4-window12-384-in22k",
        recipe=MASK2FORMER_RECIPE,
    ),
    "segformer-b5": ArchCard(
        name="segformer-b5",
        description="SegFormer-B5 (MiT-B5 ImageNet-1k weights): light and fast",
        init="nvidia/mit-b5",
        recipe=SEGFORMER_RECIPE,
    ),
    "eomt-dinov2-large": ArchCard(
        name="eomt-dinov2-large",
        description="EoMT on DINOv2-L (self-supervised weights, not gated): a plain ViT segmenter",
        init="facebook/dinov2-large",
        recipe=EOMT_RECIPE,
        options={"image_size": 518},
    ),
}

DEFAULT_ARCH = "mask2former-swin-large"

#: ``config.json`` ``model_type`` of a local folder -> the architecture card whose family
#: and recipe it gets.
_FOLDER_TYPES = {
    "swin": "mask2former-swin-large",
    "mask2former": "mask2former-swin-large",
    "segformer": "segformer-b5",
    "dinov2": "eomt-dinov2-large",
    "eomt": "eomt-dinov2-large",
}


def family(name: str) -> str:
    """``"mask2former"``, ``"segformer"`` or ``"eomt"`` for an architecture name."""
    for prefix in ("mask2former", "segformer", "eomt"):
        if name.startswith(prefix):
            return prefix
    raise ValueError(f"unknown architecture {name!r}; use one of {', '.join(ARCHS)}")


def make_arch(name: str, options: Mapping[str, Any] | None = None) -> SegmentationArch:
    """The :class:`SegmentationArch` of ``name``'s family, built with ``options``."""
    kind = family(name)
    kwargs = dict(options or {})
    if kind == "segformer":
        from samwsss.segnets.segformer import SegFormerArch

        return SegFormerArch(**kwargs)
    if kind == "mask2former":
        from samwsss.segnets.mask2former import Mask2FormerArch

        return Mask2FormerArch(**kwargs)
    from samwsss.segnets.eomt import EomtArch

    return EomtArch(**kwargs)


def get_arch(name_or_folder: str | os.PathLike[str]) -> tuple[SegmentationArch, ArchCard]:
    """The architecture and its card for ``--arch``: a name of :data:`ARCHS`, or a local
    folder of a transformers model (``config.json`` ``model_type`` ``swin`` or
    ``mask2former`` -> Mask2Former, ``segformer`` -> SegFormer, ``dinov2`` or ``eomt`` ->
    EoMT).

    For a folder the card is the family's, with ``name`` and ``init`` set to the folder
    (the build still refuses a segmentation-trained folder unless allowed).

    Raises:
        ValueError: neither a known name nor a folder of a supported model type.
    """
    text = os.fspath(name_or_folder)
    if text in ARCHS:
        card = ARCHS[text]
        return make_arch(card.name, card.options), card
    path = Path(text)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(
                f"--arch folder {text!r} has no config.json; pass a folder written by a "
                "transformers model's save_pretrained, or one of: " + ", ".join(ARCHS)
            )
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except (OSError, ValueError, AttributeError) as error:
            raise ValueError(f"cannot read {config_file}: {error}") from error
        if model_type not in _FOLDER_TYPES:
            raise ValueError(
                f"--arch folder {text!r} holds a {model_type!r} model; supported model types: "
                + ", ".join(sorted(_FOLDER_TYPES))
            )
        base = ARCHS[_FOLDER_TYPES[model_type]]
        card = ArchCard(
            name=text,
            description=f"{base.name} family from the local {model_type} model {text}",
            init=text,
            recipe=base.recipe,
            options=base.options if model_type in ("dinov2", "eomt") else {},
        )
        logger.info("--arch %s: a local %s model, trained as %s", text, model_type, base.name)
        return make_arch(base.name, card.options), card
    raise ValueError(
        f"unknown --arch {text!r}; use one of {', '.join(ARCHS)} or a local folder of a "
        "transformers swin / mask2former / segformer / dinov2 / eomt model"
    )
