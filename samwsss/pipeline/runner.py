"""Dataset runs: decode ahead in workers, run the pipeline on batches, write outputs,
resume safely, shard across processes, and evaluate when ground truth exists.

A run is three steps: :func:`run_dataset` plans (folder, order, fixed batch grid), loops
over the planned batches (decode, models, writes), and finishes (manifest, evaluation).
Its options, :class:`RunOptions`, are settings (:mod:`samwsss.pipeline.config`); its
:class:`RunSummary` comes from the finish (:mod:`samwsss.pipeline.run_finish`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from samwsss.choices import DEFAULT_WORKERS
from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.pipeline.batching import Shard, fixed_grid, order_by_size
from samwsss.pipeline.config import RunOptions
from samwsss.pipeline.pipeline import Pipeline
from samwsss.pipeline.run_finish import RunSummary, evaluate_if_complete, write_manifest
from samwsss.pipeline.run_folder import (
    FAILURES_DIR,
    FailureLog,
    RunConflictError,
    prepare_folder,
    read_failures,
    run_identity,
)
from samwsss.pipeline.run_lock import RunLockedError, hold_run_lock
from samwsss.pipeline.writers import OutputSpec, OutputWriter
from samwsss.stages.pil_resize import PilResize
from samwsss.storage import AnyPath, open_binary, put_bytes, remove_file
from samwsss.workers import exit_with_parent

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_WORKERS",
    "BatchEngine",
    "LocalEngine",
    "OutputFolderError",
    "check_writable",
    "RunConflictError",
    "RunLockedError",
    "RunOptions",
    "RunSummary",
    "Shard",
    "overlay_sample",
    "read_failures",
    "run_dataset",
]


class DecodeDataset(torch.utils.data.Dataset):
    """Decodes images in DataLoader workers; a bad file becomes an error record, not a crash."""

    def __init__(
        self,
        dataset: SegmentationDataset,
        ids: list[str],
        resizes: tuple[PilResize, ...] = (),
    ) -> None:
        self.dataset = dataset
        self.ids = ids
        self.resizes = resizes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        try:
            image = self.dataset.load_image(image_id)
            error = None
        except ImageReadError as failure:
            image, error = None, str(failure)
        return {
            "image_id": image_id,
            "image": image,
            "error": error,
            "labels": self.dataset.labels(image_id),
            # the stages' PIL resizes, computed here in parallel ahead of the models
            "prepared": {} if image is None else {r.key: r(image) for r in self.resizes},
        }


_DecodeDataset = DecodeDataset  # the earlier private name


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def overlay_sample(ids: list[str], count: int) -> frozenset[str]:
    """``count`` ids spread evenly over ``ids`` (the same in every shard)."""
    if count <= 0 or not ids:
        return frozenset()
    positions = np.linspace(0, len(ids) - 1, num=min(count, len(ids))).round().astype(int)
    return frozenset(ids[i] for i in positions)


class BatchEngine(Protocol):
    """Executes a run's planned batches: decode, models, writes (see :func:`run_dataset`).

    The planning (identity, lock, folder, order, batch grid, resume) and the finish
    (manifest, evaluation) stay in the runner; an engine only runs ``batches`` (each one
    forward batch, in grid order), writes the outputs of the ids in ``pending`` with
    :func:`~samwsss.pipeline.writers.write_outputs`, records unreadable images in
    ``failures`` and returns how many images got outputs.
    """

    def run_batches(
        self,
        pipeline: Pipeline,
        dataset: SegmentationDataset,
        options: RunOptions,
        spec: OutputSpec,
        batches: list[list[str]],
        pending: set[str],
        failures: FailureLog,
    ) -> int:
        """Run ``batches``; return how many images got outputs."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran the models, for the manifest (``{"name": ..., ...}``)."""
        ...


class LocalEngine:
    """The in-process engine: DataLoader workers decode, this process runs the models and
    two threads write."""

    def run_batches(
        self,
        pipeline: Pipeline,
        dataset: SegmentationDataset,
        options: RunOptions,
        spec: OutputSpec,
        batches: list[list[str]],
        pending: set[str],
        failures: FailureLog,
    ) -> int:
        """Run ``batches`` here (see :class:`BatchEngine`)."""
        return _run_batches(pipeline, dataset, options, spec, batches, pending, failures)

    def describe(self) -> dict[str, Any]:
        """``{"name": "local"}`` (the device is the pipeline's, in the manifest)."""
        return {"name": "local"}


