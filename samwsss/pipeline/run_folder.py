"""A run's output folder: its identity, the check that it holds this run, its leftovers,
its failure log, and what its two kinds of run lock share (:mod:`~samwsss.pipeline.run_lock`
for a local folder, :mod:`~samwsss.pipeline.object_lock` on an object store): the lock
files' names and record, and the rule that runs of different shard counts never share it."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import yaml

from samwsss.atomic import TEMP_PREFIX, atomic_write_text
from samwsss.pipeline.batching import Shard
from samwsss.pipeline.config import RunOptions
from samwsss.pipeline.writers import INSTANCES_DIR, MASKS_DIR, OVERLAYS_DIR, PLAIN_DIR
from samwsss.storage import (
    AnyPath,
    is_folder,
    list_file_names,
    put_bytes,
    remove_file,
    remove_tree,
)

if TYPE_CHECKING:
    from upath import UPath

    from samwsss.pipeline.pipeline import Pipeline

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
#: Folder of the failure logs (one ``failures<shard suffix>.jsonl`` per shard).
FAILURES_DIR = "failures"
#: Folder of the run locks (one ``shard-<i>-of-<n>.json`` per live shard; see run_lock).
LOCK_DIR = ".lock"
#: The name of a lock file in :data:`LOCK_DIR`: ``shard-<index>-of-<count>.json``.
LOCK_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")

#: A run folder's path type, kept by :func:`lock_path`.
FolderT = TypeVar("FolderT", Path, "UPath")


class RunConflictError(ValueError):
    """The output folder holds a different run; the message says how to proceed."""


class RunLockedError(RunConflictError):
    """Another live run holds the output folder (or a lock this host cannot check)."""


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
                    remove_tree(out / name)
                for name in list_file_names(out):
                    if (
                        name.startswith("manifest")
                        and name.endswith(".json")
                        or name
                        in (
                            "evaluation.json",
                            "evaluation_iou.png",
                        )
                    ):
                        remove_file(out / name)
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
    if isinstance(out, Path):  # an object store has no folders to make
        out.mkdir(parents=True, exist_ok=True)
    remove_own_temporaries(out, own_ids)
    atomic_write_text(config_path, yaml.safe_dump(identity, sort_keys=False))


def _entries(out: AnyPath) -> list[str]:
    """The names in ``out`` besides the run locks (none when it does not exist)."""
    if not is_folder(out):
        return []
    return sorted(entry.name for entry in out.iterdir() if entry.name != LOCK_DIR)


def remove_own_temporaries(out: AnyPath, own_ids: set[str]) -> None:
    """Delete ``.tmp-*`` leftovers of this shard's images only (other shards may be writing).

    An fsspec location has none: each output is written as one object.
    """
    if not isinstance(out, Path):
        return
    for sub in (MASKS_DIR, PLAIN_DIR, INSTANCES_DIR, OVERLAYS_DIR):
        folder = out / sub
        if not folder.is_dir():
            continue
        for stale in folder.glob(TEMP_PREFIX + "*"):
            final_name = stale.name[len(TEMP_PREFIX) :].rsplit(".", 1)[0]
            if Path(final_name).stem in own_ids:
                stale.unlink(missing_ok=True)


def read_failures(out: AnyPath) -> dict[str, str]:
    """``{image id: reason}`` from every shard's failures file (a torn last line is ignored)."""
    failed: dict[str, str] = {}
    folder = out / FAILURES_DIR
    for name in sorted(list_file_names(folder)):
        if not (name.startswith("failures") and name.endswith(".jsonl")):
            continue
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "image_id" in record:
                failed[str(record["image_id"])] = str(record.get("reason", ""))
    return failed


class FailureLog:
    """Appends ``{"image_id", "reason"}`` lines to this shard's failure log as they happen.

    On an fsspec location (object stores cannot append) the log is kept in memory and the
    whole object is put again after each line: one request per unreadable image, each
    leaving a complete log behind.

    Args:
        path: the shard's ``failures*.jsonl`` (its folder is created).
    """

    def __init__(self, path: AnyPath) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] | None = None
        self._lines: list[str] = []
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")
        elif path.is_file():
            self._lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            if self._lines and not self._lines[-1].endswith("\n"):
                self._lines.pop()  # a torn last line (read_failures ignores it too)

    def record(self, image_id: str, reason: str) -> None:
        """Log one unreadable image (written at once, so a kill loses nothing)."""
        line = json.dumps({"image_id": image_id, "reason": reason}) + "\n"
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        else:
            self._lines.append(line)
            put_bytes(self.path, "".join(self._lines).encode("utf-8"))
        self.count += 1
        logger.warning("skipped %s", reason)

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()


# What the two run locks share (the locks themselves: run_lock, object_lock).


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the run holding it."""

    pid: int
    host: str
    started: str
    shard: str
    command: str

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder written in ``text``, or ``None`` when it is not a lock record."""
        try:
            record = json.loads(text)
            return cls(
                pid=int(record["pid"]),
                host=str(record["host"]),
                started=str(record.get("started", "?")),
                shard=str(record.get("shard", "?")),
                command=str(record.get("command", "?")),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        """``pid 12 on host h (shard 0/1, running since ..., command: ...)``."""
        return (
            f"pid {self.pid} on host {self.host} (shard {self.shard}, running since "
            f"{self.started}, command: {self.command})"
        )


def lock_path(out: FolderT, shard: Shard) -> FolderT:
    """The lock file of ``shard`` of the run folder ``out`` (local, or on an object store)."""
    return out / LOCK_DIR / f"shard-{shard.index}-of-{shard.count}.json"


def this_host() -> str:
    """The name lock files record (``socket.gethostname()``)."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not; where this cannot be
    checked, it counts as alive)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # "pid (comm) state ...": comm may hold spaces and ")", the state follows the last ")"
    return stat[stat.rfind(")") + 1 :].split()[:1] != ["Z"]


def own_record(shard: Shard) -> bytes:
    """The lock record of this process running ``shard`` (JSON: ``pid``, ``host``,
    ``started``, ``shard``, ``command``), as written into a new lock file."""
    record = {
        "pid": os.getpid(),
        "host": this_host(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "shard": f"{shard.index}/{shard.count}",
        "command": shlex.join(sys.argv),
    }
    return (json.dumps(record, indent=2) + "\n").encode("utf-8")


def refuse_overlapping_runs(
    out: FolderT, shard: Shard, live_holder: Callable[[FolderT], tuple[LockHolder, str] | None]
) -> None:
    """Raise :class:`RunLockedError` if a live run of another shard count uses ``out`` (its
    images overlap ours); shards ``i/n`` and ``j/n`` of one run share the folder.
    ``live_holder(lock file)`` is the lock kind's reading: the live run holding it and a
    note for the message, or ``None`` (no live run: released meanwhile, dead, expired)."""
    folder = out / LOCK_DIR
    for name in sorted(list_file_names(folder)):
        match = LOCK_NAME.fullmatch(name)
        if match is None or int(match.group(2)) == shard.count:
            continue
        found = live_holder(folder / name)
        if found is None:
            continue
        holder, note = found
        raise RunLockedError(
            f"{out} is in use by another run: {holder.describe()} holds {folder / name}{note}. "
            f"This run (shard {shard.index}/{shard.count}) would process some of its images "
            "again; shards of one run share a folder only with the same count (--shard i/N). "
            "Wait for it to finish, stop it, or choose another --out"
        )
