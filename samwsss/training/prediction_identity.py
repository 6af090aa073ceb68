"""The identity of a prediction run, saved in its folder: resume only what the same run wrote.

``predict`` skips images whose ``<id>.png`` already exists so that a killed run resumes.
That is only safe when the existing files came from the same model, the same test-time
augmentation and the same dataset; otherwise the folder (and the mIoU computed over it)
would mix two runs. The folder therefore holds ``prediction_identity.json``::

    {"format": "samwsss-deeplab-predictions", "version": 1,
     "checkpoint": {"path": "/abs/run/model_final.pt", "iteration": 20000,
                    "weights_sha256": "<64 hex>"},
     "classes": ["background", ...],
     "dataset": {"kind": "voc", "root": "/abs/VOCdevkit/VOC2012", "split": "val"},
     "inference": {"scales": [0.5, 1.0, 1.5], "flip": true, "bf16": false,
                   "palette": true}}

Two identities match when everything but ``checkpoint.path`` is equal: the weights'
hash identifies the model (a copied or moved checkpoint, or ``last.pt`` and
``model_final.pt`` of the same iteration, predict the same), and ``iteration`` is
recorded for people reading the file. The folder itself (the rule between identities, the
lock) is a :class:`~samwsss.runs.folder.RunFolder`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from samwsss.data.base import SegmentationDataset
from samwsss.runs.folder import identity_differences as setting_differences

IDENTITY_NAME = "prediction_identity.json"
IDENTITY_FORMAT = "samwsss-deeplab-predictions"


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's keys, dtypes, shapes and raw bytes (key order as given).

    Args:
        state: parameter/buffer name -> tensor (any device, any dtype).

    Returns:
        64 lower-case hex digits.
    """
    digest = hashlib.sha256()
    for name, tensor in state.items():
        value = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{value.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_identity(dataset: SegmentationDataset) -> dict[str, Any]:
    """Which images ``dataset`` is: kind, resolved root folder and split.

    A dataset without a ``root`` attribute (an in-memory one) is identified by a hash of
    its ids instead.
    """
    root = getattr(dataset, "root", None)
    identity: dict[str, Any] = {
        "kind": dataset.kind,
        "root": str(Path(root).resolve()) if root is not None else None,
        "split": getattr(dataset, "split", None),
    }
    if root is None:
        identity["ids_sha256"] = hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()
    return identity


def prediction_identity(
    *,
    checkpoint: str | os.PathLike[str] | None,
    iteration: int,
    weights_sha256: str,
    class_names: Sequence[str],
    dataset: SegmentationDataset,
    scales: Sequence[float],
    flip: bool,
    bf16: bool,
    palette: bool,
    sliding_window: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The identity record of one prediction run (see the module docstring).

    Args:
        checkpoint: the checkpoint file (recorded, not compared), or ``None``.
        iteration: its training iteration (recorded).
        weights_sha256: :func:`state_dict_sha256` of the model (compared).
        class_names: the model's classes.
        dataset: the images predicted.
        scales, flip: test-time augmentation.
        bf16: whether inference runs under bf16 autocast (CUDA with amp).
        palette: palette (``True``) or plain index PNGs.
        sliding_window: ``(window, stride)`` of sliding-window inference (recorded as
            ``inference.sliding_window`` only when used, so folders written without it
            keep their identity).
    """
    identity: dict[str, Any] = {
        "format": IDENTITY_FORMAT,
        "version": 1,
        "checkpoint": {
            "path": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
            "iteration": int(iteration),
            "weights_sha256": weights_sha256,
        },
        "classes": list(class_names),
        "dataset": dataset_identity(dataset),
        "inference": {
            "scales": [float(s) for s in scales],
            "flip": bool(flip),
            "bf16": bool(bf16),
            "palette": bool(palette),
        },
    }
    if sliding_window is not None:
        identity["inference"]["sliding_window"] = [int(v) for v in sliding_window]
    return identity


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable ``"field: folder X, now Y"`` for every compared field that differs
    (all but the checkpoint's path and iteration: its weights stand for it)."""
    differences = setting_differences(
        {**saved, "checkpoint": None}, {**current, "checkpoint": None}
    )
    old, new = (dict(identity.get("checkpoint") or {}) for identity in (saved, current))
    if old.get("weights_sha256") != new.get("weights_sha256"):
        differences.insert(
            0,
            f"checkpoint weights: folder {_describe_checkpoint(saved)}, now "
            f"{_describe_checkpoint(current)}",
        )
    return differences


def _describe_checkpoint(identity: Mapping[str, Any]) -> str:
    checkpoint = dict(identity.get("checkpoint") or {})
    digest = str(checkpoint.get("weights_sha256") or "?")[:12]
    return f"{checkpoint.get('path')} (iteration {checkpoint.get('iteration')}, sha256 {digest})"
