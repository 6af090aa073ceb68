"""A run's output folder: its identity, the check that it holds this run, its leftovers
and its failure log."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from samwsss.atomic import TEMP_PREFIX, atomic_write_text
from samwsss.pipeline.writers import INSTANCES_DIR, MASKS_DIR, OVERLAYS_DIR, PLAIN_DIR

if TYPE_CHECKING:
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.pipeline.runner import RunOptions

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
#: Folder of the failure logs (one ``failures<shard suffix>.jsonl`` per shard).
FAILURES_DIR = "failures"
#: Folder of the run locks (one ``shard-<i>-of-<n>.json`` per live shard; see run_lock).
LOCK_DIR = ".lock"


class RunConflictError(ValueError):
    """The output folder holds a different run; the message says how to proceed."""


def run_identity(pipeline: Pipeline, options: RunOptions, data: dict[str, Any]) -> dict[str, Any]:
    """What makes a run this run: route, data, pipeline settings (not the batch size, which
    changes speed, not outputs) and the outputs asked for."""
    config = pipeline.config.to_dict() if pipeline.config is not None else {}
    # batch size changes speed, not outputs: keep it out of the identity
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


def prepare_folder(options: RunOptions, identity: dict[str, Any], own_ids: set[str]) -> None:
    """Make ``options.out`` ready for this run: refuse a different run's folder (unless
    ``overwrite``/``resume``), delete this shard's temporaries, save the identity.

    The caller holds this shard's run lock (:func:`samwsss.pipeline.run_lock.hold_run_lock`):
    no other live shard uses the folder when an unsharded ``overwrite`` wipes it.

    Raises:
        RunConflictError: the folder holds another run or other files.
    """
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
                for name in (MASKS_DIR, PLAIN_DIR, INSTANCES_DIR, OVERLAYS_DIR, FAILURES_DIR):
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
    elif _entries(out) and not (options.overwrite or options.resume):
        entries = _entries(out)[:5]
        raise RunConflictError(
            f"{out} is not empty and holds no samwsss run ({', '.join(entries)} ...): "
            "choose an empty or new --out folder, or pass --overwrite / --resume"
        )
    out.mkdir(parents=True, exist_ok=True)
    remove_own_temporaries(out, own_ids)
    atomic_write_text(config_path, yaml.safe_dump(identity, sort_keys=False))


def _entries(out: Path) -> list[str]:
    """The names in ``out`` besides the run locks (none when it does not exist)."""
    if not out.is_dir():
        return []
    return sorted(entry.name for entry in out.iterdir() if entry.name != LOCK_DIR)


def remove_own_temporaries(out: Path, own_ids: set[str]) -> None:
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
    for path in sorted((out / FAILURES_DIR).glob("failures*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "image_id" in record:
                failed[str(record["image_id"])] = str(record.get("reason", ""))
    return failed


class FailureLog:
    """Appends ``{"image_id", "reason"}`` lines to this shard's failure log as they happen.

    Args:
        path: the shard's ``failures*.jsonl`` (its folder is created).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.count = 0
        self._file = open(path, "a", encoding="utf-8")

    def record(self, image_id: str, reason: str) -> None:
        """Log one unreadable image (flushed at once, so a kill loses nothing)."""
        self._file.write(json.dumps({"image_id": image_id, "reason": reason}) + "\n")
        self._file.flush()
        self.count += 1
        logger.warning("skipped %s", reason)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