def run_dataset(
    pipeline: Pipeline,
    dataset: SegmentationDataset,
    options: RunOptions,
    data: dict[str, Any],
    engine: BatchEngine | None = None,
) -> RunSummary:
    """Run a route over a dataset, writing per-image outputs under ``options.out``.

    Args:
        pipeline: the stages (tagger needed for zero-shot).
        dataset: images, labels (text input) and optional ground truth.
        options: outputs, sharding and resume behaviour.
        data: how the dataset was opened (path, split, ...); part of the run's identity.
        engine: what executes the planned batches (default :class:`LocalEngine`; see
            :class:`samwsss.pipeline.ray_engine.RayEngine`); not part of the identity: the
            outputs are the same.

    Returns:
        Counts, timing and the mIoU when the run finished the dataset and had ground truth.

    Raises:
        OutputFolderError: ``options.out`` cannot be created or written to.
        RunConflictError: ``options.out`` holds a different run.
        RunLockedError: a live run (of this shard, or of another shard count) uses
            ``options.out``; a dead run's lock is taken over (see :mod:`run_lock`).
        ValueError: text input over a dataset without image-level labels.
    """
    check_writable(options.out)
    with hold_run_lock(options.out, options.shard):
        return _run_dataset_locked(pipeline, dataset, options, data, engine or LocalEngine())


def _run_dataset_locked(
    pipeline: Pipeline,
    dataset: SegmentationDataset,
    options: RunOptions,
    data: dict[str, Any],
    engine: BatchEngine,
) -> RunSummary:
    """:func:`run_dataset` with this shard's lock held."""
    ids = list(dataset.ids)
    if not ids:
        raise ValueError("the dataset has no images: check --data and --split")
    if options.route == "text-input" and all(dataset.labels(i) is None for i in ids):
        raise ValueError(
            "text-input needs image-level labels, and this dataset has none: give a labels "
            "file (--labels) or use the zero-shot route"
        )
    if options.route == "zero-shot":
        pipeline.require_tagger()  # before anything is written; its source is recorded
    identity = run_identity(pipeline, options, data)
    mine = options.shard.select(ids)
    prepare_folder(options, identity, set(mine))
    spec = OutputSpec(
        root=options.out,
        palette=options.palette,
        plain=options.plain,
        instances=options.instances,
        overlay_ids=overlay_sample(ids, options.overlays),
    )
    if options.sort_by_size:
        mine = order_by_size(mine, _size_reader(dataset, mine))
    known_failures = {} if options.retry_failures else read_failures(options.out)
    complete = spec.complete_ids(mine)
    batches, pending = fixed_grid(
        mine, pipeline.batch_size, set(known_failures), complete, options.max_images
    )
    logger.info(
        "%d images in this shard: %d done already, %d unreadable before, %d to run",
        len(mine), len(complete), len(set(mine) & set(known_failures)), len(pending),
    )  # fmt: skip
    failures_path = options.out / FAILURES_DIR / f"failures{options.shard.suffix}.jsonl"
    started = time.time()
    failures = FailureLog(failures_path)
    try:
        processed = engine.run_batches(pipeline, dataset, options, spec, batches, pending, failures)
    finally:
        failures.close()
    complete_now = spec.complete_ids(mine)
    failed_total = len((set(read_failures(options.out)) & set(mine)) - complete_now)
    summary = RunSummary(
        len(mine), len(complete), processed, failures.count, time.time() - started,
        complete=len(complete_now), failed_total=failed_total,
    )  # fmt: skip
    write_manifest(pipeline, options, identity, summary, started, failures_path, engine.describe())
    if options.evaluate and dataset.has_gt:
        evaluate_if_complete(spec, dataset, options, summary)
    return summary


class OutputFolderError(ValueError):
    """The run's output folder cannot be created or written to."""


def check_writable(out: AnyPath) -> None:
    """Create ``out`` and check that files can be made in it (on an object store: put and
    delete a small probe object, which also checks the credentials).

    Raises:
        OutputFolderError: naming the folder, the OS error and what to do.
    """
    try:
        if isinstance(out, Path):
            out.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-", delete=True)
            probe.close()
        else:
            remote_probe = out / f".write-check-{uuid.uuid4().hex}"
            put_bytes(remote_probe, b"")
            remove_file(remote_probe)
    except OSError as error:
        raise OutputFolderError(
            f"cannot write the output folder {out} ({type(error).__name__}: {error}); choose "
            "another --out, or make that folder writable"
        ) from error


