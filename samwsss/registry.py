"""One route from a model name to a built stage (timm's ``create_model`` pattern).

:mod:`samwsss.released` declares the released weights of each stage kind once, as a table
of :class:`ModelCard` (name -> weights location, description, default arguments), importable
without torch; each stage module registers those cards with the loader that builds that
stage kind from a name, hub id, folder or file. :func:`create` is the one way the
pipeline, the CLI and the benchmarks build a stage:

>>> boxer = create("boxer", "grounding-dino-tiny", box_threshold=0.35)  # doctest: +SKIP
>>> masker = create("masker", "/models/my-sam", multimask="best")       # doctest: +SKIP

Stage modules register on import; this module imports them lazily, the first time a
kind is looked up, so ``import samwsss.registry`` loads no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Stage kind -> modules that register its loader and cards (imported on first lookup).
PROVIDERS: dict[str, tuple[str, ...]] = {
    "boxer": ("samwsss.stages.boxer",),
    "masker": ("samwsss.stages.masker",),
    "tagger": (
        "samwsss.ram.tagger",
        "samwsss.stages.grounding_tagger",
        "samwsss.stages.presence_tagger",
    ),
    "segmenter": ("samwsss.stages.segmenter_sam3",),
}

#: ``loader(name_or_path, **kwargs) -> stage``.
Loader = Callable[..., Any]


@dataclass(frozen=True)
class ModelCard:
    """A released model users can name.

    Attributes:
        kind: stage kind (``"boxer"``, ``"masker"``, ``"tagger"``).
        name: the registry name users type (``"grounding-dino-tiny"``).
        weights: where its weights are (hub id, URL or file name); recorded in manifests.
        description: one line for ``samwsss models``.
        defaults: keyword arguments the loader gets unless the caller gives them.
        loader: builds this card instead of the kind's loader (e.g. a tagger that reuses
            the pipeline's boxer), called as ``loader(name, **kwargs)``.
        gated: the hub repository is gated: downloading it needs an account that accepted
            its terms and a token (``hf auth login`` or ``HF_TOKEN``).
    """

    kind: str
    name: str
    weights: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    loader: Loader | None = None
    gated: bool = False


_LOADERS: dict[str, Loader] = {}
_CARDS: dict[str, dict[str, ModelCard]] = {}
_LOADED: set[str] = set()


def register(kind: str, loader: Loader, cards: Iterable[ModelCard] = ()) -> None:
    """Register the loader of stage ``kind`` and its released models.

    Args:
        kind: a key of :data:`PROVIDERS`.
        loader: ``loader(name_or_path, **kwargs)`` builds a stage from a registered name,
            a hub id, a local folder or a checkpoint file.
        cards: the kind's released weights (names must be unique within the kind).
    """
    _check_kind(kind)
    _LOADERS[kind] = loader
    register_cards(cards)


def register_cards(cards: Iterable[ModelCard]) -> None:
    """Add released models to their kinds' tables (for cards with their own loader)."""
    for card in cards:
        _check_kind(card.kind)
        table = _CARDS.setdefault(card.kind, {})
        if card.name in table and table[card.name] != card:
            raise ValueError(f"{card.kind} {card.name!r} is registered twice")
        table[card.name] = card


def _check_kind(kind: str) -> None:
    if kind not in PROVIDERS:
        raise ValueError(f"unknown stage kind {kind!r}: use one of {', '.join(PROVIDERS)}")


def _ensure_loaded(kind: str) -> dict[str, ModelCard]:
    _check_kind(kind)
    if kind not in _LOADED:
        for module in PROVIDERS[kind]:
            importlib.import_module(module)
        _LOADED.add(kind)
    return _CARDS.setdefault(kind, {})


def list_models(kind: str) -> dict[str, ModelCard]:
    """The released models of ``kind``: name -> card."""
    return dict(_ensure_loaded(kind))


def card(kind: str, name: str) -> ModelCard | None:
    """The card registered as ``name`` of ``kind``, or ``None`` (a path or hub id)."""
    return _ensure_loaded(kind).get(str(name))


def released(kind: str, name: str) -> ModelCard | None:
    """The card of the released model ``name`` of ``kind`` (:mod:`samwsss.released`: the
    models with weights of their own), or ``None``; imports no stage module, so no torch."""
    _check_kind(kind)
    from samwsss.released import RELEASED

    return next((entry for entry in RELEASED.get(kind, ()) if entry.name == str(name)), None)


def weights_of(kind: str, name_or_path: str | Path) -> str:
    """Where to load from: a registered name's weights, else ``name_or_path`` itself."""
    found = card(kind, str(name_or_path))
    return found.weights if found is not None else str(name_or_path)


def create(kind: str, name_or_path: str | Path, **kwargs: Any) -> Any:
    """Build a stage of ``kind`` from a registered name, hub id, local folder or file.

    Args:
        kind: ``"boxer"``, ``"masker"`` or ``"tagger"``.
        name_or_path: a name of :func:`list_models` (its card's ``defaults`` apply unless
            ``kwargs`` override them), or whatever the kind's loader accepts (hub id,
            ``save_pretrained`` folder, checkpoint file).
        kwargs: the loader's arguments; ``weights=`` loads a registered model from another
            location (a local copy) with the card's defaults.

    Raises:
        ValueError: unknown kind; or the loader's own errors (unknown name, missing file).
    """
    found = card(kind, str(name_or_path))
    if found is None:
        return _LOADERS[kind](str(name_or_path), **kwargs)
    arguments = {**found.defaults, **kwargs}
    source = arguments.pop("weights", None) or found.name
    loader = found.loader if found.loader is not None else _LOADERS[kind]
    return loader(str(source), **arguments)


def model_table(kinds: Iterable[str] = tuple(PROVIDERS)) -> list[tuple[str, str, str, str]]:
    """``(kind, name, weights, description)`` rows of every released model, for printing."""
    rows = []
    for kind in kinds:
        for name, entry in sorted(list_models(kind).items()):
            rows.append((kind, name, entry.weights, entry.description))
    return rows
