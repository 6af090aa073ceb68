"""Evaluate a folder of predicted label PNGs against a dataset's ground truth.

Predictions are ``<pred_dir>/<image_id>.png`` (``pred_dir`` a local folder or an fsspec
URL, listed once) (palette or plain uint8, as written by
:func:`samwsss.labelio.write_label_png` or the authors' scripts). Images are split into
chunks; each worker decodes its chunk's prediction and ground-truth PNGs and counts them
into its own confusion matrix (one ``np.bincount`` per image); the partial matrices are
summed at the end, so memory stays at a few masks per worker whatever the split size.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.evaluation.confusion import ConfusionMatrix
from samwsss.evaluation.result import EvaluationReport
from samwsss.labelio import read_label_png
from samwsss.storage import AnyPath, as_path, is_folder, scan_folder

logger = logging.getLogger(__name__)

MissingPolicy = Literal["error", "background"]
Backend = Literal["auto", "thread", "process"]

#: How many missing ids an error message lists before "...".
MISSING_LIST_LIMIT = 10
_MAX_DEFAULT_WORKERS = 8
_MAX_CHUNK = 64


class MissingPredictionsError(ValueError):
    """Some dataset images have no prediction file.

    Attributes:
        missing_ids: every missing image id, in dataset order.
        total: number of images in the dataset.
        pred_dir: the predictions folder.
    """

    def __init__(self, missing_ids: Sequence[str], total: int, pred_dir: str) -> None:
        self.missing_ids = tuple(missing_ids)
        self.total = int(total)
        self.pred_dir = str(pred_dir)
        shown = ", ".join(self.missing_ids[:MISSING_LIST_LIMIT])
        more = len(self.missing_ids) - MISSING_LIST_LIMIT
        if more > 0:
            shown += f", ... ({more} more)"
        super().__init__(
            f"{len(self.missing_ids)} of {self.total} images have no prediction "
            f"<image_id>.png in {self.pred_dir}: {shown}. Write those predictions, or pass "
            "--missing background (missing='background') to count them as all-background "
            "predictions"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.missing_ids, self.total, self.pred_dir))


class PredictionSizeError(ValueError):
    """A prediction's size differs from its ground truth."""


class EvaluationWorkerError(RuntimeError):
    """A worker process of the ``"process"`` backend died (killed, or unpicklable dataset)."""


