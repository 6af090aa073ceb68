"""One route from a model name to a built stage (timm's ``create_model`` pattern).

Every model users can name is a :class:`ModelCard` that names the loader that builds it
(a ``"module:attribute"`` string, imported the first time the card is built). The
released cards are declared once, torch-free, in :mod:`samwsss.released`; a program adds
its own with :func:`register_cards` (any number of loaders per kind: each card goes to its
own). :func:`create` is the one way the pipeline, the CLI and the benchmarks build a
stage:

>>> boxer = create("boxer", "grounding-dino-tiny", box_threshold=0.35)  # doctest: +SKIP
>>> masker = create("masker", "/models/my-sam", multimask="best")       # doctest: +SKIP

A hub id or local folder that is no registered name goes to the loader of the card whose
``model_types`` lists its ``config.json`` ``model_type`` (read from the folder, or from the
local hub cache: never the network), else to the kind's default loader
(:data:`samwsss.released.DEFAULT_LOADERS`), which says what it cannot load.
``import samwsss.registry`` loads no torch, and neither do :func:`list_models` and
:func:`model_table`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from samwsss.released import CARDS, DEFAULT_LOADERS, RELEASED, Loader, ModelCard

__all__ = [
    "KINDS",
    "PROVIDERS",
    "Loader",
    "ModelCard",
    "card",
    "create",
    "list_models",
    "model_table",
    "register",
    "register_cards",
    "released",
    "resolve_loader",
    "unregister",
    "weights_of",
]

logger = logging.getLogger(__name__)

#: The stage kinds.
KINDS: tuple[str, ...] = ("boxer", "masker", "tagger", "segmenter")

#: Stage kind -> modules imported before the kind's first lookup, for programs whose
#: cards are registered by a module's import (the released cards need none: they carry
#: their loaders).
PROVIDERS: dict[str, tuple[str, ...]] = dict.fromkeys(KINDS, ())

_CARDS: dict[str, dict[str, ModelCard]] = {kind: {} for kind in KINDS}
_LOADED: set[str] = set()


def register_cards(cards: Iterable[ModelCard]) -> None:
    """Add models to their kinds' tables; each card is built by its own ``loader``.

    Raises:
        ValueError: an unknown kind, or a name of the kind registered with another card.
    """
    for entry in cards:
        table = _CARDS[_check_kind(entry.kind)]
        if entry.name in table and table[entry.name] != entry:
            raise ValueError(f"{entry.kind} {entry.name!r} is registered twice")
        table[entry.name] = entry


def register(kind: str, loader: Loader | str, cards: Iterable[ModelCard]) -> None:
    """Register ``cards`` of ``kind``, built by ``loader`` unless a card names its own.

    The loader serves these cards (and the ``model_types`` they list) only: the cards
    already registered keep their loaders.

    Raises:
        ValueError: an unknown kind, a card of another kind, no card at all, or a name
            registered twice.
    """
    given = list(cards)
    if not given:
        raise ValueError(
            f"register({kind!r}, ...) needs the cards the loader builds (a card's "
            "model_types routes hub ids and folders of those types to it)"
        )
    for entry in given:
        if entry.kind != _check_kind(kind):
            raise ValueError(f"card {entry.name!r} is a {entry.kind}, not a {kind}")
    register_cards(
        _with_loader(entry, loader) if entry.loader is None else entry for entry in given
    )


def unregister(kind: str, name: str) -> ModelCard | None:
    """Remove the card ``name`` of ``kind``; returns it (``None`` when there was none)."""
    return _CARDS[_check_kind(kind)].pop(str(name), None)


def _with_loader(entry: ModelCard, loader: Loader | str) -> ModelCard:
    return ModelCard(
        entry.kind,
        entry.name,
        entry.weights,
        entry.description,
        defaults=entry.defaults,
        loader=loader,
        model_types=entry.model_types,
        gated=entry.gated,
    )


def _check_kind(kind: str) -> str:
    if kind not in _CARDS:
        raise ValueError(f"unknown stage kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def _ensure_loaded(kind: str) -> dict[str, ModelCard]:
    table = _CARDS[_check_kind(kind)]
    if kind not in _LOADED:
        for module in PROVIDERS.get(kind, ()):
            importlib.import_module(module)
        _LOADED.add(kind)
    return table


def list_models(kind: str) -> dict[str, ModelCard]:
    """The models of ``kind`` users can name: name -> card."""
    return dict(_ensure_loaded(kind))


def card(kind: str, name: str) -> ModelCard | None:
    """The card registered as ``name`` of ``kind``, or ``None`` (a path or hub id)."""
    return _ensure_loaded(kind).get(str(name))


def released(kind: str, name: str) -> ModelCard | None:
    """The card of the released model ``name`` of ``kind`` (:data:`samwsss.released.RELEASED`:
    the models with weights of their own), or ``None``; imports no stage module, no torch."""
    _check_kind(kind)
    return next((entry for entry in RELEASED.get(kind, ()) if entry.name == str(name)), None)


def weights_of(kind: str, name_or_path: str | Path) -> str:
    """Where to load from: a registered name's weights, else ``name_or_path`` itself."""
    found = card(kind, str(name_or_path))
    return found.weights if found is not None else str(name_or_path)


