"""The architectures users pick with ``--arch``: names, default weights and recipes.

One table, :data:`ARCHS`, of :class:`~samwsss.segnets.arch.ArchCard`: each card names the
class that builds it (``"module:Class"``, imported on use, so this module loads no torch),
its family and the ``config.json`` model types of local folders trained as it.
:func:`register_arch` adds a card in-process (with an architecture object, or a builder);
:func:`lookup_arch`, :func:`resolve_arch` and :func:`checkpoint_arch` find the architecture
of a name, a run or a checkpoint, and :func:`recipe_values` the config defaults a card brings.
(``samwsss.registry`` is the other registry: the stage models of the pipeline.)

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

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from samwsss.registry import resolve_loader
from samwsss.segnets.arch import ArchCard, Recipe, SegmentationArch
from samwsss.weights import HUB_ID, Weights, torch_hub_dir

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

EOMT_RECIPE = dataclasses.replace(
    MASK2FORMER_RECIPE,
    crop_size=518,
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
        builder="samwsss.segnets.mask2former:Mask2FormerArch",
        family="mask2former",
        model_types=("swin", "mask2former"),
    ),
    "mask2former-swin-base": ArchCard(
        name="mask2former-swin-base",
        description="Mask2Former on Swin-B (ImageNet-22k weights): lighter than Swin-L",
        init="microsoft/swin-base-patch4-window12-384-in22k",
        recipe=MASK2FORMER_RECIPE,
        builder="samwsss.segnets.mask2former:Mask2FormerArch",
        family="mask2former",
    ),
    "segformer-b5": ArchCard(
        name="segformer-b5",
        description="SegFormer-B5 (MiT-B5 ImageNet-1k weights): light and fast",
        init="nvidia/mit-b5",
        recipe=SEGFORMER_RECIPE,
        builder="samwsss.segnets.segformer:SegFormerArch",
        family="segformer",
        model_types=("segformer",),
    ),
    "eomt-dinov2-large": ArchCard(
        name="eomt-dinov2-large",
        description="EoMT on DINOv2-L (self-supervised weights, not gated): a plain ViT segmenter",
        init="facebook/dinov2-large",
        recipe=EOMT_RECIPE,
        options={"image_size": 518},
        builder="samwsss.segnets.eomt:EomtArch",
        family="eomt",
        model_types=("dinov2", "eomt"),
    ),
    "deeplabv2": ArchCard(
        name="deeplabv2",
        description="DeepLabV2 on ResNet-101 (ImageNet-1k weights): the survey's protocol "
        "(train-deeplab); built from the run's config",
        init="imagenet",
        builder="samwsss.segnets.deeplab:DeepLabArch",
        family="deeplab",
    ),
}

DEFAULT_ARCH = "mask2former-swin-large"

#: ``train-segmenter``'s architecture when ``--arch`` is not given (old name).
DEFAULT_SEGMENTER_ARCH = DEFAULT_ARCH

#: DeepLabV2's name (``samwsss.segnets.deeplab.DEEPLAB_ARCH``, spelled here so that this
#: module loads no torch): checkpoints without an ``arch`` are DeepLabV2's.
DEEPLAB_ARCH = "deeplabv2"

#: Architecture objects added in-process by name (:func:`register_arch`); looked up before
#: a card's builder. Writing into it directly still works (such a name has no card
#: unless one is registered).
EXTRA_ARCHS: dict[str, SegmentationArch] = {}


class _RunConfig(Protocol):
    """What :func:`resolve_arch` reads of a run's config (``TrainConfig`` has it)."""

    @property
    def arch(self) -> str: ...


def register_arch(card: ArchCard, arch: SegmentationArch | None = None) -> None:
    """Add ``card`` to :data:`ARCHS` (built by its ``builder``, or returned as ``arch``).

    Registering the same card again is a no-op.

    Raises:
        ValueError: another card has this name (unregister it first), or the card has
            neither a builder nor ``arch``.
    """
    known = ARCHS.get(card.name)
    if known is not None and known != card:
        raise ValueError(f"architecture {card.name!r} is already registered")
    if arch is None and not card.builder and card.name not in EXTRA_ARCHS:
        raise ValueError(f"architecture {card.name!r} needs a builder or an architecture")
    ARCHS[card.name] = card
    if arch is not None:
        EXTRA_ARCHS[card.name] = arch


def unregister_arch(name: str) -> ArchCard | None:
    """Remove ``name``'s card and architecture object; the card, if there was one."""
    EXTRA_ARCHS.pop(name, None)
    return ARCHS.pop(name, None)