def evaluate_folder(
    pred_dir: str | os.PathLike[str] | AnyPath,
    dataset: SegmentationDataset,
    *,
    missing: MissingPolicy = "error",
    workers: int | None = None,
    backend: Backend = "auto",
    chunk_size: int | None = None,
    description: str | None = None,
) -> EvaluationReport:
    """Compute the confusion matrix and metrics of a folder of predictions.

    Args:
        pred_dir: folder holding ``<image_id>.png`` for each ``image_id`` in
            ``dataset.ids``; other files are ignored (their count is reported). A local
            path or an fsspec URL (``s3://bucket/run/masks``; see
            :func:`samwsss.storage.as_path`), listed with one request.
        dataset: a dataset with ground truth (``dataset.has_gt``); its ``class_names``
            define ``C`` and its ``ids`` the images evaluated (e.g. a VOC split).
        missing: ``"error"`` (default) raises :class:`MissingPredictionsError` listing the
            images without a prediction; ``"background"`` counts each as an all-background
            prediction and records the ids in the report.
        workers: parallel decoders; ``None`` = the CPUs available (at most 8); ``0`` or
            ``1`` = run in this thread.
        backend: ``"process"``: a process pool (the platform's default start method);
            close to linear in the cores, and best when ``dataset.gt`` is Python-heavy
            (COCO ground truth painted from annotations); the dataset reaches each worker
            once, inherited by fork or pickled. ``"thread"``: a thread pool; no start-up
            cost and safe anywhere, but only PNG decoding and part of the counting release
            the GIL (about 1.1-1.4x one thread on two cores). ``"auto"`` (default): the
            process pool when the default start method is ``fork`` and torch is not
            loaded in this process (forking after torch/CUDA started their threads is
            unsafe), else the thread pool.
        chunk_size: images per task; default splits the work in about 8 chunks per worker
            (at most 64 images each).
        description: what ground truth is used, for the report; default from the dataset's
            ``kind``, ``split`` and ``root`` attributes.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        MissingPredictionsError: prediction files are missing and ``missing="error"``.
        PredictionSizeError: a prediction's size differs from its ground truth (the message
            names the image and both sizes).
        ValueError: bad arguments, no ground truth, an unreadable prediction, or a class
            value out of range for ``C`` (the message names the image); a URL whose file
            system package is not installed (it is named).
        EvaluationWorkerError: a worker process died (``backend="process"`` only).
    """
    started = time.perf_counter()
    if not isinstance(dataset, SegmentationDataset):
        raise ValueError(
            f"dataset must be a SegmentationDataset, got {type(dataset).__name__} {dataset!r}; "
            "open one with samwsss.data.open_dataset(root, split)"
        )
    if missing not in ("error", "background"):
        raise ValueError(f"missing must be 'error' or 'background', got {missing!r}")
    if backend not in ("auto", "thread", "process"):
        raise ValueError(f"backend must be 'auto', 'thread' or 'process', got {backend!r}")
    pool = _resolve_backend(backend)
    num_workers = _resolve_workers(workers)
    folder = as_path(pred_dir)
    if not is_folder(folder):
        raise ValueError(f"predictions folder {str(folder)!r} does not exist or is not a folder")
    if not dataset.has_gt:
        raise ValueError(
            f"dataset {dataset!r} has no ground truth to evaluate against; give a split with "
            "ground-truth masks or a --gt-dir folder of ground-truth PNGs"
        )
    class_names = tuple(dataset.class_names)
    if not 1 <= len(class_names) <= 255:
        raise ValueError(f"dataset has {len(class_names)} classes; evaluation needs 1..255")
    ids = list(dataset.ids)
    if not ids:
        raise ValueError(f"dataset {dataset!r} has no images to evaluate")

    available = _prediction_files(folder)
    paths: list[str | None] = []
    missing_ids: list[str] = []
    for image_id in ids:
        name = available.get(image_id)
        if name is None:
            missing_ids.append(image_id)
            paths.append(None)
        else:
            paths.append(
                os.path.join(folder, name) if isinstance(folder, Path) else str(folder / name)
            )
    if missing_ids and missing == "error":
        raise MissingPredictionsError(missing_ids, len(ids), str(folder))
    if missing_ids:
        logger.warning(
            "%d of %d images have no prediction in %s; counted as background",
            len(missing_ids),
            len(ids),
            folder,
        )
    extra = len(set(available) - set(ids))
    if extra:
        logger.info("%d PNG files in %s are not in the dataset and were ignored", extra, folder)

    matrix = ConfusionMatrix(len(class_names), class_names)
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    size = chunk_size or _default_chunk_size(len(ids), num_workers)
    chunks = [(ids[i : i + size], paths[i : i + size]) for i in range(0, len(ids), size)]
    logger.info(
        "evaluating %d predictions in %s (%d classes, %d %s workers)",
        len(ids),
        folder,
        len(class_names),
        num_workers,
        pool,
    )
    if num_workers <= 1 or len(chunks) == 1:
        partials = [
            _count_chunk(dataset, chunk_ids, chunk_paths, len(class_names))
            for chunk_ids, chunk_paths in chunks
        ]
    else:
        partials = _run_parallel(dataset, chunks, len(class_names), num_workers, pool)
    unreadable: list[tuple[str, str]] = []
    for counts, count, bad in partials:
        matrix.add_counts(counts, count)
        unreadable.extend(bad)
    if unreadable:
        logger.warning(
            "%d images were left out of the evaluation because a mask could not be read "
            "(first: %s)",
            len(unreadable),
            unreadable[0][1],
        )

    elapsed = time.perf_counter() - started
    logger.info(
        "evaluated %d images in %.2f s (%.0f masks/s)", len(ids), elapsed, len(ids) / elapsed
    )
    return EvaluationReport(
        metrics=matrix.compute(),
        num_images=matrix.num_images,
        dataset_kind=getattr(dataset, "kind", None),
        split=_optional_str(getattr(dataset, "split", None)),
        description=description if description is not None else _describe(dataset),
        pred_dir=str(folder),
        missing_ids=tuple(missing_ids),
        missing_policy=missing,
        extra_predictions=extra,
        unreadable=tuple(unreadable),
        elapsed_s=round(elapsed, 4),
    )


def _prediction_files(folder: AnyPath) -> dict[str, str]:
    """Map stem -> file name of every ``*.png`` in ``folder`` (one directory scan or
    remote listing)."""
    found: dict[str, str] = {}
    for entry in scan_folder(folder):
        name = entry.name
        if len(name) > 4 and name[-4:].lower() == ".png" and not name.startswith("."):
            found.setdefault(name[:-4], name)
    return found


