"""Per-class IoU bar chart (matplotlib imported lazily, Agg canvas, no pyplot state)."""

from __future__ import annotations

import io
import math
import os

import numpy as np

from samwsss.atomic import atomic_write_bytes
from samwsss.evaluation.confusion import SegmentationMetrics
from samwsss.storage import AnyPath, as_path


def render_class_iou_png(metrics: SegmentationMetrics, title: str = "") -> bytes:
    """Render a horizontal bar chart of per-class IoU as PNG bytes.

    One bar per class in index order (background at the top), IoU in percent; classes
    absent from both ground truth and prediction are labelled ``n/a`` without a bar; a
    dashed line marks the mIoU.

    Args:
        metrics: the metrics to draw.
        title: optional first title line (e.g. the split evaluated).

    Returns:
        PNG file bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(metrics.class_names)
    count = len(names)
    iou_percent = np.asarray(metrics.iou, dtype=np.float64) * 100.0
    present = ~np.isnan(iou_percent)
    height = max(3.0, 0.26 * count + 1.4)
    figure = Figure(figsize=(7.5, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(count)
    values = np.where(present, iou_percent, 0.0)
    colours = ["#4c72b0" if ok else "#cccccc" for ok in present]
    axes.barh(positions, values, color=colours, height=0.75)
    for position, value, ok in zip(range(count), iou_percent, present, strict=True):
        label = f"{value:.1f}" if ok else "n/a"
        axes.text((value if ok else 0.0) + 0.8, position, label, va="center", ha="left", fontsize=7)
    if not math.isnan(metrics.miou):
        miou = metrics.miou * 100.0
        axes.axvline(miou, color="#c44e52", linestyle="--", linewidth=1.2)
        axes.text(miou, -0.8, f" mIoU {miou:.2f}", color="#c44e52", fontsize=8, va="center")
    axes.set_yticks(positions)
    axes.set_yticklabels(names, fontsize=7 if count > 30 else 8)
    axes.set_ylim(count - 0.4, -1.2)
    axes.set_xlim(0.0, 108.0)
    axes.set_xlabel("IoU (%)")
    heading = f"{title}\n" if title else ""
    axes.set_title(f"{heading}per-class IoU, mIoU {metrics.miou * 100.0:.2f}%", fontsize=9)
    axes.grid(axis="x", linestyle=":", linewidth=0.6)
    axes.set_axisbelow(True)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_class_iou(
    metrics: SegmentationMetrics, path: str | os.PathLike[str] | AnyPath, title: str = ""
) -> AnyPath:
    """Atomically write the per-class IoU bar chart (see :func:`render_class_iou_png`) to a
    local path or an fsspec URL (rendered in memory, written as one object).

    Returns:
        The written path.
    """
    target = as_path(path)
    atomic_write_bytes(target, render_class_iou_png(metrics, title=title))
    return target