def family(name: str) -> str:
    """The family of an architecture name (``"mask2former"``, ``"segformer"``, ``"eomt"``,
    ``"deeplab"``): its card's, else that of the family the name starts with."""
    card = ARCHS.get(name)
    if card is not None:
        return card.family or card.name
    for card in ARCHS.values():
        if card.family and name.startswith(card.family):
            return card.family
    raise ValueError(f"unknown architecture {name!r}; use one of {', '.join(ARCHS)}")


def _builder(card: ArchCard) -> Any:
    """The class (or callable) ``card.builder`` names, imported now."""
    if not card.builder:
        raise ValueError(f"architecture {card.name!r} has no builder")
    return resolve_loader(card.builder)


def _build(card: ArchCard, options: Mapping[str, Any] | None) -> SegmentationArch:
    """``card``'s registered architecture object, else its builder called with ``options``."""
    if card.name in EXTRA_ARCHS:
        return EXTRA_ARCHS[card.name]
    built: SegmentationArch = _builder(card)(**dict(options or {}))
    return built


def make_arch(name: str, options: Mapping[str, Any] | None = None) -> SegmentationArch:
    """The :class:`SegmentationArch` of ``name`` (a card, or a name starting with a
    family), built with ``options``."""
    card = ARCHS.get(name)
    if card is None:
        kind = family(name)
        card = next(c for c in ARCHS.values() if (c.family or c.name) == kind)
    return _build(card, options)


def folder_types() -> dict[str, ArchCard]:
    """``config.json`` ``model_type`` -> the card a local folder of it is trained as."""
    types: dict[str, ArchCard] = {}
    for card in ARCHS.values():
        for model_type in card.model_types:
            types.setdefault(model_type, card)
    return types


def get_arch(name_or_folder: str | os.PathLike[str]) -> tuple[SegmentationArch, ArchCard]:
    """The architecture and its card for ``--arch``: a name of :data:`ARCHS`, or a local
    folder of a transformers model whose ``config.json`` ``model_type`` a card lists
    (``swin`` or ``mask2former`` -> Mask2Former, ``segformer`` -> SegFormer, ``dinov2``
    or ``eomt`` -> EoMT).

    For a folder the card is the family's, with ``name`` and ``init`` set to the folder
    (the build still refuses a segmentation-trained folder unless allowed).

    Raises:
        ValueError: neither a known name nor a folder of a supported model type.
    """
    text = os.fspath(name_or_folder)
    if text in ARCHS:
        card = ARCHS[text]
        return _build(card, card.options), card
    types = folder_types()
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
        if model_type not in types:
            raise ValueError(
                f"--arch folder {text!r} holds a {model_type!r} model; supported model types: "
                + ", ".join(sorted(types))
            )
        base = types[model_type]
        card = ArchCard(
            name=text,
            description=f"{base.name} family from the local {model_type} model {text}",
            init=text,
            recipe=base.recipe,
            options=base.options,
            builder=base.builder,
            family=base.family,
        )
        logger.info("--arch %s: a local %s model, trained as %s", text, model_type, base.name)
        return _build(base, card.options), card
    raise ValueError(
        f"unknown --arch {text!r}; use one of {', '.join(ARCHS)} or a local folder of a "
        f"transformers {' / '.join(types)} model"
    )


def default_segmenter_arch() -> str:
    """``train-segmenter``'s architecture when ``--arch`` is not given (:data:`DEFAULT_ARCH`)."""
    return DEFAULT_ARCH


def available_arch_names() -> list[str]:
    """``deeplabv2``, the in-process additions and the cards' names."""
    return list(dict.fromkeys([DEEPLAB_ARCH, *EXTRA_ARCHS, *ARCHS]))


def lookup_arch(name: str) -> tuple[SegmentationArch, ArchCard | None]:
    """The architecture called ``name`` (or described by the folder ``name``) and its card.

    ``deeplabv2`` gets the default DeepLabV2 (ResNet-101); use :func:`resolve_arch` to
    build it from a run's config. An architecture object written into
    :data:`EXTRA_ARCHS` without a card has none.

    Raises:
        ValueError: the name is unknown (the message lists the known ones).
    """
    if name in EXTRA_ARCHS:
        return EXTRA_ARCHS[name], ARCHS.get(name)
    try:
        arch, card = get_arch(name)
    except (KeyError, LookupError) as error:
        raise ValueError(
            f"architecture {name!r} is unknown ({error}); use one of "
            f"{available_arch_names()} or a folder the registry understands"
        ) from None
    return arch, card


