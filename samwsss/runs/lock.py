"""One live process per shard of a run folder: the lock record, and the local lock.

Two runs writing into one ``--out`` at the same time would both do the same work (and log
every failure twice). A run therefore holds, for as long as it runs, the lock file
``<out>/.lock/shard-<i>-of-<n>.json`` of its shard (``shard-0-of-1.json`` unsharded),
which holds JSON naming it (:class:`LockHolder`): ``pid``, ``host``, ``started``,
``shard`` and ``command``.

* The file appears atomically with its content (written under a temporary name, then
  hard-linked into place, which fails when the name exists), and the holder keeps a POSIX
  record lock (``fcntl.lockf``) on it: the kernel drops that lock when the holder dies,
  however it dies, and forked children (DataLoader workers) do not inherit it.
* A second run of the same shard is refused with :class:`RunLockedError` naming the
  holder. A lock whose holder is dead -- same host, pid gone, record lock free -- is taken
  over with a warning (the run was killed before it could remove it). A lock written on
  another host is never taken over: this host cannot tell whether that run lives, so the
  message says to delete the file if it does not.
* Shards of one run (``--shard i/n``, torchrun ranks) share the folder: a run is refused
  only by a live lock of its own shard or of a different shard count (``0/1`` next to
  ``0/2``, say), whose images overlap its own (:func:`refuse_overlapping_runs`). An
  ``--overwrite`` run is unsharded, so it wipes a folder only once no other live lock is
  there.
* The lock is removed on a normal end, on an exception and on SIGTERM; only SIGKILL (or a
  power cut) leaves it behind, for the next run to take over.

A run folder on an object store (an fsspec ``--out``) holds a lease instead, renewed while
the run lives, with the same record and file names: :mod:`samwsss.runs.lease`.
:meth:`samwsss.runs.folder.RunFolder.hold` picks the kind from the folder.
"""

from __future__ import annotations

import contextlib
import errno
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
from typing import TYPE_CHECKING, TypeVar

from samwsss.atomic import make_temporary
from samwsss.pipeline.batching import Shard
from samwsss.storage import list_file_names

if TYPE_CHECKING:
    from upath import UPath

try:
    import fcntl
except ImportError:  # Windows: the pid rule alone decides
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Folder of the run locks (one ``shard-<i>-of-<n>.json`` per live shard).
LOCK_DIR = ".lock"
#: The name of a lock file in :data:`LOCK_DIR`: ``shard-<index>-of-<count>.json``.
LOCK_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")
#: How many times a lock that changes under us (released, replaced) is looked at again.
_ATTEMPTS = 5

#: A run folder's path type, kept by :func:`lock_path`.
FolderT = TypeVar("FolderT", Path, "UPath")


class RunConflictError(ValueError):
    """The output folder holds a different run; the message says how to proceed."""


class RunLockedError(RunConflictError):
    """Another live run holds the output folder (or a lock this host cannot check)."""


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

    @property
    def here(self) -> bool:
        """Whether the holder runs on this host (where its pid can be checked)."""
        return self.host == this_host()

    def dead_here(self) -> bool:
        """Whether the holder ran on this host and its process is gone."""
        return self.here and not pid_alive(self.pid)


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


class RunLock:
    """The held lock of one shard of a run folder; :meth:`release` removes it.

    Use :meth:`samwsss.runs.folder.RunFolder.hold` rather than this class directly.
    """

    def __init__(self, path: Path, fd: int, made_out: Path | None) -> None:
        self.path = path
        self._fd: int | None = fd
        self._made_out = made_out

    @classmethod
    def acquire(cls, out: Path, shard: Shard) -> RunLock:
        """Lock ``shard`` of ``out`` (creating the folder), taking over a dead run's lock.

        Raises:
            RunLockedError: a live run holds this shard, a live run of another shard count
                uses the folder, or a lock from another host is there.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise RunConflictError(f"{out} is a file: --out must be a folder")
        made_out = None if out.exists() else out
        path = lock_path(out, shard)
        record = own_record(shard)
        for _ in range(_ATTEMPTS):
            # (again each time: a shard that just finished removes the folder when empty)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _create(path, record)
            if fd is None:
                fd = _take_over(path, record)
            if fd is None:
                continue  # the lock changed while we looked: look again
            lock = cls(path, fd, made_out)
            try:
                refuse_overlapping_runs(out, shard, _live_holder)
            except BaseException:
                lock.release()
                raise
            return lock
        raise RunLockedError(
            f"could not lock {path}: it kept changing (other runs starting and stopping in "
            f"{out}?); try again"
        )

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the record lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        for empty in (self.path.parent, self._made_out):
            if empty is not None:
                with contextlib.suppress(OSError):  # not empty: other shards, outputs
                    empty.rmdir()


def _try_lock(fd: int) -> bool | None:
    """Take the record lock without waiting: ``True`` taken, ``False`` held by a live
    process, ``None`` when this file system (or platform) has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False
        return None  # ENOLCK, EINVAL, ...: locks not supported here
    return True


