"""Dataset runs: decode ahead in workers, run the pipeline on batches, write outputs,
resume safely, shard across processes, and evaluate when ground truth exists."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from samwsss.atomic import TEMP_PREFIX, atomic_write_json, atomic_write_text
from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.pipeline.pipeline import Pipeline
from samwsss.pipeline.writers import INSTANCES_DIR, MASKS_DIR, OVERLAYS_DIR, PLAIN_DIR, OutputSpec, write_outputs

logger = logging.getLogger(__name__)

ROUTES = ("text-input", "zero-shot")
CONFIG_FILE = "config.yaml"


class RunConflictError(ValueError):
    """The output folder holds a different run; the message says how to proceed."""


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a dataset: ids ``index, index + count, ...``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"i/n"`` -> Shard; ``None`` -> the torchrun rank/world size, or 0/1."""
        if text is None:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            return cls(int(os.environ.get("RANK", "0")), world) if world > 1 else cls()
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError as error:
            raise ValueError(f"--shard must look like 0/4 (index/count), got {text!r}") from error
        return cls(index, count)

    def select(self, ids: list[str]) -> list[str]:
        """This shard's ids (deterministic, disjoint across shards, covering all ids)."""
        return ids[self.index :: self.count]

    @property
    def suffix(self) -> str:
        """File-name suffix for per-shard files (empty for an unsharded run)."""
        return "" if self.count == 1 else f"-shard-{self.index}-of-{self.count}"


@dataclass
class RunOptions:
    """How a dataset run writes and resumes.

    Attributes:
        route: ``"text-input"`` or ``"zero-shot"``.
        out: the run folder.
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
    out: Path
    shard: Shard = field(default_factory=Shard)
    workers: int = 2
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
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.overlays < 0:
            raise ValueError(f"overlays must be >= 0, got {self.overlays}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be >= 1 (or left out), got {self.max_images}")
        self.out = Path(self.out)


@dataclass
class RunSummary:
    """What a run did: counts, timing and (when evaluated) the mIoU."""

    total: int
    skipped: int
    processed: int
    failed: int
    seconds: float
    miou: float | None = None
    report_table: str | None = None

    @property
    def images_per_second(self) -> float:
        """Processed images per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


class _DecodeDataset(torch.utils.data.Dataset):
    """Decodes images in DataLoader workers; a bad file becomes an error record, not a crash."""

    def __init__(self, dataset: SegmentationDataset, ids: list[str]) -> None:
        self.dataset = dataset
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        try:
            image = self.dataset.load_image(image_id)
            error = None
        except ImageReadError as failure:
            image, error = None, str(failure)
        return {"image_id": image_id, "image": image, "error": error, "labels": self.dataset.labels(image_id)}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def overlay_sample(ids: list[str], count: int) -> frozenset[str]:
    """``count`` ids spread evenly over ``ids`` (the same in every shard)."""
    if count <= 0 or not ids:
        return frozenset()
    positions = np.linspace(0, len(ids) - 1, num=min(count, len(ids))).round().astype(int)
    return frozenset(ids[i] for i in positions)


def _run_identity(pipeline: Pipeline, options: RunOptions, data: dict[str, Any]) -> dict[str, Any]:
    config = pipeline.config.to_dict() if pipeline.config is not None else {}
    # batch size changes speed, not outputs: keep it out of the identity
    config.pop("batch_size", None)
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


def _prepare_folder(options: RunOptions, identity: dict[str, Any], own_ids: set[str]) -> None:
    out = options.out
    config_path = out / CONFIG_FILE
    if config_path.is_file():
        try:
            previous = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            previous = None
        if previous != identity:
            if options.overwrite:
                if options.shard.count > 1:
                    raise RunConflictError(
                        f"--overwrite cannot be combined with sharding (shard "
                        f"{options.shard.index}/{options.shard.count}): another shard may be "
                        f"writing there; delete {out} first or choose another --out"
                    )
                logger.warning("--overwrite: removing the outputs of a different run in %s", out)
                for name in (MASKS_DIR, PLAIN_DIR, INSTANCES_DIR, OVERLAYS_DIR, "failures"):
                    shutil.rmtree(out / name, ignore_errors=True)
                reports = [out / "evaluation.json", out / "evaluation_iou.png"]
                for stale in list(out.glob("manifest*.json")) + reports:
                    stale.unlink(missing_ok=True)
            elif not options.resume:
                raise RunConflictError(
                    f"{out} holds a different run (its {CONFIG_FILE} differs from this run's "
                    "settings): choose another --out, pass --overwrite to delete its outputs, or "
                    "--resume to continue it with the new settings"
                )
    elif out.exists() and any(out.iterdir()) and not (options.overwrite or options.resume):
        entries = sorted(p.name for p in out.iterdir())[:5]
        raise RunConflictError(
            f"{out} is not empty and holds no samwsss run ({', '.join(entries)} ...): "
            "choose an empty or new --out folder, or pass --overwrite / --resume"
        )
    out.mkdir(parents=True, exist_ok=True)
    _remove_own_temporaries(out, own_ids)
    atomic_write_text(config_path, yaml.safe_dump(identity, sort_keys=False))