def _from_run(name: str, config: Any) -> SegmentationArch | None:
    """``name``'s architecture built from a run's config, when its builder has
    ``from_config`` (DeepLabV2) and no object was registered under the name."""
    card = ARCHS.get(name)
    if card is None or name in EXTRA_ARCHS or not card.builder:
        return None
    from_config = getattr(_builder(card), "from_config", None)
    if from_config is None:
        return None
    built: SegmentationArch = from_config(config)
    return built


def resolve_arch(config: _RunConfig) -> SegmentationArch:
    """The architecture of a run: built from the config's fields where the card's builder
    takes a config (DeepLabV2), else :func:`lookup_arch`."""
    built = _from_run(config.arch, config)
    return built if built is not None else lookup_arch(config.arch)[0]


def checkpoint_arch(state: Mapping[str, Any], config: _RunConfig) -> SegmentationArch:
    """The architecture that rebuilds a checkpoint's network.

    A checkpoint without ``arch`` (written before architectures were pluggable) is
    DeepLabV2. A name no card knows any more is retried as the run's ``config.arch``
    (e.g. the folder it was trained from).
    """
    name = str(state.get("arch") or DEEPLAB_ARCH)
    built = _from_run(name, config)
    if built is not None:
        return built
    try:
        return lookup_arch(name)[0]
    except ValueError:
        if config.arch in (name, DEEPLAB_ARCH):
            raise
        return lookup_arch(config.arch)[0]


def recipe_values(
    arch: SegmentationArch, card: ArchCard | None, world_size: int = 1
) -> dict[str, Any]:
    """Config values an architecture brings before any user setting: its normalisation,
    and with a card that has a recipe, the recipe and the card's default ``init``.

    The recipe's batch is global; the config's ``batch_size`` is per process, so it is
    divided by ``world_size`` (rounded, with a warning when it does not divide).
    """
    values: dict[str, Any] = {"mean": list(arch.mean), "std": list(arch.std)}
    if card is None or card.recipe is None:
        return values
    recipe = card.recipe
    batch = max(1, round(recipe.batch_size / max(world_size, 1)))
    if batch * world_size != recipe.batch_size:
        logger.warning(
            "%s's recipe batch %d does not divide over %d processes; using %d per process "
            "(set --batch-size to choose)",
            card.name,
            recipe.batch_size,
            world_size,
            batch,
        )
    values.update(
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        backbone_lr_mult=recipe.backbone_lr_mult,
        weight_decay=recipe.weight_decay,
        iterations=recipe.iterations,
        batch_size=batch,
        crop_size=recipe.crop_size,
        poly_power=recipe.poly_power,
        clip_grad_norm=recipe.clip_grad_norm,
        warmup_iterations=recipe.warmup_iterations,
        init=card.init,
    )
    return values


def arch_table() -> list[tuple[str, str, str, str]]:
    """``(name, default init, description, recipe source)`` of every card, for printing."""
    return [
        (
            card.name,
            card.init,
            card.description,
            card.recipe.source
            if card.recipe is not None
            else "the run config's defaults (DeepLabV2's SGD recipe, samwsss.training.config)",
        )
        for card in ARCHS.values()
    ]


def init_weights(arch: str, init: str | None) -> list[Weights]:
    """The initial weights ``train-segmenter --arch arch [--init init]`` loads: ``init``
    (a path, or a hub id), else the architecture card's (DeepLabV2's ``imagenet``: the
    torchvision ResNet-101 ImageNet file in the torch hub cache); none for ``--init none``
    or an architecture with no card (a checkpoint-defined one).

    Raises:
        ValueError: ``init`` is neither an existing path nor a hub id.
    """
    card = ARCHS.get(arch)
    value = init if init is not None else (card.init if card is not None else None)
    if value is None or value == "none":
        return []
    local: dict[str, Any] = {"local_option": "--init PATH", "local_form": "a local copy"}
    if value.startswith("imagenet"):
        from torchvision.models import get_weight

        suffix = "V2" if value == "imagenet-v2" else "V1"
        url = get_weight(f"ResNet101_Weights.IMAGENET1K_{suffix}").url
        cache = torch_hub_dir() / "checkpoints" / url.rsplit("/", 1)[1]
        return [Weights("segmenter init", value, "url", url, url=url, cache_file=str(cache))]
    if Path(value).expanduser().exists():
        return [Weights("segmenter init", value, "local", value, **local)]
    if not HUB_ID.match(value):
        raise ValueError(
            f"--init {value!r} ({arch}) is neither an existing file or folder nor a Hugging "
            "Face hub id owner/name: check the path, or give a hub id"
        )
    return [Weights("segmenter init", value, "hub", value, **local)]
