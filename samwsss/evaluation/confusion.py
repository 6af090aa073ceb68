"""Streaming confusion matrix and the segmentation metrics derived from it.

Conventions: rows are ground-truth classes, columns predicted classes; ground-truth 255
pixels are ignored; a predicted 255 counts as background (0); a class absent from both
ground truth and prediction gets IoU NaN and is left out of the mean (nanmean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samwsss.classes import IGNORE_INDEX

_BINS = 256 * 256  # one bin per (gt, pred) pair of uint8 values


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of one confusion matrix.

    Attributes:
        class_names: ``C`` class names, background first.
        confusion: ``(C, C)`` int64 pixel counts, ``confusion[g, p]`` = pixels with ground
            truth ``g`` predicted as ``p`` (ignored pixels excluded, predicted 255 in column 0).
        iou: ``(C,)`` float64 intersection over union per class in ``[0, 1]``; NaN for a
            class absent from both ground truth and prediction.
        miou: mean of ``iou`` over the non-NaN classes (NaN when every class is NaN).
        pixel_accuracy: correctly predicted / counted pixels (NaN when nothing was counted).
        precision: ``(C,)`` float64 ``TP / predicted``; NaN where the class was never predicted.
        recall: ``(C,)`` float64 ``TP / ground truth``; NaN where the class is not in the GT.
        gt_pixels: ``(C,)`` int64 ground-truth pixel count per class (row sums).
        pred_pixels: ``(C,)`` int64 predicted pixel count per class (column sums).
    """

    class_names: tuple[str, ...]
    confusion: np.ndarray
    iou: np.ndarray
    miou: float
    pixel_accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` including background."""
        return len(self.class_names)

    @property
    def num_pixels(self) -> int:
        """Number of counted (non-ignored) pixels."""
        return int(self.confusion.sum())

    @property
    def present(self) -> np.ndarray:
        """``(C,)`` bool: class occurs in the ground truth or the prediction (IoU defined)."""
        return ~np.isnan(self.iou)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN becomes ``None`` (JSON ``null``)."""
        classes = [
            {
                "index": index,
                "name": name,
                "iou": _json_float(self.iou[index]),
                "precision": _json_float(self.precision[index]),
                "recall": _json_float(self.recall[index]),
                "gt_pixels": int(self.gt_pixels[index]),
                "pred_pixels": int(self.pred_pixels[index]),
            }
            for index, name in enumerate(self.class_names)
        ]
        return {
            "miou": _json_float(self.miou),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "num_classes": self.num_classes,
            "num_classes_present": int(self.present.sum()),
            "num_pixels": self.num_pixels,
            "classes": classes,
            "confusion_matrix": self.confusion.tolist(),
        }

    @classmethod
    def from_confusion(
        cls, confusion: np.ndarray, class_names: Sequence[str] | None = None
    ) -> SegmentationMetrics:
        """Derive every metric from a ``(C, C)`` count matrix (rows GT, columns prediction)."""
        counts = np.asarray(confusion)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
            raise ValueError(
                f"confusion matrix must be square (C, C) with C >= 1, got shape {counts.shape}"
            )
        if not np.issubdtype(counts.dtype, np.integer) or (counts.size and counts.min() < 0):
            raise ValueError("confusion matrix must hold non-negative integer pixel counts")
        counts = counts.astype(np.int64, copy=False)
        num_classes = counts.shape[0]
        names = _class_names(num_classes, class_names)
        true_positive = np.diag(counts).astype(np.float64)
        gt_pixels = counts.sum(axis=1)
        pred_pixels = counts.sum(axis=0)
        union = gt_pixels + pred_pixels - np.diag(counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, true_positive / union, np.nan)
            precision = np.where(pred_pixels > 0, true_positive / pred_pixels, np.nan)
            recall = np.where(gt_pixels > 0, true_positive / gt_pixels, np.nan)
        total = int(counts.sum())
        present = ~np.isnan(iou)
        miou = float(iou[present].mean()) if present.any() else math.nan
        accuracy = float(true_positive.sum() / total) if total else math.nan
        return cls(
            class_names=names,
            confusion=counts.copy(),
            iou=iou,
            miou=miou,
            pixel_accuracy=accuracy,
            precision=precision,
            recall=recall,
            gt_pixels=gt_pixels,
            pred_pixels=pred_pixels,
        )


class ConfusionMatrix:
    """A streaming ``(C, C)`` int64 confusion matrix over label maps.

    Example:
        >>> cm = ConfusionMatrix(21)
        >>> for pred, gt in pairs:          # (H, W) uint8 arrays
        ...     cm.update(pred, gt)
        >>> cm.compute().miou

    Counting is one ``np.bincount`` over ``(gt << 8) | pred`` per image (65,536 bins, one per
    pair of uint8 values), so ignore pixels and out-of-range values are found in the same
    pass without masking copies.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """Create an empty matrix.

        Args:
            num_classes: ``C``, classes including background, ``1..255`` (255 is reserved
                for ignore).
            class_names: optional ``C`` names (background first) carried into the metrics;
                default ``"class_0" .. "class_{C-1}"``.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        if not 1 <= int(num_classes) <= IGNORE_INDEX:
            raise ValueError(
                f"num_classes must be in 1..{IGNORE_INDEX} (255 is the ignore value), "
                f"got {num_classes}"
            )
        self.num_classes = int(num_classes)
        self.class_names = _class_names(self.num_classes, class_names)
        self._counts = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_images = 0

    @property
    def counts(self) -> np.ndarray:
        """A copy of the ``(C, C)`` int64 counts, rows ground truth, columns prediction."""
        return self._counts.copy()

    def reset(self) -> None:
        """Zero the counts."""
        self._counts[:] = 0
        self.num_images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, image_id: str | None = None) -> None:
        """Add one image.

        Args:
            pred: ``(H, W)`` predicted class indices, uint8 (other integer dtypes are accepted
                when their values fit 0..255). 255 counts as background (0).
            gt: ``(H, W)`` ground-truth class indices, same dtype rules; 255 pixels are ignored.
            image_id: named in error messages.

        Raises:
            ValueError: if the shapes differ, an array is not 2-D, a predicted value is
                ``>= C`` and not 255, or a ground-truth value is ``>= C`` and not 255.
        """
        where = f"image {image_id!r}: " if image_id is not None else ""
        pred_u8 = _as_uint8(pred, "prediction", where)
        gt_u8 = _as_uint8(gt, "ground truth", where)
        if pred_u8.shape != gt_u8.shape:
            raise ValueError(
                f"{where}prediction shape {pred_u8.shape} (H, W) differs from ground-truth "
                f"shape {gt_u8.shape}; predictions must have the size of their image"
            )
        keys = np.left_shift(gt_u8, 8, dtype=np.uint16)
        np.bitwise_or(keys, pred_u8, out=keys)
        hist = np.bincount(keys.ravel(), minlength=_BINS).reshape(256, 256)
        self._add_histogram(hist, where)
        self.num_images += 1

    def _add_histogram(self, hist: np.ndarray, where: str) -> None:
        """Fold a ``(256, 256)`` (gt, pred) histogram into the counts, validating values."""
        c = self.num_classes
        # a bad predicted value is an error even where the ground truth is ignored
        bad_pred = hist[:, c:IGNORE_INDEX].any(axis=0)
        if bad_pred.any():
            values = (np.flatnonzero(bad_pred) + c).tolist()
            raise ValueError(
                f"{where}predicted class value {values[0]} is out of range for {c} classes "
                f"(valid: 0..{c - 1}, or 255 for background/unsure); values seen: "
                f"{values[:10]}. Check that the predictions use this dataset's class list"
            )
        bad_gt = hist[c:IGNORE_INDEX].any(axis=1)
        if bad_gt.any():
            values = (np.flatnonzero(bad_gt) + c).tolist()
            raise ValueError(
                f"{where}ground-truth value {values[0]} is out of range for {c} classes "
                f"(valid: 0..{c - 1}, or 255 ignore); values seen: {values[:10]}. "
                "Check the class list / mapping chosen for this dataset"
            )
        block = hist[:c]  # GT 255 rows dropped: ignored pixels
        self._counts += block[:, :c]
        self._counts[:, 0] += block[:, IGNORE_INDEX]  # predicted 255 -> background

    def add_counts(self, counts: np.ndarray, num_images: int = 0) -> None:
        """Add a ``(C, C)`` non-negative integer count matrix (rows GT, columns prediction)."""
        array = np.asarray(counts)
        if array.shape != (self.num_classes, self.num_classes):
            raise ValueError(
                f"counts must have shape ({self.num_classes}, {self.num_classes}), "
                f"got {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
            raise ValueError("counts must be non-negative integers")
        self._counts += array.astype(np.int64, copy=False)
        self.num_images += int(num_images)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix in place and return ``self``.

        Raises:
            ValueError: if ``other`` has a different number of classes.
        """
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class confusion matrix into a "
                f"{self.num_classes}-class one"
            )
        self._counts += other._counts
        self.num_images += other.num_images
        return self

    def compute(self) -> SegmentationMetrics:
        """Metrics of the counts so far (see :class:`SegmentationMetrics`)."""
        return SegmentationMetrics.from_confusion(self._counts, self.class_names)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, images={self.num_images}, "
            f"pixels={int(self._counts.sum())})"
        )


def _class_names(num_classes: int, names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return tuple(f"class_{i}" for i in range(num_classes))
    result = tuple(str(name) for name in names)
    if len(result) != num_classes:
        raise ValueError(f"got {len(result)} class names for {num_classes} classes")
    return result


def _as_uint8(array: np.ndarray, what: str, where: str) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim != 2:
        raise ValueError(f"{where}{what} must be a 2-D (H, W) label map, got shape {values.shape}")
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"{where}{what} must hold integer class indices (uint8), got dtype {values.dtype}"
        )
    if values.size and (int(values.min()) < 0 or int(values.max()) > 255):
        raise ValueError(
            f"{where}{what} values {int(values.min())}..{int(values.max())} do not fit "
            "0..255; label maps hold class indices with 255 = ignore"
        )
    return values.astype(np.uint8)


def _json_float(value: float) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number
