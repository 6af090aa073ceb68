"""Training checkpoints and the RNG states they carry.

A full checkpoint (``checkpoints/last.pt``) is a dict with ``format`` (``CHECKPOINT_FORMAT``,
``"samwsss-segmenter"``), ``version`` (2), ``iteration``, ``config``
(:meth:`TrainConfig.to_dict`), ``class_names``, ``world_size``, ``arch`` (the
architecture's name), ``architecture`` (``arch.architecture(model)``: what
``arch.rebuild`` needs to make the network again without downloads), ``model`` (CPU state
dict), ``optimizer`` (its state dict, momentum / moments included), ``rng``
(:func:`capture_rng_state`) and ``guard`` (the divergence guard's reference loss,
:meth:`~samwsss.training.guard.DivergenceGuard.state`; absent in older checkpoints). The
final model (``model_final.pt``) has the same keys without ``optimizer``, ``rng`` and
``guard``.

Checkpoints of version 1 (format ``"samwsss-deeplabv2"``, no ``arch`` nor
``architecture``) are DeepLabV2 runs; they are read (and resumed) as such.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from samwsss.atomic import atomic_open
from samwsss.checkpoints import load_checkpoint, not_a_checkpoint
from samwsss.segnets.registry import resolve_arch
from samwsss.training.config import RESUME_MUTABLE, TrainConfig, config_from_dict
from samwsss.training.predict import CHECKPOINT_FORMAT, CHECKPOINT_FORMATS

if TYPE_CHECKING:
    from samwsss.segnets.arch import SegmentationArch


# --------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy (legacy global) and python ``random`` states, as plain tensors/lists.

    Returns:
        ``{"torch": uint8 tensor, "cuda": [uint8 tensor per device], "numpy": {"kind": str,
        "keys": (624,) int64 tensor, "pos", "has_gauss": int, "cached_gaussian": float},
        "python": [version, list of ints, gauss]}``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_host_rngs(seed: int) -> None:
    """Seed python ``random`` and numpy's legacy global generator (a run that starts fresh)."""
    random.seed(seed)
    np.random.seed(seed)


# --------------------------------------------------------------------------- checkpoints
def checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    config: TrainConfig,
    class_names: Sequence[str],
    world_size: int,
    arch: SegmentationArch | None = None,
    *,
    guard: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of the module docstring.

    Args:
        model: the bare model (not a DDP wrapper); its tensors are copied to the CPU.
        optimizer: the optimiser for a full (resumable) checkpoint, with the RNG states;
            ``None`` for the final model.
        iteration: iterations completed.
        world_size: processes of the run (the global batch is ``world_size x batch_size``).
        arch: the architecture of ``model`` (``None``: DeepLabV2 of ``config``).
        guard: the divergence guard's state, kept in a full checkpoint (so a resumed run
            compares its losses with the same reference).
    """
    if arch is None:
        arch = resolve_arch(config)
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": 2,
        "iteration": iteration,
        "config": config.to_dict(),
        "class_names": list(class_names),
        "world_size": world_size,
        "arch": arch.name,
        "architecture": arch.architecture(model),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
        state["rng"] = capture_rng_state()
        if guard is not None:
            state["guard"] = dict(guard)
    return state


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` with ``torch.save`` atomically (serialised in memory first)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a full training checkpoint (weights only) onto the CPU.

    Raises:
        ValueError: the file is not a samwsss checkpoint or has no optimiser state.
    """
    expected = (
        "checkpoints/last.pt of a train-segmenter / train-deeplab run (with its optimiser state)"
    )
    state = load_checkpoint(path, kind="samwsss training", expected=expected)
    if not isinstance(state, dict) or state.get("format") not in CHECKPOINT_FORMATS:
        raise not_a_checkpoint(path, "samwsss training", "no samwsss format tag", expected)
    if "optimizer" not in state:
        raise not_a_checkpoint(path, "samwsss training", "no optimiser state", expected)
    return state


def check_resumable(
    state: dict[str, Any],
    config: TrainConfig,
    class_names: Sequence[str],
    world_size: int,
    run_dir: Path,
) -> None:
    """Refuse to resume the run in ``run_dir`` from ``state`` with other settings.

    Raises:
        ValueError: the config differs in a field outside ``RESUME_MUTABLE``, the global
            batch (processes x ``batch_size``) differs, or the class names differ.
    """
    saved = config_from_dict(state["config"])
    changed = {
        name: values for name, values in saved.diff(config).items() if name not in RESUME_MUTABLE
    }
    if changed:
        details = ", ".join(f"{k}: run {a!r} vs now {b!r}" for k, (a, b) in changed.items())
        raise ValueError(
            f"cannot resume {run_dir}: the config differs in {details}; "
            "resume with the same settings or start a new --out"
        )
    saved_global = int(state.get("world_size", 1)) * int(saved.batch_size or 0)
    if saved_global != world_size * int(config.batch_size or 0):
        raise ValueError(
            f"cannot resume: the run used a global batch of {state.get('world_size', 1)} "
            f"processes x {saved.batch_size}, now {world_size} x "
            f"{config.batch_size}; keep processes x batch_size the same"
        )
    if tuple(state["class_names"]) != tuple(class_names):
        raise ValueError(
            f"cannot resume {run_dir}: the run was trained on the classes "
            f"{list(state['class_names'])} but the dataset has "
            f"{list(class_names)}; give the run's dataset (or --mapping)"
        )
