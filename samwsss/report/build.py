"""Gather a run's settings, metrics and per-image data; draw the thumbnails in parallel.

The report folder holds ``index.html`` (everything inlined: CSS, JS, the per-image data as
JSON, the charts as SVG) and ``thumbs/`` (small JPEG/PNG pictures the gallery loads
lazily). It opens from disk with no server and no network.

Per image the gallery shows the predicted mask over the image with the instance boxes
and scores; with ground truth also the GT over the image and an error map:

* red: wrong class (GT object, another object predicted, or GT object predicted as
  another class);
* blue: missed (GT object, background predicted);
* yellow: extra (GT background, object predicted);
* black: ignored GT pixels (255); grey: correct object pixels; white: correct background.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samwsss.atomic import atomic_write_bytes
from samwsss.classes import voc_palette
from samwsss.reproduce.table import read_results
from samwsss.runs.export import _open_run_dataset, read_run_config, run_class_names
from samwsss.storage import open_binary

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
THUMBS_DIR = "thumbs"
#: colours of the error map (RGB).
WRONG = (230, 30, 30)
MISSED = (30, 90, 255)
EXTRA = (255, 200, 0)
IGNORED = (0, 0, 0)
CORRECT_OBJECT = (190, 190, 190)
CORRECT_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        path: ``index.html``.
        num_images: images in the gallery.
        seconds: wall time of the whole report.
        thumb_seconds: wall time of the thumbnails.
        html_bytes: size of ``index.html``.
        total_bytes: size of the report folder.
        miou: mIoU over the images with ground truth, or the run's ``evaluation.json``
            value, or ``None``.
    """

    path: Path
    num_images: int
    seconds: float
    thumb_seconds: float
    html_bytes: int
    total_bytes: int
    miou: float | None

    @property
    def images_per_second(self) -> float:
        """Thumbnail throughput (images per second)."""
        return self.num_images / self.thumb_seconds if self.thumb_seconds > 0 else 0.0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("cannot read %s: %s", path, error)
        return None


