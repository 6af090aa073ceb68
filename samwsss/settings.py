"""Layered settings: YAML files, ``key=value`` overrides and typed values, done once.

The run commands (``samwsss run ...``) and the training commands both take their settings
from layers applied in order, later layers winning: a preset or recipe, a YAML ``--config``
file, the command's options and ``--set key=value``. This module holds the
pieces they share: reading a YAML mapping, rejecting unknown keys, merging layers, parsing
``--set`` pairs and coercing values to a dataclass's field types. It imports no torch.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_mapping(path: str | os.PathLike[str], not_mapping: str) -> dict[Any, Any]:
    """Read the YAML file ``path``, which must hold a mapping (an empty file is ``{}``).

    Args:
        path: the YAML file.
        not_mapping: the message (after ``"<path>: "``) when the file holds something else;
            ``{type}`` in it is replaced by the type name of what it holds.

    Raises:
        ValueError: ``"<path>: not valid YAML (...)"`` or ``"<path>: <not_mapping>"``.
    """
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: " + not_mapping.format(type=type(loaded).__name__))
    return loaded


def flatten_sections(
    loaded: Mapping[Any, Any], valid: Iterable[str], path: str | os.PathLike[str]
) -> dict[str, Any]:
    """Flatten one level of sections (``train: {lr: 0.001}`` -> ``lr: 0.001``).

    A mapping under a key that is not in ``valid`` is a section (its name is only for
    readability); a key given twice, in two sections or beside one, raises ``ValueError``.
    """
    names = set(valid)
    flat: dict[str, Any] = {}
    for key, value in loaded.items():
        items: Iterable[tuple[Any, Any]]
        if isinstance(value, dict) and key not in names:
            items = value.items()
        else:
            items = [(key, value)]
        for name, item in items:
            if name in flat:
                raise ValueError(f"{path}: config key {name!r} is given twice")
            flat[str(name)] = item
    return flat


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given: those whose value is not ``None``."""
    return {key: value for key, value in options.items() if value is not None}


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``layers`` in order; a key of a later layer wins over an earlier one."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``["lr=0.001", "atrous_rates=[6,12]"]`` into a dict (values read as YAML)."""
    import yaml

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {pair!r} must look like key=value, e.g. lr=0.001")
        result[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return result


def apply_values(target: T, values: Mapping[str, Any], unknown: Callable[[str], str]) -> T:
    """A copy of the dataclass ``target`` with ``values`` set, each coerced to its field type.

    Args:
        target: a dataclass instance (not changed).
        values: field name -> value, applied in order.
        unknown: builds the message for a key that is not a field (given the key).

    Raises:
        ValueError: for an unknown key (``unknown(key)``) or a value of the wrong type.
    """
    result = dataclasses.replace(target)  # type: ignore[type-var]
    hints = typing.get_type_hints(type(target))
    valid = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    for key, value in values.items():
        if key not in valid:
            raise ValueError(unknown(key))
        setattr(result, key, coerce(key, value, hints[key]))
    return result


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check/convert ``value`` to the field type ``hint``; raise ``ValueError`` if impossible."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for candidate in non_none:
            try:
                return coerce(key, value, candidate)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ValueError(f"config {key} must be a list, got {value!r}")
        (item_type,) = args
        return [coerce(key, item, item_type) for item in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"config {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ValueError(f"config {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"config {key} must be a string, got {value!r}")
    raise ValueError(f"config {key}: unsupported type {hint!r}")  # pragma: no cover