def _create(path: Path, record: bytes) -> int | None:
    """Create ``path`` holding ``record``, record-locked from the moment it appears; the
    open descriptor, or ``None`` when the file exists (or its folder vanished)."""
    try:
        fd, temporary = make_temporary(path)
    except FileNotFoundError:
        return None
    try:
        os.write(fd, record)
        os.fsync(fd)
        _try_lock(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError:  # no hard links on this file system: exclusive create instead
            os.close(fd)
            return _create_exclusive(path, record)
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _create_exclusive(path: Path, record: bytes) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    _try_lock(fd)
    os.write(fd, record)
    os.fsync(fd)
    return fd


def _read_holder(fd: int, tries: int) -> LockHolder | None:
    """The holder recorded in the open lock file (looked at ``tries`` times, a moment apart,
    while a taker may be rewriting it)."""
    holder = None
    for attempt in range(tries):
        if attempt:
            time.sleep(0.05)
        holder = LockHolder.parse(os.pread(fd, 1 << 16, 0).decode("utf-8", errors="replace"))
        if holder is not None:
            break
    return holder


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _take_over(path: Path, record: bytes) -> int | None:
    """Take over the existing lock ``path`` when its holder is dead.

    Returns:
        The open, record-locked descriptor of the taken-over file, or ``None`` when the file
        vanished or was replaced while we looked (look again).

    Raises:
        RunLockedError: the holder is alive, or on another host, or unknown.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        locked = _try_lock(fd)
        holder = _read_holder(fd, tries=1 if locked else 5)
        if not _same_file(fd, path):
            os.close(fd)
            return None
        if locked is False:
            raise RunLockedError(_held_message(path, holder))
        if holder is None:
            if locked is None:
                raise RunLockedError(
                    f"{path} exists but names no run: if no samwsss run is writing to "
                    f"{path.parent.parent}, delete {path} and run again"
                )
            logger.warning("taking over %s: it names no run and no process holds it", path)
        elif not holder.here:
            raise RunLockedError(_other_host_message(path, holder))
        elif not holder.dead_here():
            raise RunLockedError(_held_message(path, holder))
        else:
            logger.warning(
                "taking over the lock of a dead run: %s, killed before it could remove %s",
                holder.describe(),
                path,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        os.fsync(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _live_holder(path: Path) -> tuple[LockHolder, str] | None:
    """The run holding the lock file ``path`` unless it is gone, unreadable or (on this
    host) dead; a run on another host counts as live, with a note saying so."""
    try:
        with open(path, "rb") as handle:
            holder = _read_holder(handle.fileno(), tries=5)
    except FileNotFoundError:
        return None
    if holder is None or holder.dead_here():
        return None
    return holder, "" if holder.here else " (on another host: if it is dead, delete the file)"


def _held_message(path: Path, holder: LockHolder | None) -> str:
    out = path.parent.parent
    who = holder.describe() if holder is not None else "a live process (its record is unreadable)"
    return (
        f"{out} is in use by another samwsss run: {who} holds {path}. Two runs in one folder "
        "would both do its work: wait for it to finish, stop it, or choose another "
        f"--out (if that process is not a samwsss run, delete {path})"
    )


def _other_host_message(path: Path, holder: LockHolder) -> str:
    return (
        f"{path.parent.parent} is locked by a run on another host: {holder.describe()} holds "
        f"{path}. This host ({this_host()}) cannot tell whether that run is alive: if it is "
        f"dead, delete {path} and run again"
    )