def _read_failures(run_dir: Path) -> list[dict[str, str]]:
    failures = []
    for path in sorted((run_dir / "failures").glob("failures*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if isinstance(entry, dict):
                failures.append(
                    {"image_id": str(entry.get("image_id")), "reason": str(entry.get("reason"))}
                )
    return failures


def _mask_dir(run_dir: Path) -> Path:
    for name in ("masks", "masks_plain"):
        if (run_dir / name).is_dir():
            return run_dir / name
    if read_results(run_dir) is not None:
        raise ValueError(
            f"{run_dir} is a samwsss reproduce folder: its table is {run_dir / 'results.md'}; "
            f"report one of its runs, e.g. samwsss report {run_dir / 'text-input'}"
        )
    raise ValueError(
        f"{run_dir} has neither masks/ nor masks_plain/; give the --out folder of a "
        "samwsss text-input / zero-shot run"
    )


def _thumb_shape(height: int, width: int, size: int) -> tuple[int, int]:
    scale = min(1.0, size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class _Painter:
    """Draws one image's thumbnails and measures it against its ground truth."""

    def __init__(
        self,
        mask_dir: Path,
        thumbs: Path,
        class_names: Sequence[str],
        dataset: Any | None,
        gt_dataset: Any | None,
        size: int,
    ) -> None:
        self.mask_dir = mask_dir
        self.thumbs = thumbs
        self.class_names = list(class_names)
        self.dataset = dataset
        self.gt_dataset = gt_dataset
        self.size = size
        self.colours = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)

    def _image(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """The image resized to ``shape``; mid grey when it cannot be read."""
        from PIL import Image

        if self.dataset is not None:
            try:
                source = open_binary(self.dataset.image_path(image_id))
                with source as handle, Image.open(handle) as opened:
                    opened.draft("RGB", (shape[1], shape[0]))  # fast JPEG downscale
                    small = opened.convert("RGB").resize(
                        (shape[1], shape[0]), Image.Resampling.BILINEAR
                    )
                    return np.asarray(small)
            except (OSError, KeyError, ValueError) as error:
                logger.debug("%s: no image for the thumbnail (%s)", image_id, error)
        return np.full((*shape, 3), 128, dtype=np.uint8)

    def _blend(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = image.astype(np.float32)
        painted = (labels > 0) & (labels < 255)
        out[painted] = 0.5 * out[painted] + 0.5 * self.colours[labels[painted]]
        return out.round().astype(np.uint8)

    def __call__(self, image_id: str, record: dict[str, Any] | None) -> dict[str, Any]:
        from PIL import Image, ImageDraw

        from samwsss.labelio import read_label_png

        pred = read_label_png(self.mask_dir / f"{image_id}.png")
        height, width = pred.shape
        shape = _thumb_shape(height, width, self.size)
        rows = (np.arange(shape[0]) * height // shape[0])[:, None]
        cols = (np.arange(shape[1]) * width // shape[1])[None, :]
        image = self._image(image_id, shape)
        canvas = Image.fromarray(self._blend(image, pred[rows, cols]))
        scale = shape[1] / width
        item: dict[str, Any] = {"id": image_id, "w": width, "h": height}
        dets = []
        if record is not None:
            draw = ImageDraw.Draw(canvas)
            for ann in record.get("annotations", []):
                cls = int(ann.get("class_id", 0))
                x, y, w, h = (float(v) * scale for v in ann.get("bbox", [0, 0, 0, 0]))
                colour = tuple(int(c) for c in self.colours[cls % 256])
                draw.rectangle([x, y, x + w, y + h], outline=colour, width=1)
                draw.text((x + 2, y + 1), f"{float(ann.get('score', 0)):.2f}", fill=colour)
                dets.append([cls, round(float(ann.get("score", 0.0)), 3)])
            item["tags"] = {str(k): round(float(v), 3) for k, v in record.get("tags", {}).items()}
            item["src"] = record.get("tag_sources", {})
        item["dets"] = dets
        canvas.save(self.thumbs / f"{image_id}.jpg", quality=80)
        item["t"] = f"{THUMBS_DIR}/{image_id}.jpg"
        item["pred"] = _classes_in(pred, len(self.class_names))
        gt = None
        if self.gt_dataset is not None:
            try:
                gt = self.gt_dataset.gt(image_id)
            except (KeyError, ValueError) as error:
                logger.warning("%s: no ground truth (%s)", image_id, error)
        if gt is None:
            return item
        if gt.shape != pred.shape:
            raise ValueError(
                f"image {image_id}: prediction {pred.shape} and ground truth {gt.shape} sizes "
                "differ; give the --data the run was made on"
            )
        num = len(self.class_names)
        pred_c = np.where(pred == 255, 0, pred).astype(np.int64)
        valid = gt != 255
        confusion = np.bincount(
            gt[valid].astype(np.int64) * num + pred_c[valid], minlength=num * num
        ).reshape(num, num)
        inter = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - inter
        present = union > 0
        item["miou"] = (
            round(float((inter[present] / union[present]).mean()), 4) if present.any() else None
        )
        item["gt"] = _classes_in(gt, num)
        small_gt = gt[rows, cols]
        small_pred = pred_c[rows, cols]
        Image.fromarray(self._blend(image, small_gt)).save(
            self.thumbs / f"{image_id}.gt.jpg", quality=80
        )
        # flat colours (no picture underneath): small PNGs, errors stand out
        error_map = np.full((*small_gt.shape, 3), CORRECT_BACKGROUND, dtype=np.uint8)
        gt_object = (small_gt > 0) & (small_gt != 255)
        error_map[gt_object & (small_pred == small_gt)] = CORRECT_OBJECT
        error_map[gt_object & (small_pred > 0) & (small_pred != small_gt)] = WRONG
        error_map[gt_object & (small_pred == 0)] = MISSED
        error_map[(small_gt == 0) & (small_pred > 0)] = EXTRA
        error_map[small_gt == 255] = IGNORED
        Image.fromarray(error_map).save(self.thumbs / f"{image_id}.err.png", optimize=False)
        item["g"] = f"{THUMBS_DIR}/{image_id}.gt.jpg"
        item["e"] = f"{THUMBS_DIR}/{image_id}.err.png"
        item["_confusion"] = confusion
        return item


def _classes_in(labels: np.ndarray, num: int) -> list[int]:
    """Object classes (``1..num-1``) present in a label map."""
    counts = np.bincount(labels.reshape(-1), minlength=256)
    return [int(c) for c in np.flatnonzero(counts[1:num]) + 1]


def build_report(
    run_dir: str | os.PathLike[str],
    gt_dataset: Any | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    thumb_size: int = 240,
) -> ReportResult:
    """Write ``<run_dir>/report/index.html`` (or ``out``) and its thumbnails.

    Args:
        run_dir: a run folder (``masks/``, optional ``instances/``, ``manifest.json``,
            ``config.yaml``, ``evaluation.json``, ``failures/``); a run of a ``samwsss
            reproduce`` plan also gets the plan's results table.
        gt_dataset: a dataset with ground truth (``open_dataset(...)``) for the mIoU
            table, the confusion matrix, per-image mIoU and error maps; without it the
            run's ``evaluation.json`` (when present) gives the table and matrix.
        out: the report folder [default: ``<run_dir>/report``].
        workers: thumbnail threads (default: available CPUs, at most 8).
        thumb_size: longest side of a thumbnail in pixels (16..1024).
    """
    from samwsss.report.page import render_page

    started = time.perf_counter()
    run = Path(run_dir)
    if not 16 <= thumb_size <= 1024:
        raise ValueError(f"thumb_size must be in 16..1024 pixels, got {thumb_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}; omit it for the default")
    mask_dir = _mask_dir(run)
    report_dir = Path(out) if out is not None else run / REPORT_DIR
    thumbs = report_dir / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)
    ids = sorted(path.stem for path in mask_dir.glob("*.png"))
    instance_dir = run / "instances"
    records: dict[str, dict[str, Any]] = {}
    if instance_dir.is_dir():
        for image_id in ids:
            path = instance_dir / f"{image_id}.json"
            if path.is_file():
                loaded = _read_json(path)
                if isinstance(loaded, dict):
                    records[image_id] = loaded
    try:
        class_names = run_class_names(run, list(records.values()))
    except ValueError:
        class_names = ["background"]
    if gt_dataset is not None:
        class_names = list(gt_dataset.class_names)
    from samwsss.evaluation import GroundTruthFolder

    image_source = gt_dataset
    if gt_dataset is None or isinstance(gt_dataset, GroundTruthFolder):
        image_source = _open_run_dataset(run)  # a GT folder has no images
    painter = _Painter(mask_dir, thumbs, class_names, image_source, gt_dataset, thumb_size)
    count = workers or min(
        8,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )
    thumb_started = time.perf_counter()
    num = len(class_names)
    confusion = np.zeros((num, num), dtype=np.int64)
    items = []
    with ThreadPoolExecutor(max_workers=count) as pool:
        for item in pool.map(lambda i: painter(i, records.get(i)), ids):
            part = item.pop("_confusion", None)
            if part is not None:
                confusion += part
            items.append(item)
    thumb_seconds = time.perf_counter() - thumb_started
    metrics = _metrics(run, confusion, class_names, gt_dataset is not None)
    config = read_run_config(run)
    manifest = _read_json(run / "manifest.json") if (run / "manifest.json").is_file() else None
    reproduction = read_results(run.parent) or read_results(run)
    html = render_page(
        run_dir=str(run.resolve()),
        config=config,
        manifest=manifest if isinstance(manifest, dict) else {},
        failures=_read_failures(run),
        class_names=class_names,
        metrics=metrics,
        items=items,
        reproduction=reproduction,
    )
    path = report_dir / "index.html"
    atomic_write_bytes(path, html.encode("utf-8"), fsync=False)
    total = sum(p.stat().st_size for p in report_dir.rglob("*") if p.is_file())
    seconds = time.perf_counter() - started
    logger.info(
        "report: %d images in %.1f s (thumbnails %.1f images/s) -> %s",
        len(items),
        seconds,
        len(items) / max(thumb_seconds, 1e-9),
        path,
    )
    miou = metrics.get("miou") if metrics else None
    return ReportResult(
        path=path,
        num_images=len(items),
        seconds=seconds,
        thumb_seconds=thumb_seconds,
        html_bytes=path.stat().st_size,
        total_bytes=total,
        miou=float(miou) if miou is not None else None,
    )


def _metrics(
    run: Path, confusion: np.ndarray, class_names: Sequence[str], have_gt: bool
) -> dict[str, Any] | None:
    """Metrics dict (``SegmentationMetrics.to_dict`` layout) from the ground truth, else
    from the run's ``evaluation.json``, else ``None``."""
    if have_gt and confusion.sum() > 0:
        from samwsss.evaluation import SegmentationMetrics

        return SegmentationMetrics.from_confusion(confusion, class_names).to_dict()
    path = run / "evaluation.json"
    if path.is_file():
        loaded = _read_json(path)
        if isinstance(loaded, dict) and "classes" in loaded and "confusion_matrix" in loaded:
            return loaded
    return None
