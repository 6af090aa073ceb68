"""Old home of the architecture lookups; they live in :mod:`samwsss.segnets.registry`
(one table of architecture cards, DeepLabV2's included). Re-exported for old imports."""

from __future__ import annotations

from samwsss.segnets.registry import (
    DEEPLAB_ARCH,
    DEFAULT_SEGMENTER_ARCH,
    EXTRA_ARCHS,
    available_arch_names,
    checkpoint_arch,
    default_segmenter_arch,
    lookup_arch,
    recipe_values,
    register_arch,
    resolve_arch,
    unregister_arch,
)

__all__ = [
    "DEEPLAB_ARCH",
    "DEFAULT_SEGMENTER_ARCH",
    "EXTRA_ARCHS",
    "available_arch_names",
    "checkpoint_arch",
    "default_segmenter_arch",
    "lookup_arch",
    "recipe_values",
    "register_arch",
    "resolve_arch",
    "unregister_arch",
]
