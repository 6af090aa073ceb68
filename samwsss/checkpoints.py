"""Reading PyTorch checkpoint files: the one place every loader goes through.

``torch.load`` fails in many ways on a file that is not a checkpoint (an empty file raises
``EOFError``, a text file ``UnpicklingError`` or, through the weights-only unpickler,
``KeyError``; a zip file ``RuntimeError``). :func:`load_checkpoint` turns each of them into
one :class:`CheckpointError` that names the file, what was wrong and what was expected::

    PATH is not a SAM checkpoint: the file is empty; expected an official SAM .pth ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "not_a_checkpoint", "tensor_state"]


class CheckpointError(ValueError):
    """A file that should hold model weights does not (unreadable, wrong layout or keys)."""


def not_a_checkpoint(
    path: str | os.PathLike[str], kind: str, reason: str, expected: str
) -> CheckpointError:
    """The error for a file that is not a ``kind`` checkpoint (to raise)."""
    return CheckpointError(f"{path} is not a {kind} checkpoint: {reason}; expected {expected}")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str,
    expected: str,
    allow_pickle: bool = False,
    mmap: bool = False,
) -> Any:
    """Read ``path`` with ``torch.load`` onto the CPU (weights only, unless ``allow_pickle``).

    Args:
        path: the checkpoint file.
        kind: what the file should be, for messages (``"SAM"``, ``"DeepLabV2"``).
        expected: what a right file looks like, for messages (``"an official SAM .pth"``).
        allow_pickle: full unpickling (runs code from the file); only for trusted files.
        mmap: memory-map the file when its format allows (falls back to reading it).

    Returns:
        Whatever the file holds (usually a dict); callers check its layout.

    Raises:
        CheckpointError: the file is missing, a folder, empty, or not a PyTorch checkpoint
            (every error of ``torch.load`` is turned into this one).
    """
    target = Path(path)
    if not target.exists():
        raise not_a_checkpoint(path, kind, "no such file", expected)
    if not target.is_file():
        raise not_a_checkpoint(path, kind, "it is a folder, not a file", expected)
    try:
        if target.stat().st_size == 0:
            raise not_a_checkpoint(path, kind, "the file is empty", expected)
    except OSError as error:
        raise not_a_checkpoint(path, kind, f"cannot read it ({error})", expected) from error
    try:
        if mmap:
            try:
                return torch.load(
                    target, map_location="cpu", weights_only=not allow_pickle, mmap=True
                )
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
        return torch.load(target, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:  # torch.load has no one error type; every failure means the same
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        hint = (
            " (the safe weights-only reader refused it; if the file comes from a source you "
            "trust, pass allow_pickle=True)"
            if not allow_pickle and "weights_only" in str(error)
            else ""
        )
        raise not_a_checkpoint(
            path, kind, f"torch.load failed ({reason}){hint}", expected
        ) from error


def tensor_state(
    loaded: Any,
    path: str | os.PathLike[str],
    *,
    kind: str,
    expected: str,
    nested: tuple[str, ...] = ("model",),
) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: ``loaded`` itself or its first ``nested`` entry.

    Raises:
        CheckpointError: no ``{name: tensor}`` mapping found (the top-level keys are listed).
    """
    state = loaded
    if isinstance(loaded, Mapping):
        for key in nested:
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
    if (
        isinstance(state, Mapping)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        return dict(state)
    if isinstance(loaded, Mapping):
        found = "keys " + ", ".join(map(repr, list(loaded)[:10])) if loaded else "an empty dict"
    else:
        found = f"a {type(loaded).__name__}"
    raise not_a_checkpoint(path, kind, f"no state dict of tensors inside (found {found})", expected)