def _run_batches(
    pipeline: Pipeline,
    dataset: SegmentationDataset,
    options: RunOptions,
    spec: OutputSpec,
    batches: list[list[str]],
    pending: set[str],
    failures: FailureLog,
) -> int:
    """Decode, run and write the planned batches; returns how many images got outputs.

    Writes run in threads overlapping the models (:class:`~samwsss.pipeline.writers.OutputWriter`).
    """
    processed = 0
    show_progress = "RANK" not in os.environ or os.environ.get("RANK") == "0"
    with OutputWriter(spec, pipeline.mapping, pipeline.batch_size) as writer:
        resizes = pipeline.host_resizes(options.route)
        for batch in _load(dataset, batches, options.workers, show_progress, resizes):
            good = [item for item in batch if _readable(item, options.route, failures)]
            if not good:
                continue
            images = [item["image"] for item in good]
            labels = (
                [tuple(item["labels"]) for item in good] if options.route == "text-input" else None
            )
            results = pipeline.run_arrays(
                images, labels, keep_masks=spec.instances, prepared=[i["prepared"] for i in good]
            )
            for item, result in zip(good, results, strict=True):
                if item["image_id"] not in pending:
                    continue  # finished by an earlier run; ran only to keep the batch as it was
                writer.submit(item["image_id"], item["image"], result)
                processed += 1
    return processed


def unreadable_reason(item: dict[str, Any], route: str) -> str | None:
    """Why a decoded item cannot run (an unreadable image, or for text input an image with
    no labels), or ``None`` when it can."""
    error: str | None = item["error"]
    if error is None and route == "text-input" and item["labels"] is None:
        error = (
            f"{item['image_id']}: no image-level labels for this image; add it to the "
            "labels file (an empty list means no object) or use zero-shot"
        )
    return error


def _readable(item: dict[str, Any], route: str, failures: FailureLog) -> bool:
    """Whether a decoded item can run; an unreadable image (or, for text input, one with
    no labels) is logged as a failure."""
    error = unreadable_reason(item, route)
    if error is not None:
        failures.record(item["image_id"], error)
        return False
    return True


#: Bytes fetched at a time when reading a remote image's header for its size (a whole
#: default block would download most images twice).
_HEADER_BLOCK = 1 << 16
#: Remote image headers read at once.
_HEADER_READERS = 32


def _size_reader(dataset: SegmentationDataset, ids: list[str]) -> Any:
    """``image id -> (height, width)``: from the dataset when it knows sizes (COCO
    annotations), else from the image header (no decoding); ``None`` when unreadable
    (decoding in the workers reports it).

    Headers in an object store are read for all of ``ids`` up front, :data:`_HEADER_READERS`
    requests at a time: read one after another, 100,000 images at tens of milliseconds a
    request would take most of an hour.
    """
    known = getattr(dataset, "image_size", None)
    if callable(known):
        return known

    def from_header(image_id: str) -> tuple[int, int] | None:
        try:
            source = open_binary(dataset.image_path(image_id), block_size=_HEADER_BLOCK)
            with source as handle, Image.open(handle) as image:
                return image.height, image.width
        except (OSError, ValueError, Image.DecompressionBombError):
            return None

    if not ids or isinstance(dataset.image_path(ids[0]), Path):
        return from_header
    with ThreadPoolExecutor(_HEADER_READERS) as pool:
        sizes = dict(zip(ids, pool.map(from_header, ids), strict=True))
    return sizes.get


def progress_bar(total: int, description: str, enabled: bool = True) -> Any:
    """A tqdm bar over ``total`` images: live on a terminal, a line every 30 s in a log
    file (torchrun, slurm, ray jobs)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit="img",
        desc=description,
        dynamic_ncols=interactive,
        mininterval=0.1 if interactive else 30.0,
        disable=not enabled,
    )


def _load(
    dataset: SegmentationDataset,
    batches: list[list[str]],
    workers: int,
    show_progress: bool,
    resizes: tuple[PilResize, ...] = (),
) -> Iterator[list[dict[str, Any]]]:
    """Decode the planned batches in DataLoader workers, in order, with a progress bar;
    the workers also compute ``resizes`` of each image."""
    if not batches:
        return

    ids = [image_id for batch in batches for image_id in batch]
    positions, start = [], 0
    for batch in batches:
        positions.append(list(range(start, start + len(batch))))
        start += len(batch)
    loader = torch.utils.data.DataLoader(
        DecodeDataset(dataset, ids, resizes),
        batch_sampler=positions,
        num_workers=workers,
        worker_init_fn=exit_with_parent,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
    )
    with progress_bar(len(ids), "samwsss", enabled=show_progress) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch))