def resolve_loader(loader: Loader | str) -> Loader:
    """The callable a card names: ``"package.module:Class.method"`` is imported (the
    module) and looked up (the dotted attribute); a callable is returned as is.

    Raises:
        ValueError: a string without ``:`` or naming nothing callable.
    """
    if not isinstance(loader, str):
        return loader
    module_name, _, attribute = loader.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"loader {loader!r} is not 'module:attribute'")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"loader {loader!r} is not callable")
    return found


def _source_model_type(name_or_path: str) -> str | None:
    """``config.json`` ``model_type`` of a local folder, or of a hub id whose config is
    in the local hub cache; ``None`` when unknown (never touches the network)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        try:
            found = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return None
        return found if isinstance(found, str) else None
    if path.exists() or name_or_path.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
        if not isinstance(cached, str):
            return None
        found = json.loads(Path(cached).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _route(kind: str, name_or_path: str) -> Loader | str:
    """The loader of a hub id or path: that of the card whose ``model_types`` lists its
    ``config.json`` ``model_type``, else the kind's default loader (the config is read
    only when a card of the kind has a loader of its own)."""
    default: Loader | str = DEFAULT_LOADERS[kind]
    others = [
        entry
        for entry in _ensure_loaded(kind).values()
        if entry.loader not in (None, default) and entry.model_types
    ]
    if not others:
        return default
    model_type = _source_model_type(name_or_path)
    return next(
        (entry.loader for entry in others if model_type in entry.model_types and entry.loader),
        default,
    )


def _accepted(loader: Callable[..., Any], optional: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``optional`` that ``loader`` names as keyword parameters (a loader
    taking ``**kwargs`` passes them on to someone else: it gets none of them)."""
    try:
        parameters = inspect.signature(loader).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return dict(optional)
    named = {
        name
        for name, parameter in parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    dropped = sorted(set(optional) - named)
    if dropped:
        logger.debug("%s takes no %s: not passed", getattr(loader, "__qualname__", loader), dropped)
    return {name: value for name, value in optional.items() if name in named}


def create(
    kind: str,
    name_or_path: str | Path,
    *,
    optional: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Build a stage of ``kind`` from a registered name, hub id, local folder or file.

    Args:
        kind: ``"boxer"``, ``"masker"``, ``"tagger"`` or ``"segmenter"``.
        name_or_path: a name of :func:`list_models` (its card's loader builds it, with the
            card's ``defaults`` unless ``kwargs`` override them), or whatever a loader of
            the kind accepts (hub id, ``save_pretrained`` folder, checkpoint file), routed
            by its ``config.json`` ``model_type``.
        optional: keyword arguments passed only if the chosen loader names them as
            parameters (model-specific options the caller sets for whichever model runs).
        kwargs: the loader's arguments; ``weights=`` loads a registered model from another
            location (a local copy) with the card's defaults.

    Raises:
        ValueError: unknown kind; or the loader's own errors (unknown name, missing file).
    """
    found = card(kind, str(name_or_path))
    if found is None:
        loader = resolve_loader(_route(kind, str(name_or_path)))
        return loader(str(name_or_path), **{**_accepted(loader, optional or {}), **kwargs})
    loader = resolve_loader(found.loader if found.loader is not None else DEFAULT_LOADERS[kind])
    arguments = {**found.defaults, **_accepted(loader, optional or {}), **kwargs}
    source = arguments.pop("weights", None) or found.name
    return loader(str(source), **arguments)


def model_table(kinds: Iterable[str] = KINDS) -> list[tuple[str, str, str, str]]:
    """``(kind, name, weights, description)`` rows of every registered model, for printing."""
    rows = []
    for kind in kinds:
        for name, entry in sorted(list_models(kind).items()):
            rows.append((kind, name, entry.weights, entry.description))
    return rows


for _kind_cards in CARDS.values():
    register_cards(_kind_cards)
