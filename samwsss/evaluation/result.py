"""The result of evaluating a folder of predictions: table, JSON report and bar chart."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from samwsss.atomic import atomic_write_json
from samwsss.evaluation.confusion import SegmentationMetrics
from samwsss.evaluation.plotting import plot_class_iou
from samwsss.storage import AnyPath, as_path

#: ``format`` field of the JSON report, and its version.
REPORT_FORMAT = "samwsss-evaluation"
REPORT_VERSION = 1


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics of a folder of predicted masks plus what was evaluated.

    Attributes:
        metrics: the confusion matrix and the metrics derived from it.
        num_images: images counted (including missing ones counted as background).
        dataset_kind: the dataset source (``"voc"``, ``"coco"``, ``"folder"``, ``"gt-folder"``).
        split: the split evaluated (e.g. ``"train"`` vs ``"train_aug"``), when known.
        description: one line saying what ground truth was used.
        pred_dir: the folder of predictions.
        missing_ids: image ids with no prediction file (all of them, in dataset order).
        missing_policy: ``"error"`` or ``"background"`` (how missing files were treated).
        extra_predictions: PNG files in ``pred_dir`` whose stem is not a dataset id.
        unreadable: ``(image id, reason)`` of images left out because their ground truth
            or prediction could not be read (not counted in ``num_images``).
        elapsed_s: wall time of the evaluation in seconds.
    """

    metrics: SegmentationMetrics
    num_images: int
    dataset_kind: str | None = None
    split: str | None = None
    description: str = ""
    pred_dir: str | None = None
    missing_ids: tuple[str, ...] = ()
    missing_policy: str = "error"
    extra_predictions: int = 0
    unreadable: tuple[tuple[str, str], ...] = ()
    elapsed_s: float | None = None

    @property
    def miou(self) -> float:
        """Mean IoU in ``[0, 1]`` (nanmean over classes present in GT or prediction)."""
        return self.metrics.miou

    @property
    def pixel_accuracy(self) -> float:
        """Pixel accuracy in ``[0, 1]``."""
        return self.metrics.pixel_accuracy

    @property
    def num_missing(self) -> int:
        """Number of images without a prediction file."""
        return len(self.missing_ids)

    @property
    def title(self) -> str:
        """One-line heading: what was evaluated against what."""
        what = self.description or (self.dataset_kind or "ground truth")
        if self.split and self.split not in what:
            what = f"{what}, split {self.split}"
        line = f"{what}: {self.num_images} images"
        if self.missing_ids:
            line += f" ({self.num_missing} missing, counted as background)"
        if self.unreadable:
            line += f" ({len(self.unreadable)} unreadable, left out)"
        return line

    def format_table(self) -> str:
        """A readable per-class table (percent) followed by mIoU and pixel accuracy.

        Columns: class, IoU, precision, recall, GT pixels. Classes absent from both ground
        truth and prediction show ``n/a`` and are left out of the mIoU.
        """
        m = self.metrics
        width = max([len("pixel accuracy")] + [len(name) for name in m.class_names])
        header = (
            f"{'class':<{width}}  {'IoU':>6}  {'precision':>9}  {'recall':>6}  {'GT pixels':>13}"
        )
        lines = []
        if self.pred_dir:
            lines.append(f"predictions: {self.pred_dir}")
        lines.append(f"ground truth: {self.title}")
        lines += [header, "-" * len(header)]
        for index, name in enumerate(m.class_names):
            lines.append(
                f"{name:<{width}}  {_percent(m.iou[index]):>6}  "
                f"{_percent(m.precision[index]):>9}  {_percent(m.recall[index]):>6}  "
                f"{int(m.gt_pixels[index]):>13,}"
            )
        lines.append("-" * len(header))
        present = int(m.present.sum())
        lines.append(
            f"{'mIoU':<{width}}  {_percent(m.miou):>6}  "
            f"(mean over {present} of {m.num_classes} classes present in GT or prediction)"
        )
        lines.append(f"{'pixel accuracy':<{width}}  {_percent(m.pixel_accuracy):>6}")
        if present < m.num_classes:
            lines.append("n/a: class absent from both ground truth and prediction")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the layout written by :meth:`to_json`); NaN becomes ``null``."""
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "dataset": {
                "kind": self.dataset_kind,
                "split": self.split,
                "description": self.description,
            },
            "predictions": self.pred_dir,
            "num_images": self.num_images,
            "missing_policy": self.missing_policy,
            "num_missing": self.num_missing,
            "missing_ids": list(self.missing_ids),
            "extra_predictions": self.extra_predictions,
            "unreadable": [{"image_id": i, "reason": r} for i, r in self.unreadable],
            "elapsed_s": self.elapsed_s,
            **self.metrics.to_dict(),
        }

    def to_json(self, path: str | os.PathLike[str] | AnyPath) -> AnyPath:
        """Atomically write the report as JSON (see README "Evaluation report").

        Args:
            path: a local path, or an fsspec URL (``s3://bucket/eval/report.json``; written
                as one object).

        Returns:
            The written path.
        """
        target = as_path(path)
        atomic_write_json(target, self.to_dict())
        return target

    @classmethod
    def from_json(cls, path: str | os.PathLike[str] | AnyPath) -> EvaluationReport:
        """Read a report written by :meth:`to_json` (metrics recomputed from its matrix);
        ``path`` may be a URL.

        Raises:
            ValueError: the file is not a samwsss evaluation report.
        """
        source = as_path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{source}: cannot read evaluation report ({error})") from error
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            raise ValueError(f"{source}: not a samwsss evaluation report (no format field)")
        try:
            names = [entry["name"] for entry in data["classes"]]
            metrics = SegmentationMetrics.from_confusion(
                np.asarray(data["confusion_matrix"], dtype=np.int64), names
            )
            dataset = data.get("dataset") or {}
            return cls(
                metrics=metrics,
                num_images=int(data["num_images"]),
                dataset_kind=dataset.get("kind"),
                split=dataset.get("split"),
                description=dataset.get("description") or "",
                pred_dir=data.get("predictions"),
                missing_ids=tuple(data.get("missing_ids") or ()),
                missing_policy=data.get("missing_policy", "error"),
                extra_predictions=int(data.get("extra_predictions", 0)),
                unreadable=tuple(
                    (str(entry["image_id"]), str(entry["reason"]))
                    for entry in data.get("unreadable") or ()
                ),
                elapsed_s=data.get("elapsed_s"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: malformed evaluation report ({error!r})") from error

    def plot(self, path: str | os.PathLike[str] | AnyPath) -> AnyPath:
        """Write a per-class IoU horizontal bar chart PNG (matplotlib, Agg) atomically to a
        local path or an fsspec URL (one object).

        Returns:
            The written path.
        """
        return plot_class_iou(self.metrics, path, title=self.title)


def _percent(value: float) -> str:
    number = float(value)
    return "n/a" if math.isnan(number) else f"{number * 100.0:.2f}"
