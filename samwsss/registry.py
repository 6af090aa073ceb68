"""Name -> builder registries for the model stages (timm's ``create_model`` pattern).

Each stage kind (``"boxer"``, ``"masker"``, ``"tagger"``) has its own table. A builder is
registered with the names users type (``"grounding-dino-tiny"``, ``"sam-vit-huge"``,
``"ram-plus-swin-large-14m"``) and receives the keyword arguments given to :func:`create`.
Modules that define builders are imported lazily the first time a kind is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: kind -> modules that register builders of that kind (imported on first lookup).
_PROVIDERS: dict[str, tuple[str, ...]] = {
    "boxer": ("samwsss.stages.boxer",),
    "masker": ("samwsss.stages.masker",),
    "tagger": ("samwsss.ram.tagger", "samwsss.stages.grounding_tagger"),
}


@dataclass(frozen=True)
class RegistryEntry:
    """A registered model: its builder, the weights it loads by default and a description."""

    name: str
    builder: Callable[..., Any]
    weights: str
    description: str


_TABLES: dict[str, dict[str, RegistryEntry]] = {}
_LOADED: set[str] = set()


def register(
    kind: str, name: str, weights: str, description: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder`` as ``name`` of stage ``kind``.

    Args:
        kind: stage kind, e.g. ``"boxer"``.
        name: the registry name users type.
        weights: default weights location (hub id, URL or file) recorded in run manifests.
        description: one line for ``list_models``.
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        table = _TABLES.setdefault(kind, {})
        table[name] = RegistryEntry(name, builder, weights, description)
        return builder

    return decorator


def _ensure_loaded(kind: str) -> dict[str, RegistryEntry]:
    if kind not in _PROVIDERS:
        raise ValueError(f"unknown stage kind {kind!r}: use one of {', '.join(_PROVIDERS)}")
    if kind not in _LOADED:
        for module in _PROVIDERS[kind]:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                if error.name != module:
                    raise
        _LOADED.add(kind)
    return _TABLES.setdefault(kind, {})


def list_models(kind: str) -> dict[str, RegistryEntry]:
    """All registered names of ``kind`` with their entries."""
    return dict(_ensure_loaded(kind))


def get_entry(kind: str, name: str) -> RegistryEntry | None:
    """The entry registered as ``name``, or ``None``."""
    return _ensure_loaded(kind).get(name)


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build the stage registered as ``name`` of ``kind``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the registered names.
            (Builders themselves accept hub ids and local folders through their own
            ``from_pretrained``-style constructors.)
    """
    table = _ensure_loaded(kind)
    if name not in table:
        raise ValueError(
            f"unknown {kind} {name!r}: registered names are {', '.join(sorted(table)) or 'none'}"
        )
    return table[name].builder(**kwargs)
