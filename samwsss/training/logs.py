"""The trainer's CSV logs (``train_log.csv``, ``val_log.csv``) and ``training_curve.png``.

Rows are appended as training goes; a resumed run first rewrites each log with the complete
rows up to its checkpoint (:func:`prepare_logs`), so the logs of a resumed run equal those
of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from samwsss.atomic import atomic_open, atomic_write_text

# The trainer's records share one logger name, whichever of its modules writes them.
logger = logging.getLogger("samwsss.training.train")

TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"
CURVE_NAME = "training_curve.png"

LOG_COLUMNS = (
    "iteration",
    "loss",
    "lr_backbone",
    "lr_head_weight",
    "lr_head_bias",
    "seconds",
    "images_per_second",
    "max_memory_mb",
)
VAL_COLUMNS = ("iteration", "miou", "pixel_accuracy", "images")

#: Log columns that may be empty (``max_memory_mb`` off CUDA); every other one is a number.
_OPTIONAL_COLUMNS = frozenset({"max_memory_mb"})


# --------------------------------------------------------------------------- writing
def prepare_logs(run_dir: str | os.PathLike[str], start: int, validating: bool) -> None:
    """Create the CSV logs, dropping rows a killed run wrote after its last checkpoint.

    Each log is rewritten (atomically) with its header and, when ``start > 0``, its
    complete rows (see :func:`read_log_rows`) up to iteration ``start``: a kill while a
    row was being appended leaves a torn last line that must not survive into the resumed
    log. ``val_log.csv`` is written only when ``validating`` or when it keeps rows.
    """
    folder = Path(run_dir)
    for name, columns in ((TRAIN_LOG, LOG_COLUMNS), (VAL_LOG, VAL_COLUMNS)):
        path = folder / name
        rows: list[list[str]] = []
        if start > 0:
            rows = [row for row in read_log_rows(path, columns) if int(row[0]) <= start]
        if name == VAL_LOG and not rows and not validating:
            continue
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(columns)
        writer.writerows(rows)
        atomic_write_text(path, text.getvalue())


def append_log_row(path: str | os.PathLike[str], row: Sequence[object]) -> None:
    """Append one CSV row to ``path`` and flush it."""
    with Path(path).open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(row)
        handle.flush()


def train_log_row(
    iteration: int,
    loss: float,
    learning_rates: tuple[float, float, float],
    seconds: float,
    images: int,
    max_memory_mb: float | None,
) -> list[object]:
    """A ``train_log.csv`` row (:data:`LOG_COLUMNS`), numbers formatted as text.

    Args:
        iteration: iterations completed.
        loss: mean loss of the window that ends at ``iteration``.
        learning_rates: backbone, head weight and head bias learning rates.
        seconds: wall time of the window.
        images: images of the window over every process (``images_per_second`` is
            ``images / seconds``).
        max_memory_mb: peak CUDA memory in MiB, or ``None`` (an empty field) off CUDA.
    """
    backbone, head_weight, head_bias = learning_rates
    return [
        iteration,
        f"{loss:.6f}",
        f"{backbone:.6e}",
        f"{head_weight:.6e}",
        f"{head_bias:.6e}",
        f"{seconds:.3f}",
        f"{images / max(seconds, 1e-9):.3f}",
        f"{max_memory_mb:.0f}" if max_memory_mb is not None else "",
    ]


def val_log_row(iteration: int, miou: float, pixel_accuracy: float, images: int) -> list[object]:
    """A ``val_log.csv`` row (:data:`VAL_COLUMNS`); mIoU and accuracy are fractions."""
    return [iteration, f"{miou:.6f}", f"{pixel_accuracy:.6f}", images]


# --------------------------------------------------------------------------- reading
def _complete_row(row: list[str], columns: tuple[str, ...]) -> bool:
    if len(row) != len(columns):
        return False
    try:
        int(row[0])
        for name, value in zip(columns[1:], row[1:], strict=True):
            if value == "" and name in _OPTIONAL_COLUMNS:
                continue
            float(value)
    except ValueError:
        return False
    return True


def read_log_rows(path: str | os.PathLike[str], columns: tuple[str, ...]) -> list[list[str]]:
    """The complete rows of a training/validation CSV log (header excluded).

    A run killed while appending can leave a torn last line (``"1"`` of ``"12,0.53,..."``,
    or garbage bytes). A row is kept only if its line ends with a newline, it has one
    field per column, the first field is an integer iteration and the others are numbers
    (``nan`` included; ``max_memory_mb`` may be empty). A file whose header
    is not ``columns`` yields no rows (logged).

    Returns:
        Rows as lists of strings, in file order; ``[]`` when the file does not exist.
    """
    target = Path(path)
    if not target.exists():
        return []
    text = target.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    header = next(csv.reader([lines[0]]), [])
    if tuple(header) != tuple(columns):
        logger.warning(
            "%s: unexpected header %s (expected %s); rows ignored", target, header, columns
        )
        return []
    rows: list[list[str]] = []
    dropped = 0
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line]), [])
        except csv.Error:
            row = []
        if line.endswith(("\n", "\r")) and _complete_row(row, columns):
            rows.append(row)
        else:
            dropped += 1
    if dropped:
        logger.warning("%s: dropped %d incomplete row(s) (a killed run?)", target, dropped)
    return rows


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Complete rows as ``{column: text}`` (every kept row has one field per column)."""
    return [dict(zip(columns, row, strict=True)) for row in read_log_rows(path, columns)]


# --------------------------------------------------------------------------- plot
def plot_training_curves(
    run_dir: str | os.PathLike[str], title: str = "DeepLabV2 training"
) -> Path | None:
    """Write ``<run_dir>/training_curve.png``: loss and lr per iteration (+ val mIoU).

    Drawn with matplotlib's Agg canvas (no pyplot state) and written atomically.

    Returns:
        The path, or ``None`` when the log has no rows yet.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(run_dir)
    rows = _read_csv(folder / TRAIN_LOG, LOG_COLUMNS)
    if not rows:
        return None
    val_rows = _read_csv(folder / VAL_LOG, VAL_COLUMNS)
    steps = [int(r["iteration"]) for r in rows]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if val_rows else 1, squeeze=False)[0]
    loss_axis = axes[0]
    loss_axis.plot(steps, [float(r["loss"]) for r in rows], color="tab:blue", label="loss")
    loss_axis.set_xlabel("iteration")
    loss_axis.set_ylabel("training loss")
    loss_axis.grid(alpha=0.3)
    lr_axis = loss_axis.twinx()
    lr_axis.plot(steps, [float(r["lr_backbone"]) for r in rows], color="tab:orange", label="lr")
    lr_axis.set_ylabel("backbone learning rate")
    loss_axis.set_title(title)
    if val_rows:
        axes[1].plot(
            [int(r["iteration"]) for r in val_rows],
            [100 * float(r["miou"]) for r in val_rows],
            marker="o",
        )
        axes[1].set_xlabel("iteration")
        axes[1].set_ylabel("val mIoU (%)")
        axes[1].grid(alpha=0.3)
    figure.tight_layout()
    target = folder / CURVE_NAME
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with atomic_open(target, "wb") as handle:
        handle.write(buffer.getvalue())
    return target
