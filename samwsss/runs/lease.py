"""The run lock of a run folder on an object store (``s3://``, ``gs://``, ... outputs).

Object stores have no record locks, no hard links and no process ids that another machine
could check, so the local lock of :mod:`samwsss.runs.lock` becomes a lease:

* The lock is the object ``<out>/.lock/shard-<i>-of-<n>.json`` with the local lock's
  fields plus ``token`` (unique to this run) and ``renewed`` (seconds since the epoch). A
  thread of the holder writes it again every :data:`RENEW_SECONDS`.
* A lock is live while it was renewed less than :data:`LEASE_SECONDS` ago. A live lock
  refuses the run with :class:`~samwsss.runs.lock.RunLockedError`, as a local one
  does; a lease that ran out (its run was killed, or lost its connection) is taken over
  with a warning, whatever host wrote it. On the holder's own host a dead pid frees the
  lock at once, as locally.
* Creating the lock is put-then-read-back: an object store offers no portable
  create-if-absent, so two runs starting within the same second could both put. The
  later put wins and the read back, a moment later, tells the earlier run that it lost
  (it stops with ``RunLockedError``). This is advisory locking: it stops the usual
  mistake (the same command started twice), not a deliberate race.
* The lock is removed when the run ends, however it ends short of SIGKILL; after a
  SIGKILL the lease runs out and the next run takes over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samwsss.pipeline.batching import Shard
from samwsss.runs.lock import (
    LockHolder,
    RunLockedError,
    lock_path,
    own_record,
    refuse_overlapping_runs,
)
from samwsss.storage import AnyPath, put_bytes, remove_file

if TYPE_CHECKING:
    from upath import UPath

logger = logging.getLogger(__name__)

#: A lock not renewed for this many seconds is stale (its run is gone).
LEASE_SECONDS = 300.0
#: How often the holder renews its lock.
RENEW_SECONDS = 60.0
#: How long after its put a new lock is read back to check that no other run put one.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class LeaseRecord:
    """What a lock object holds."""

    holder: LockHolder
    token: str
    renewed: float

    @classmethod
    def parse(cls, text: str) -> LeaseRecord | None:
        """The record in ``text``, or ``None`` when it is not a lock record."""
        holder = LockHolder.parse(text)
        if holder is None:
            return None
        try:
            record = json.loads(text)
            return cls(holder, str(record.get("token", "")), float(record.get("renewed", 0.0)))
        except (ValueError, TypeError, AttributeError):
            return None

    def age(self) -> float:
        """Seconds since the holder last renewed the lock."""
        return max(0.0, time.time() - self.renewed)

    def is_live(self) -> bool:
        """Whether the holder may still run: renewed within the lease, and (on this host)
        its process alive."""
        return not self.holder.dead_here() and self.age() < LEASE_SECONDS


class ObjectStoreLock:
    """The held lease of one shard of a run folder on an object store; :meth:`release`
    removes it. Use :meth:`samwsss.runs.folder.RunFolder.hold`, which picks this class
    for a remote folder."""

    def __init__(self, path: AnyPath, record: dict[str, Any]) -> None:
        self.path = path
        self._record = record
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_until_released, name="samwsss-lock-renewal", daemon=True
        )
        self._released = False

    @staticmethod
    def check(out: UPath, shard: Shard) -> None:
        """Refuse now, writing nothing, what :meth:`acquire` would refuse for a live run.

        Raises:
            RunLockedError: a live run holds this shard or uses another shard count.
        """
        path = lock_path(out, shard)
        existing = _read(path)
        if existing is not None and existing.is_live():
            raise RunLockedError(_live_message(path, existing))
        refuse_overlapping_runs(out, shard, _live_holder)

    @classmethod
    def acquire(cls, out: UPath, shard: Shard) -> ObjectStoreLock:
        """Lease ``shard`` of ``out``, taking over a lease that ran out.

        Raises:
            RunLockedError: a live run holds this shard or uses the folder with another
                shard count, or another run put its lock at the same moment.
        """
        path = lock_path(out, shard)
        existing = _read(path)
        if existing is not None:
            if existing.is_live():
                raise RunLockedError(_live_message(path, existing))
            logger.warning(
                "taking over the lock of a finished or dead run: %s, last renewed %.0f s ago "
                "(lease %.0f s)",
                existing.holder.describe(),
                existing.age(),
                LEASE_SECONDS,
            )
        record = json.loads(own_record(shard))
        record["token"] = uuid.uuid4().hex
        lock = cls(path, record)
        lock._put()
        _settle()
        current = _read(path)
        if current is None or current.token != record["token"]:
            who = current.holder.describe() if current is not None else "a run that removed it"
            raise RunLockedError(
                f"{out}: another run took the lock {path} as this one started ({who}); two "
                "runs in one folder would both process every image: wait for it, stop it, or "
                "choose another --out"
            )
        try:
            refuse_overlapping_runs(out, shard, _live_holder)
        except BaseException:
            lock.release()
            raise
        lock._renewer.start()
        return lock

    def _put(self) -> None:
        self._record["renewed"] = time.time()
        put_bytes(self.path, (json.dumps(self._record, indent=2) + "\n").encode("utf-8"))

    def _renew_until_released(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                current = _read(self.path)
                if current is not None and current.token != self._record["token"]:
                    logger.error(
                        "the run lock %s was taken over by %s (this run's lease ran out); "
                        "two runs now write to one folder: stop one of them",
                        self.path,
                        current.holder.describe(),
                    )
                    return
                self._put()
            except (OSError, ValueError, RuntimeError) as error:  # the run goes on
                logger.warning("could not renew the run lock %s: %s", self.path, error)

    def release(self) -> None:
        """Stop renewing and remove the lock object if it is still this run's."""
        if self._released:
            return
        self._released = True
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join(timeout=10)
        with contextlib.suppress(OSError):
            current = _read(self.path)
            if current is not None and current.token == self._record["token"]:
                remove_file(self.path)


def _settle() -> None:
    """Wait for a put of another run starting at the same moment to land."""
    time.sleep(SETTLE_SECONDS)


def _read(path: AnyPath) -> LeaseRecord | None:
    """The lock record at ``path`` (``None`` when there is none; an unreadable object
    counts as a stale lease with no renewal time)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    record = LeaseRecord.parse(text)
    if record is None:
        unknown = LockHolder(pid=-1, host="?", started="?", shard="?", command="?")
        return LeaseRecord(unknown, token="", renewed=0.0)
    return record


def _live_message(path: AnyPath, record: LeaseRecord) -> str:
    return (
        f"{path.parent.parent} is in use by another samwsss run: {record.holder.describe()} "
        f"holds {path}, renewed {record.age():.0f} s ago. Two runs in one folder would both "
        f"process every image: wait for it to finish or stop it (a stopped run's lock frees "
        f"itself {LEASE_SECONDS:.0f} s after its last renewal), or choose another --out"
    )


def _live_holder(path: AnyPath) -> tuple[LockHolder, str] | None:
    """The run holding the lease ``path`` while it is live (on any host)."""
    record = _read(path)
    if record is None or not record.is_live():
        return None
    return record.holder, ""
