"""Labelling runs over a dataset: decode ahead in workers, run the pipeline on batches,
write outputs, resume safely, shard across processes, and evaluate when ground truth exists.

A run is three steps: :func:`run_dataset` plans (its :class:`~samwsss.runs.folder.RunFolder`,
order, fixed batch grid: a :class:`RunPlan`), an engine runs the planned batches (decode,
models, writes), and the run finishes (manifest, evaluation: :mod:`samwsss.runs.finish`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from samwsss.checks import check_choice, check_count
from samwsss.choices import DEFAULT_WORKERS, ROUTES
from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.pipeline.batching import Shard, fixed_grid, order_by_size
from samwsss.pipeline.pipeline import Pipeline
from samwsss.runs.failures import FAILURES_DIR, FailureLog, read_failures
from samwsss.runs.finish import RunSummary, evaluate_if_complete, write_manifest
from samwsss.runs.folder import RunFolder, check_writable
from samwsss.runs.lock import RunConflictError
from samwsss.runs.writers import OUTPUT_DIRS, OutputSpec, OutputWriter
from samwsss.stages.pil_resize import PilResize
from samwsss.storage import AnyPath, as_path, list_file_names, open_binary, remove_file, remove_tree
from samwsss.workers import exit_with_parent

logger = logging.getLogger(__name__)

__all__ = ["BatchEngine", "LocalEngine", "RunOptions", "RunPlan", "overlay_sample", "run_dataset"]


@dataclass
class RunOptions:
    """How a dataset run writes and resumes.

    Attributes:
        route: ``"text-input"`` or ``"zero-shot"``.
        out: the run folder: a local path, or an fsspec URL (``s3://bucket/run``; see
            :mod:`samwsss.storage`) given as a string or made with ``as_path``.
        shard: the part of the dataset this process runs.
        workers: DataLoader worker processes decoding images ahead of the GPU.
        palette / plain / instances: which mask outputs to write (see writers).
        overlays: how many images (spread evenly over the dataset) get overlay JPEGs.
        overwrite: delete a different run's outputs in ``out`` and start again.
        resume: continue in ``out`` even though its saved config differs.
        evaluate: evaluate at the end when the dataset has ground truth.
        max_images: stop after this many images (for trials; a later run resumes).
        retry_failures: retry images an earlier run recorded as unreadable (default: skip).
        sort_by_size: run the shard's images in order of size, so that batches hold images
            of one size (Grounding DINO batches only images of equal resized size exactly).
    """

    route: str
    out: AnyPath
    shard: Shard = field(default_factory=Shard)
    workers: int = DEFAULT_WORKERS
    palette: bool = True
    plain: bool = False
    instances: bool = False
    overlays: int = 0
    overwrite: bool = False
    resume: bool = False
    evaluate: bool = True
    max_images: int | None = None
    retry_failures: bool = False
    sort_by_size: bool = True

    def __post_init__(self) -> None:
        check_choice("route", self.route, ROUTES)
        check_count("workers", self.workers, minimum=0)
        check_count("overlays", self.overlays, minimum=0)
        if self.max_images is not None:
            check_count("max_images (or leave it out)", self.max_images)
        self.out = as_path(self.out)

    @property
    def folder(self) -> RunFolder:
        """This shard's view of the run folder ``out``."""
        return RunFolder(self.out, self.shard)


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


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def overlay_sample(ids: list[str], count: int) -> frozenset[str]:
    """``count`` ids spread evenly over ``ids`` (the same in every shard)."""
    if count <= 0 or not ids:
        return frozenset()
    positions = np.linspace(0, len(ids) - 1, num=min(count, len(ids))).round().astype(int)
    return frozenset(ids[i] for i in positions)


@dataclass
class RunPlan:
    """A shard's planned work, as an engine runs it (see :class:`BatchEngine`).

    Attributes:
        pipeline, dataset, options: the run's.
        spec: which outputs to write, and where.
        batches: the forward batches, in grid order (image ids).
        pending: the ids whose outputs are written (the other ids of a batch were done by
            an earlier run: they run only to keep the batch as it was).
        failures: this shard's failure log.
    """

    pipeline: Pipeline
    dataset: SegmentationDataset
    options: RunOptions
    spec: OutputSpec
    batches: list[list[str]]
    pending: set[str]
    failures: FailureLog

    def readable(self, item: dict[str, Any]) -> bool:
        """Whether a decoded item can run; if not (an unreadable image, or for text input
        an image with no labels) it is recorded in the failure log."""
        error = unreadable_reason(item, self.options.route)
        if error is not None:
            self.failures.record(item["image_id"], error)
        return error is None


class BatchEngine(Protocol):
    """Executes a run's planned batches: decode, models, writes (see :func:`run_dataset`).

    The planning (identity, lock, folder, order, batch grid, resume) and the finish
    (manifest, evaluation) stay in the runner; an engine only runs ``plan.batches`` (each
    one forward batch, in grid order), writes the outputs of the pending ids with
    :func:`~samwsss.runs.writers.write_outputs`, records unreadable images
    (:meth:`RunPlan.readable`) and returns how many images got outputs.
    """

    def run_batches(self, plan: RunPlan) -> int:
        """Run ``plan.batches``; return how many images got outputs."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran the models, for the manifest (``{"name": ..., ...}``)."""
        ...