_ChunkCounts = tuple[np.ndarray, int, list[tuple[str, str]]]
"""One chunk's ``(C, C)`` counts, images counted and ``[(id, reason)]`` left out."""


def _count_chunk(
    dataset: SegmentationDataset,
    ids: Sequence[str],
    paths: Sequence[str | None],
    num_classes: int,
) -> _ChunkCounts:
    """Decode and count one chunk; returns ``((C, C) int64 counts, images counted,
    [(id, reason)] of images left out because their GT or prediction cannot be read)``."""
    matrix = ConfusionMatrix(num_classes)
    unreadable: list[tuple[str, str]] = []
    for image_id, path in zip(ids, paths, strict=True):
        try:
            gt = dataset.gt(image_id)
        except ImageReadError as error:
            unreadable.append((image_id, str(error)))
            continue
        if gt is None:
            raise ValueError(f"image {image_id!r} has no ground truth in {dataset!r}")
        gt = np.asarray(gt)
        pred: np.ndarray
        if path is None:
            pred = np.zeros(gt.shape, dtype=np.uint8)
        else:
            try:
                pred = read_label_png(path)
            except ImageReadError as error:
                unreadable.append((image_id, f"prediction: {error}"))
                continue
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"image {image_id!r}: cannot read prediction {path} ({error})"
                ) from error
            if pred.shape != gt.shape:
                raise PredictionSizeError(
                    f"image {image_id!r}: prediction {path} is {pred.shape[1]}x{pred.shape[0]} "
                    f"(WxH) but its ground truth is {gt.shape[1]}x{gt.shape[0]}; predictions "
                    "must be at the image's original size"
                )
        matrix.update(pred, gt, image_id=image_id)
    return matrix.counts, matrix.num_images, unreadable


_WORKER_DATASET: SegmentationDataset | None = None


def _init_worker(dataset: SegmentationDataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _count_chunk_in_worker(
    ids: Sequence[str], paths: Sequence[str | None], num_classes: int
) -> _ChunkCounts:
    if _WORKER_DATASET is None:  # pragma: no cover - initializer always runs first
        raise RuntimeError("evaluation worker was started without its dataset")
    return _count_chunk(_WORKER_DATASET, ids, paths, num_classes)


def _run_parallel(
    dataset: SegmentationDataset,
    chunks: list[tuple[list[str], list[str | None]]],
    num_classes: int,
    workers: int,
    backend: Literal["thread", "process"],
) -> list[_ChunkCounts]:
    executor: concurrent.futures.Executor
    if backend == "thread":
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="samwsss-eval"
        )
        futures = [
            executor.submit(_count_chunk, dataset, ids, paths, num_classes) for ids, paths in chunks
        ]
    else:
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(_start_method()),
            initializer=_init_worker,
            initargs=(dataset,),
        )
        futures = [
            executor.submit(_count_chunk_in_worker, ids, paths, num_classes)
            for ids, paths in chunks
        ]
    results: list[_ChunkCounts] = []
    try:
        for future in futures:
            results.append(future.result())
    except concurrent.futures.process.BrokenProcessPool as error:
        executor.shutdown(wait=True, cancel_futures=True)
        raise EvaluationWorkerError(
            f"an evaluation worker process died ({error}); if the dataset cannot be "
            "pickled or memory is short, use backend='thread' (--backend thread)"
        ) from error
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results


def _start_method() -> str:
    """The multiprocessing start method in force, without fixing it as a side effect."""
    return (
        multiprocessing.get_start_method(allow_none=True)
        or (multiprocessing.get_all_start_methods()[0])
    )


def _resolve_backend(backend: Backend) -> Literal["thread", "process"]:
    if backend != "auto":
        return backend
    if _start_method() == "fork" and "torch" not in sys.modules:
        return "process"
    return "thread"


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            available = os.cpu_count() or 1
        return max(1, min(_MAX_DEFAULT_WORKERS, available))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be None or an int >= 0, got {workers!r}")
    return max(1, workers)


def _default_chunk_size(num_images: int, workers: int) -> int:
    if workers <= 1:
        return _MAX_CHUNK
    return max(1, min(_MAX_CHUNK, math.ceil(num_images / (workers * 8))))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _describe(dataset: SegmentationDataset) -> str:
    kind = getattr(dataset, "kind", None) or type(dataset).__name__
    root = getattr(dataset, "root", None)
    return f"{kind} ({root})" if root is not None else str(kind)
