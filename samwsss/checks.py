"""Argument checks shared by the public API: one message shape for each kind of bad value."""

from __future__ import annotations

import os
from collections.abc import Iterable
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samwsss.choices import DTYPE_ALIASES, DTYPES

if TYPE_CHECKING:
    import torch


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming ``name``, the bad value and the valid ones.
    """
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def check_fraction(
    name: str, value: Any, *, include_low: bool = True, include_high: bool = True
) -> float:
    """``value`` as a float in the unit interval, ends included or not as asked.

    Raises:
        ValueError: not a number, or outside the interval (the message shows it).
    """
    low, high = "[" if include_low else "(", "]" if include_high else ")"
    interval = f"{low}0, 1{high}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    number = float(value)
    above = number >= 0.0 if include_low else number > 0.0
    below = number <= 1.0 if include_high else number < 1.0
    if not (above and below):
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return number


def check_optional_fraction(
    name: str, value: Any, *, include_low: bool = True, include_high: bool = True
) -> float | None:
    """:func:`check_fraction`, with ``None`` passed through (the setting is off)."""
    if value is None:
        return None
    try:
        return check_fraction(name, value, include_low=include_low, include_high=include_high)
    except ValueError as error:
        raise ValueError(f"{error} (or None to turn it off)") from None


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``.

    Raises:
        ValueError: not an integer, or smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A compute dtype from a torch dtype or a name (``"bf16"``, ``"float32"``, ...).

    Returns ``None`` for ``None`` or ``"auto"`` (the stage picks: bfloat16 on CUDA, float32
    elsewhere).

    Raises:
        ValueError: another dtype or name; the message lists the valid names.
    """
    if dtype is None or dtype == "auto":
        return None
    import torch

    valid = ", ".join(("auto", *DTYPES, *DTYPE_ALIASES))
    if isinstance(dtype, torch.dtype):
        if str(dtype).replace("torch.", "") not in DTYPES:
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        name = DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
        if name in DTYPES:
            parsed: torch.dtype = getattr(torch, name)
            return parsed
    raise ValueError(f"dtype must be None, a torch dtype or one of {valid}; got {dtype!r}")


def check_file(name: str, value: str | os.PathLike[str], what: str = "a file") -> Path:
    """``value`` as an existing local file (``~`` expanded).

    Args:
        name: the option or argument, for the message (``"--labels"``).
        what: what the file should be, for the message (``"a JSON or CSV labels file"``).

    Raises:
        ValueError: no such path, or a folder (the message says which and what to give).
    """
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"{name} {value}: no such file; give {what}")
    if not path.is_file():
        raise ValueError(f"{name} {value} is a folder, not a file; give {what}")
    return path


def check_folder(name: str, value: str | os.PathLike[str], what: str = "a folder") -> Path:
    """``value`` as an existing local folder (``~`` expanded).

    Raises:
        ValueError: no such path, or a file (the message says which and what to give).
    """
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"{name} {value}: no such folder; give {what}")
    if not path.is_dir():
        raise ValueError(f"{name} {value} is a file, not a folder; give {what}")
    return path