class LocalEngine:
    """The in-process engine: DataLoader workers decode, this process runs the models and
    two threads write (:class:`~samwsss.runs.writers.OutputWriter`, overlapping the
    models)."""

    def run_batches(self, plan: RunPlan) -> int:
        """Run ``plan.batches`` here (see :class:`BatchEngine`)."""
        pipeline, options, spec = plan.pipeline, plan.options, plan.spec
        processed = 0
        show_progress = "RANK" not in os.environ or os.environ.get("RANK") == "0"
        with OutputWriter(spec, pipeline.mapping, pipeline.batch_size) as writer:
            resizes = pipeline.host_resizes(options.route)
            for batch in _load(plan.dataset, plan.batches, options.workers, show_progress, resizes):
                good = [item for item in batch if plan.readable(item)]
                if not good:
                    continue
                results = run_decoded(pipeline, good, options.route, spec.instances)
                for item, result in zip(good, results, strict=True):
                    if item["image_id"] not in plan.pending:
                        continue  # finished by an earlier run; ran only to keep the batch
                    writer.submit(item["image_id"], item["image"], result)
                    processed += 1
        return processed

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
            :class:`samwsss.runs.ray_engine.RayEngine`); not part of the identity: the
            outputs are the same.

    Returns:
        Counts, timing and the mIoU when the run finished the dataset and had ground truth.

    Raises:
        OutputFolderError: ``options.out`` cannot be created or written to.
        RunConflictError: ``options.out`` holds a different run.
        RunLockedError: a live run (of this shard, or of another shard count) uses
            ``options.out``; a dead run's lock is taken over (see :mod:`samwsss.runs.lock`).
        ValueError: text input over a dataset without image-level labels.
    """
    check_writable(options.out)
    with options.folder.hold():
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
    folder = prepare_folder(options, identity, set(mine))
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
    started = time.time()
    failures = FailureLog(folder.failures_path)
    try:
        plan = RunPlan(pipeline, dataset, options, spec, batches, pending, failures)
        processed = engine.run_batches(plan)
    finally:
        failures.close()
    complete_now = spec.complete_ids(mine)
    failed_total = len((set(read_failures(options.out)) & set(mine)) - complete_now)
    summary = RunSummary(
        len(mine), len(complete), processed, failures.count, time.time() - started,
        complete=len(complete_now), failed_total=failed_total,
    )  # fmt: skip
    write_manifest(pipeline, folder, identity, summary, started, engine.describe())
    if options.evaluate and dataset.has_gt:
        evaluate_if_complete(spec, dataset, folder, summary)
    return summary


def run_identity(pipeline: Pipeline, options: RunOptions, data: dict[str, Any]) -> dict[str, Any]:
    """What makes a run this run (saved as its ``config.yaml``): route, data, pipeline
    settings (not the batch size, which changes speed, not outputs) and the outputs asked
    for."""
    config = pipeline.config.to_dict() if pipeline.config is not None else {}
    config.pop("batch_size", None)
    for name in ("box_threshold", "text_threshold"):  # a family default, as resolved
        if config.get(name) is None and hasattr(pipeline.boxer, name):
            config[name] = getattr(pipeline.boxer, name)
    return {
        "route": options.route,
        "data": data,
        "pipeline": config,
        "outputs": {
            "palette": options.palette,
            "plain": options.plain,
            "instances": options.instances,
            "overlays": options.overlays,
        },
    }


def prepare_folder(options: RunOptions, identity: dict[str, Any], own_ids: set[str]) -> RunFolder:
    """Make ``options.out`` ready for this run (:meth:`RunFolder.claim`: a different run's
    folder refused unless ``overwrite``, which deletes its outputs, or ``resume``), and
    delete this shard's temporaries. The caller holds this shard's lock: no other live
    shard uses the folder when an unsharded ``overwrite`` wipes it.

    Raises:
        RunConflictError: the folder holds another run or other files, or ``overwrite``
            of a different run is asked of one shard of several.
    """
    folder = options.folder

    def clear() -> None:
        if options.shard.count > 1:
            raise RunConflictError(
                f"--overwrite cannot be combined with sharding (shard {options.shard.index}/"
                f"{options.shard.count}): another shard may be writing there; delete "
                f"{options.out} first or choose another --out"
            )
        logger.warning("--overwrite: removing the outputs of a different run in %s", options.out)
        for name in (*OUTPUT_DIRS, FAILURES_DIR):
            remove_tree(options.out / name)
        for name in list_file_names(options.out):
            manifest = name.startswith("manifest") and name.endswith(".json")
            if manifest or name in ("evaluation.json", "evaluation_iou.png"):
                remove_file(options.out / name)

    folder.claim(identity, overwrite=options.overwrite, resume=options.resume, clear=clear)
    folder.remove_temporaries(OUTPUT_DIRS, own_ids)
    return folder


def run_decoded(
    pipeline: Pipeline, items: list[dict[str, Any]], route: str, keep_masks: bool
) -> list[Any]:
    """The pipeline's :class:`~samwsss.pipeline.pipeline.PipelineResult` of each decoded
    item that can run (its image, its labels for text input, the resizes its decode worker
    did), in order."""
    labels = [tuple(item["labels"]) for item in items] if route == "text-input" else None
    images, prepared = [item["image"] for item in items], [item["prepared"] for item in items]
    return pipeline.run_arrays(images, labels, keep_masks=keep_masks, prepared=prepared)


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
