"""Which architecture a run or a checkpoint uses, and the config defaults of its recipe.

``deeplabv2`` is built here from the run's config (:class:`~samwsss.segnets.deeplab.DeepLabArch`);
every other name (or folder) goes to ``samwsss.segnets.registry.get_arch``, which returns
the architecture and, for a named one, its :class:`~samwsss.segnets.arch.ArchCard` (recipe and
default initial weights). The registry is imported only when such a name is asked for; an
installation without it offers ``deeplabv2`` alone.

:data:`EXTRA_ARCHS` lets a program (or a test) add architecture objects by name in-process;
they are looked up before the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from samwsss.segnets.deeplab import DEEPLAB_ARCH, DeepLabArch

if TYPE_CHECKING:
    from samwsss.deeplab.config import DeepLabConfig
    from samwsss.segnets.arch import ArchCard, SegmentationArch

logger = logging.getLogger(__name__)

#: The registry module of the other architectures (imported lazily).
REGISTRY_MODULE = "samwsss.segnets.registry"

#: ``train-segmenter``'s architecture when ``--arch`` is not given (the registry may name
#: another through its ``DEFAULT_ARCH``).
DEFAULT_SEGMENTER_ARCH = "mask2former-swin-large"

#: Architectures added in-process by name (looked up before the registry).
EXTRA_ARCHS: dict[str, SegmentationArch] = {}


def _registry() -> Any | None:
    """``samwsss.segnets.registry``, or ``None`` when this installation has none."""
    try:
        if importlib.util.find_spec(REGISTRY_MODULE) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(REGISTRY_MODULE)


def default_segmenter_arch() -> str:
    """The registry's ``DEFAULT_ARCH`` (else :data:`DEFAULT_SEGMENTER_ARCH`)."""
    registry = _registry()
    return str(getattr(registry, "DEFAULT_ARCH", DEFAULT_SEGMENTER_ARCH))


def available_arch_names() -> list[str]:
    """``deeplabv2``, the in-process additions and the registry's names (``ARCHS``)."""
    names = [DEEPLAB_ARCH, *EXTRA_ARCHS]
    registry = _registry()
    if registry is not None:
        names += [str(name) for name in getattr(registry, "ARCHS", {})]
    return list(dict.fromkeys(names))


def lookup_arch(name: str) -> tuple[SegmentationArch, ArchCard | None]:
    """The architecture called ``name`` (or described by the folder ``name``) and its card.

    ``deeplabv2`` gets the default DeepLabV2 (ResNet-101) and no card; use
    :func:`resolve_arch` to build it from a run's config.

    Raises:
        ValueError: the name is unknown (the message lists the known ones), or it needs the
            registry and this installation has none.
    """
    if name in EXTRA_ARCHS:
        return EXTRA_ARCHS[name], None
    if name == DEEPLAB_ARCH:
        return DeepLabArch(), None
    registry = _registry()
    if registry is None:
        raise ValueError(
            f"architecture {name!r} is unknown: this installation has only "
            f"{[DEEPLAB_ARCH, *EXTRA_ARCHS]} ({REGISTRY_MODULE} is missing); use "
            f"--arch {DEEPLAB_ARCH} (or train-deeplab)"
        )
    try:
        arch, card = registry.get_arch(name)
    except (KeyError, LookupError) as error:
        raise ValueError(
            f"architecture {name!r} is unknown ({error}); use one of "
            f"{available_arch_names()} or a folder the registry understands"
        ) from None
    return arch, card


def resolve_arch(config: DeepLabConfig) -> SegmentationArch:
    """The architecture of a run: DeepLabV2 from the config's fields, else :func:`lookup_arch`."""
    if config.arch == DEEPLAB_ARCH and DEEPLAB_ARCH not in EXTRA_ARCHS:
        return DeepLabArch.from_config(config)
    return lookup_arch(config.arch)[0]


def checkpoint_arch(state: dict[str, Any], config: DeepLabConfig) -> SegmentationArch:
    """The architecture that rebuilds a checkpoint's network.

    A checkpoint without ``arch`` (written before architectures were pluggable) is
    DeepLabV2. A name the registry no longer knows is retried as the run's ``config.arch``
    (e.g. the folder it was trained from).
    """
    name = str(state.get("arch") or DEEPLAB_ARCH)
    if name == DEEPLAB_ARCH and DEEPLAB_ARCH not in EXTRA_ARCHS:
        return DeepLabArch.from_config(config)
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
    and with a card its recipe and default ``init``.

    The recipe's batch is global; the config's ``batch_size`` is per process, so it is
    divided by ``world_size`` (rounded, with a warning when it does not divide).
    """
    values: dict[str, Any] = {"mean": list(arch.mean), "std": list(arch.std)}
    if card is None:
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
