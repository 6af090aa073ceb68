"""The end of a shard's run: its summary, its manifest, the merged manifest of a sharded
run, and the evaluation once every image of the dataset is done."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch

import samwsss
from samwsss.atomic import atomic_write_json
from samwsss.data.base import SegmentationDataset
from samwsss.evaluation import EvaluationReport, evaluate_folder
from samwsss.pipeline.batching import Shard
from samwsss.pipeline.pipeline import Pipeline
from samwsss.runs.failures import FAILURES_DIR, read_failures
from samwsss.runs.folder import RunFolder
from samwsss.runs.writers import OutputSpec
from samwsss.storage import AnyPath

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: counts, timing and (when evaluated) the mIoU.

    ``skipped``, ``processed`` and ``failed`` count this invocation; ``complete`` and
    ``failed_total`` describe the whole run in this folder so far (this shard's images):
    images with every output, and images recorded as failed that have none.
    """

    total: int
    skipped: int
    processed: int
    failed: int
    seconds: float
    complete: int = 0
    failed_total: int = 0
    miou: float | None = None
    report_table: str | None = None

    @property
    def images_per_second(self) -> float:
        """Processed images per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def write_manifest(
    pipeline: Pipeline,
    folder: RunFolder,
    identity: dict[str, Any],
    summary: RunSummary,
    started: float,
    engine: dict[str, Any] | None = None,
) -> None:
    """``manifest<shard suffix>.json`` of ``folder``'s shard: settings, environment (with
    the engine that ran the models: ``{"name": "local"}``, or the Ray actors' device and
    count), counts and timing."""
    env = environment(pipeline)
    if engine and "device" in engine:  # the models ran there, not in this process
        env["device"] = engine["device"]
        env.pop("gpu", None)
    manifest = {
        "config": identity,
        "batch_size": pipeline.batch_size,
        "shard": f"{folder.shard.index}/{folder.shard.count}",
        "environment": {**env, "engine": engine or {"name": "local"}},
        "counts": {  # the whole run in this folder (this shard's images)
            "images": summary.total,
            "complete": summary.complete,
            "failed": summary.failed_total,
            "remaining": summary.total - summary.complete - summary.failed_total,
        },
        "last_invocation": {
            "skipped_complete": summary.skipped,
            "processed": summary.processed,
            "failed": summary.failed,
        },
        "timing": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "seconds": round(summary.seconds, 3),
            "images_per_second": round(summary.images_per_second, 3),
        },
        "failures_file": f"{FAILURES_DIR}/{folder.failures_path.name}",
    }
    atomic_write_json(folder.path / f"manifest{folder.shard.suffix}.json", manifest)


def environment(pipeline: Pipeline) -> dict[str, Any]:
    """Versions, device, host and each stage's weights source."""
    import transformers  # heavy: only when a manifest is written

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
    info["models"] = {role: stage.source.to_dict() for role, stage in pipeline.stages.items()}
    return info


def evaluate_if_complete(
    spec: OutputSpec, dataset: SegmentationDataset, folder: RunFolder, summary: RunSummary
) -> None:
    """Evaluate the whole dataset once no image is left to any shard (unreadable images
    count as all background); fills ``summary.miou`` and ``summary.report_table``."""
    ids = list(dataset.ids)
    finished = spec.complete_ids(ids)
    missing = [image_id for image_id in ids if image_id not in finished]
    unreadable = read_failures(folder.path)
    waiting = [image_id for image_id in missing if image_id not in unreadable]
    if waiting:
        logger.info("evaluation waits for %d images (other shards or --max-images)", len(waiting))
        return
    if missing:
        logger.warning("%d unreadable images count as all-background predictions", len(missing))
    report = _evaluate(spec, dataset, folder.path, count_missing=bool(missing))
    summary.miou, summary.report_table = float(report.miou), report.format_table()
    if folder.shard.count > 1:
        merge_shard_manifests(folder.path, folder.shard.count, float(report.miou))


def merge_shard_manifests(out: AnyPath, count: int, miou: float) -> None:
    """One ``manifest.json`` for a sharded run: every shard's manifest, summed counts, mIoU."""
    shards = []
    for index in range(count):
        path = out / f"manifest{Shard(index, count).suffix}.json"
        if path.is_file():
            shards.append(json.loads(path.read_text(encoding="utf-8")))
    totals: dict[str, dict[str, int]] = {"counts": {}, "last_invocation": {}}
    for manifest in shards:
        for section, sums in totals.items():
            for key, value in manifest.get(section, {}).items():
                sums[key] = sums.get(key, 0) + int(value)
    atomic_write_json(
        out / "manifest.json",
        {
            "config": shards[0]["config"] if shards else None,
            "shards": count,
            **totals,
            "miou": miou,
            "seconds_per_shard": [m.get("timing", {}).get("seconds") for m in shards],
            "shard_manifests": shards,
        },
    )


def _evaluate(
    spec: OutputSpec, dataset: SegmentationDataset, out: AnyPath, count_missing: bool
) -> EvaluationReport:
    report = evaluate_folder(
        spec.mask_dir, dataset, missing="background" if count_missing else "error"
    )
    report.to_json(out / "evaluation.json")
    report.plot(out / "evaluation_iou.png")
    return report