def _remove_own_temporaries(out: Path, own_ids: set[str]) -> None:
    """Delete ``.tmp-*`` leftovers of this shard's images only (other shards may be writing)."""
    for sub in (MASKS_DIR, PLAIN_DIR, INSTANCES_DIR, OVERLAYS_DIR):
        folder = out / sub
        if not folder.is_dir():
            continue
        for stale in folder.glob(TEMP_PREFIX + "*"):
            final_name = stale.name[len(TEMP_PREFIX) :].rsplit(".", 1)[0]
            if Path(final_name).stem in own_ids:
                stale.unlink(missing_ok=True)


def read_failures(out: Path) -> dict[str, str]:
    """``{image id: reason}`` from every shard's failures file (a torn last line is ignored)."""
    failed: dict[str, str] = {}
    for path in sorted((out / "failures").glob("failures*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "image_id" in record:
                failed[str(record["image_id"])] = str(record.get("reason", ""))
    return failed


def _environment(pipeline: Pipeline) -> dict[str, Any]:
    import transformers

    import samwsss

    device = pipeline.device
    info: dict[str, Any] = {
        "samwsss": samwsss.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "host": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    models = {}
    for name in ("tagger", "boxer", "masker"):
        stage = getattr(pipeline, name)
        if stage is not None:
            models[name] = (
                getattr(stage, "model_id", None)
                or getattr(stage, "checkpoint", None)
                or getattr(stage, "name", None)
                or repr(stage)
            )
    info["models"] = models
    return info


def run_dataset(
    pipeline: Pipeline, dataset: SegmentationDataset, options: RunOptions, data: dict[str, Any]
) -> RunSummary:
    """Run a route over a dataset, writing per-image outputs under ``options.out``.

    Args:
        pipeline: the stages (tagger needed for zero-shot).
        dataset: images, labels (text input) and optional ground truth.
        options: outputs, sharding and resume behaviour.
        data: how the dataset was opened (path, split, ...); part of the run's identity.

    Returns:
        Counts, timing and the mIoU when the run finished the dataset and had ground truth.

    Raises:
        RunConflictError: ``options.out`` holds a different run.
        ValueError: text input over a dataset without image-level labels.
    """
    ids = list(dataset.ids)
    if not ids:
        raise ValueError("the dataset has no images: check --data and --split")
    if options.route == "text-input" and all(dataset.labels(i) is None for i in ids):
        raise ValueError(
            "text-input needs image-level labels, and this dataset has none: give a labels "
            "file (--labels) or use the zero-shot route"
        )
    identity = _run_identity(pipeline, options, data)
    mine = options.shard.select(ids)
    _prepare_folder(options, identity, set(mine))
    spec = OutputSpec(
        root=options.out,
        palette=options.palette,
        plain=options.plain,
        instances=options.instances,
        overlay_ids=overlay_sample(ids, options.overlays),
    )
    if options.sort_by_size:
        mine = _order_by_size(dataset, mine)
    known_failures = {} if options.retry_failures else read_failures(options.out)
    complete = spec.complete_ids(mine)
    batches, pending = _plan_batches(
        mine, complete, set(known_failures), pipeline.batch_size, options.max_images
    )
    skipped = len(complete)
    logger.info(
        "%d images in this shard: %d done already, %d unreadable before, %d to run",
        len(mine), skipped, len(set(mine) & set(known_failures)), len(pending),
    )
    failures_path = options.out / "failures" / f"failures{options.shard.suffix}.jsonl"
    failures_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    processed = failed = 0
    show_progress = "RANK" not in os.environ or os.environ.get("RANK") == "0"
    with open(failures_path, "a", encoding="utf-8") as failures, ThreadPoolExecutor(2) as writer:
        in_flight: deque[Future[None]] = deque()
        for batch in _load(dataset, batches, options.workers, show_progress):
            good = []
            for item in batch:
                error = item["error"]
                if error is None and options.route == "text-input" and item["labels"] is None:
                    error = (
                        f"{item['image_id']}: no image-level labels for this image; add it to the "
                        "labels file (an empty list means no object) or use zero-shot"
                    )
                if error is not None:
                    failed += 1
                    failures.write(json.dumps({"image_id": item["image_id"], "reason": error}) + "\n")
                    failures.flush()
                    logger.warning("skipped %s", error)
                else:
                    good.append(item)
            if not good:
                continue
            images = [item["image"] for item in good]
            labels = [tuple(item["labels"]) for item in good] if options.route == "text-input" else None
            results = pipeline.run_arrays(images, labels, keep_masks=spec.instances)
            for item, result in zip(good, results):
                if item["image_id"] not in pending:
                    continue  # finished by an earlier run; ran only to keep the batch as it was
                in_flight.append(
                    writer.submit(
                        write_outputs, spec, item["image_id"], item["image"], result.mask,
                        result.detections, pipeline.mapping, result.tags, result.tag_sources,
                    )
                )
                processed += 1
            while len(in_flight) > 2 * pipeline.batch_size:
                in_flight.popleft().result()
        while in_flight:
            in_flight.popleft().result()
    seconds = time.time() - started
    summary = RunSummary(len(mine), skipped, processed, failed, seconds)
    manifest = {
        "config": identity,
        "batch_size": pipeline.batch_size,
        "shard": f"{options.shard.index}/{options.shard.count}",
        "environment": _environment(pipeline),
        "counts": {
            "images": len(mine),
            "skipped_complete": skipped,
            "processed": processed,
            "failed": failed,
        },
        "timing": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": round(seconds, 3),
            "images_per_second": round(summary.images_per_second, 3),
        },
        "failures_file": str(failures_path.relative_to(options.out)),
    }
    atomic_write_json(options.out / f"manifest{options.shard.suffix}.json", manifest)
    if options.evaluate and dataset.has_gt:
        finished = spec.complete_ids(ids)
        missing = [image_id for image_id in ids if image_id not in finished]
        unreadable = read_failures(options.out)
        waiting = [image_id for image_id in missing if image_id not in unreadable]
        if waiting:
            logger.info("evaluation waits for %d images (other shards or --max-images)", len(waiting))
        else:
            if missing:
                logger.warning("%d unreadable images count as all-background predictions", len(missing))
            report = _evaluate(spec, dataset, options.out, count_missing=bool(missing))
            summary.miou, summary.report_table = float(report.miou), report.format_table()
            if options.shard.count > 1:
                _merge_shard_manifests(options.out, options.shard.count, float(report.miou))
    return summary


def _order_by_size(dataset: SegmentationDataset, ids: list[str]) -> list[str]:
    """``ids`` sorted by image size (height, width), then id; sizes from the dataset when it
    knows them (COCO annotations), else from the image headers (no decoding)."""
    from PIL import Image

    def size(image_id: str) -> tuple[int, int]:
        known = getattr(dataset, "image_size", None)
        if callable(known):
            height, width = known(image_id)
            return int(height), int(width)
        try:
            with Image.open(dataset.image_path(image_id)) as image:
                return image.height, image.width
        except (OSError, ValueError):
            return (0, 0)  # unreadable: decoding in the workers reports it

    return sorted(ids, key=lambda image_id: (*size(image_id), image_id))


def _plan_batches(
    ids: list[str],
    complete: set[str],
    skip: set[str],
    batch_size: int,
    max_images: int | None,
) -> tuple[list[list[str]], set[str]]:
    """Batches on a fixed grid over the shard's ids, and the ids that need outputs.

    A rerun after a kill runs the interrupted batch whole (writing only what is missing), so
    every image goes through the models in the same batch as in an uninterrupted run.
    """
    batches: list[list[str]] = []
    pending: set[str] = set()
    for start in range(0, len(ids), batch_size):
        grid = [image_id for image_id in ids[start : start + batch_size] if image_id not in skip]
        todo = [image_id for image_id in grid if image_id not in complete]
        if not todo:
            continue
        if max_images is not None and len(pending) + len(todo) > max_images:
            todo = todo[: max_images - len(pending)]
            grid = todo
        if grid:
            batches.append(grid)
            pending.update(todo)
        if max_images is not None and len(pending) >= max_images:
            break
    return batches, pending


def _load(
    dataset: SegmentationDataset, batches: list[list[str]], workers: int, show_progress: bool
) -> Iterator[list[dict[str, Any]]]:
    """Decode the planned batches in DataLoader workers, in order, with a progress bar."""
    if not batches:
        return
    from tqdm.auto import tqdm

    ids = [image_id for batch in batches for image_id in batch]
    positions, start = [], 0
    for batch in batches:
        positions.append(list(range(start, start + len(batch))))
        start += len(batch)
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(dataset, ids),
        batch_sampler=positions,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
    )
    interactive = sys.stderr.isatty()
    # on a terminal a live bar; in a log file (torchrun, slurm) a line every 30 s
    with tqdm(total=len(ids), unit="img", desc="samwsss", dynamic_ncols=interactive,
              mininterval=0.1 if interactive else 30.0, disable=not show_progress) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch))


def _merge_shard_manifests(out: Path, count: int, miou: float) -> None:
    """One ``manifest.json`` for a sharded run: every shard's manifest, summed counts, mIoU."""
    shards = []
    for index in range(count):
        path = out / f"manifest{Shard(index, count).suffix}.json"
        if path.is_file():
            shards.append(json.loads(path.read_text(encoding="utf-8")))
    totals: dict[str, int] = {}
    for manifest in shards:
        for key, value in manifest.get("counts", {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    atomic_write_json(
        out / "manifest.json",
        {
            "config": shards[0]["config"] if shards else None,
            "shards": count,
            "counts": totals,
            "miou": miou,
            "seconds_per_shard": [m.get("timing", {}).get("seconds") for m in shards],
            "shard_manifests": shards,
        },
    )


def _evaluate(spec: OutputSpec, dataset: SegmentationDataset, out: Path, count_missing: bool) -> Any:
    from samwsss.evaluation import evaluate_folder

    report = evaluate_folder(spec.mask_dir, dataset, missing="background" if count_missing else "error")
    report.to_json(out / "evaluation.json")
    report.plot(out / "evaluation_iou.png")
    return report
