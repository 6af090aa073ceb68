"""The identity file of a prediction folder: resume only what the same run wrote.

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
recorded for people reading the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from samwsss.atomic import atomic_write_json
from samwsss.data.base import SegmentationDataset

logger = logging.getLogger(__name__)

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


def _compared(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that decide whether two runs' predictions are interchangeable, flattened."""
    checkpoint = dict(identity.get("checkpoint") or {})
    flat: dict[str, Any] = {
        "format": identity.get("format"),
        "version": identity.get("version"),
        "checkpoint weights": checkpoint.get("weights_sha256"),
        "classes": identity.get("classes"),
    }
    for section in ("dataset", "inference"):
        for key, value in dict(identity.get(section) or {}).items():
            flat[f"{section} {key}"] = value
    return flat


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable ``"field: saved X, now Y"`` for every compared field that differs."""
    old, new = _compared(saved), _compared(current)
    differences = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before, after = old.get(key), new.get(key)
            if key == "checkpoint weights":
                before = _describe_checkpoint(saved)
                after = _describe_checkpoint(current)
            differences.append(f"{key}: folder {before}, now {after}")
    return differences


def _describe_checkpoint(identity: Mapping[str, Any]) -> str:
    checkpoint = dict(identity.get("checkpoint") or {})
    digest = str(checkpoint.get("weights_sha256") or "?")[:12]
    return f"{checkpoint.get('path')} (iteration {checkpoint.get('iteration')}, sha256 {digest})"


def read_identity(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The folder's saved identity, or ``None`` when it has none.

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    path = Path(folder) / IDENTITY_NAME
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); pass --overwrite (overwrite=True) to "
            "delete the folder's predictions and redo them"
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a JSON object; pass --overwrite to redo the folder")
    return loaded


def clear_predictions(folder: Path, ids: Sequence[str]) -> int:
    """Delete the identity file, then ``<id>.png`` for each id; return how many PNGs went.

    The identity goes first: a kill half-way leaves PNGs without an identity, which the
    next run refuses to resume rather than mistaking them for its own.
    """
    (folder / IDENTITY_NAME).unlink(missing_ok=True)
    removed = 0
    for image_id in ids:
        path = folder / f"{image_id}.png"
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def prepare_prediction_folder(
    folder: str | os.PathLike[str],
    identity: Mapping[str, Any],
    ids: Sequence[str],
    *,
    overwrite: bool,
) -> None:
    """Make ``folder`` ready for predictions of ``identity`` and record it there.

    - ``overwrite``: the identity file and the ``<id>.png`` of every id in ``ids`` are
      deleted, then the new identity is written (all images are predicted again).
    - a saved identity equal to ``identity``: nothing changes (finished images are kept).
    - a different saved identity, or none while some ``<id>.png`` exist: refused.
    - otherwise (a fresh folder): the identity is written.

    Args:
        folder: the prediction folder (created if missing).
        identity: from :func:`prediction_identity`.
        ids: every image id the folder's predictions may be named after (the dataset's).

    Raises:
        ValueError: the folder holds predictions of another run, naming the differences
            and ``--overwrite``.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    if overwrite:
        removed = clear_predictions(target, ids)
        if removed:
            logger.info("--overwrite: deleted %d earlier predictions in %s", removed, target)
    else:
        saved = read_identity(target)
        if saved is not None:
            differences = identity_differences(saved, identity)
            if not differences:
                return
            raise ValueError(
                f"{target} holds predictions of another run ({'; '.join(differences)}); "
                "pass --overwrite (overwrite=True) to delete them and predict again, or "
                "choose another --out"
            )
        existing = [image_id for image_id in ids if (target / f"{image_id}.png").is_file()]
        if existing:
            raise ValueError(
                f"{target} already holds {len(existing)} predictions (e.g. "
                f"{existing[0]}.png) but no {IDENTITY_NAME} saying which checkpoint and "
                "settings made them; pass --overwrite (overwrite=True) to delete them and "
                "predict again, or choose another --out"
            )
    atomic_write_json(target / IDENTITY_NAME, dict(identity))
