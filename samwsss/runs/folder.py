"""A folder one run owns (:class:`RunFolder`): identified by the settings that make the run,
resumed from what exists, locked while the run lives; and the one check that an output
folder can be written (:func:`check_writable`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from samwsss.atomic import TEMP_PREFIX, atomic_write_json, atomic_write_text
from samwsss.pipeline.batching import Shard
from samwsss.runs.failures import FAILURES_DIR
from samwsss.runs.lease import ObjectStoreLock
from samwsss.runs.lock import LOCK_DIR, RunConflictError, RunLock
from samwsss.storage import AnyPath, as_path, is_folder, put_bytes, remove_file

#: The identity file of a labelling run (the settings, as YAML).
CONFIG_FILE = "config.yaml"


class OutputFolderError(ValueError):
    """The run's output folder cannot be created or written to."""


def check_writable(out: AnyPath, name: str = "--out") -> None:
    """Check, creating nothing, that a run can write in ``out``: an existing local folder by
    making and deleting a temporary file in it, a missing one by its nearest existing
    parent (a folder this process may write in); on an object store by putting and
    deleting a small probe object (which also checks the credentials).

    Args:
        name: the option, for the message (``"--out"``).

    Raises:
        OutputFolderError: ``cannot write the output folder OUT``, with why (a file, below
            a file, not writable, the OS error) and what to do.
    """
    problem = f"cannot write the output folder {out}"
    fix = f"choose another {name}, or make that folder writable"
    try:
        if not isinstance(out, Path):
            probe = out / f".write-check-{uuid.uuid4().hex}"
            put_bytes(probe, b"")
            remove_file(probe)
        elif out.exists():
            if not out.is_dir():
                raise OutputFolderError(f"{problem}: it is a file; choose another {name}")
            tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-").close()
        else:
            parent = out.absolute().parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise OutputFolderError(
                    f"{problem}: {parent} is a file, not a folder; choose another {name}"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputFolderError(f"{problem}: {parent} is not writable; {fix}")
    except OSError as error:
        raise OutputFolderError(f"{problem} ({type(error).__name__}: {error}); {fix}") from error


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"what: folder X, now Y"`` for every setting that differs between two identities
    (nested sections flattened: ``"pipeline box_threshold: folder 0.3, now 0.35"``)."""
    old, new = _flat(saved), _flat(current)
    return [
        f"{key}: folder {old.get(key)}, now {new.get(key)}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key} "))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class RunFolder:
    """The folder one run owns, as one shard of the run sees it.

    A run is identified by its settings, saved in the folder's identity file: the same
    identity resumes what exists, a different one is refused (:meth:`claim`). While the
    run lives it holds its shard's lock (:meth:`hold`).

    Args:
        path: the folder: a local path, or an fsspec location (``s3://bucket/run``, see
            :mod:`samwsss.storage`).
        shard: the part of the run this process does (its lock, its failure log;
            default: unsharded).
        identity_name: the identity file: ``config.yaml`` (saved as YAML, a labelling
            run's) or a ``.json`` file (predict's ``prediction_identity.json``).
        differences: ``(saved, current) -> ["what: folder X, now Y", ...]``, empty when the
            two identities make the same run (default :func:`identity_differences`).
        resumable: the run has ``--resume`` (continue a different run's folder with new
            settings); the messages offer it.
    """

    def __init__(
        self,
        path: AnyPath | str,
        shard: Shard | None = None,
        identity_name: str = CONFIG_FILE,
        differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] = (
            identity_differences
        ),
        resumable: bool = True,
    ) -> None:
        self.path = as_path(path)
        self.shard = shard or Shard()
        self.identity_name = identity_name
        self.differences = differences
        self.resumable = resumable

    @property
    def failures_path(self) -> AnyPath:
        """This shard's failure log: ``failures/failures<shard suffix>.jsonl``."""
        return self.path / FAILURES_DIR / f"failures{self.shard.suffix}.jsonl"

    def claim(
        self,
        identity: dict[str, Any],
        *,
        overwrite: bool = False,
        resume: bool = False,
        found: Callable[[], list[str]] | None = None,
        clear: Callable[[], None] | None = None,
    ) -> None:
        """Make the folder this run's: save ``identity`` in it (atomically), unless the
        saved identity is the same run's (then it is kept as it is, and the run resumes).

        * A different run's folder (its identity differs, or is unreadable) is refused
          unless ``overwrite`` (``clear()`` deletes that run's outputs first) or ``resume``
          (go on with the new settings).
        * A folder without an identity file is refused while ``found()`` names files in it
          (default: any entry but the locks), unless ``overwrite`` or ``resume``.

        The caller holds this shard's lock (:meth:`hold`).

        Raises:
            RunConflictError: the folder holds another run or other files; the message
                names what differs (or the files) and what to pass.
        """
        path = self.path / self.identity_name
        if path.is_file():
            differences = self._differences(path, identity)
            if not differences:
                return
            if overwrite and clear is not None:
                clear()
            elif not (overwrite or resume):
                also = ", or --resume to go on with the new settings" if self.resumable else ""
                raise RunConflictError(
                    f"{self.path} holds a different run ({'; '.join(differences)}): choose "
                    f"another --out, or pass --overwrite to delete its outputs{also}"
                )
        else:
            entries = found() if found is not None else self._entries()
            if entries and not (overwrite or resume):
                raise RunConflictError(
                    f"{self.path} is not empty ({', '.join(entries[:3])}"
                    f"{' ...' if len(entries) > 3 else ''}) but holds no samwsss run (no "
                    f"{self.identity_name}): choose an empty or new --out folder, or pass "
                    f"--overwrite{' / --resume' if self.resumable else ''}"
                )
        if isinstance(self.path, Path):  # an object store has no folders to make
            self.path.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            atomic_write_json(path, identity)
        else:
            atomic_write_text(path, yaml.safe_dump(identity, sort_keys=False))

    def _differences(self, path: AnyPath, identity: dict[str, Any]) -> list[str]:
        """What differs between the identity saved at ``path`` and ``identity``."""
        try:
            text = path.read_text(encoding="utf-8")
            saved = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            return [f"its {self.identity_name} is unreadable: {error}"]
        if not isinstance(saved, dict):
            return [f"its {self.identity_name} holds no settings"]
        return self.differences(saved, identity)

    def _entries(self) -> list[str]:
        """The names in the folder besides the run locks and the identity file's temporary
        (another shard of the run saving the same identity this moment; none when the
        folder does not exist)."""
        if not is_folder(self.path):
            return []
        saving = TEMP_PREFIX + self.identity_name
        return sorted(
            entry.name
            for entry in self.path.iterdir()
            if entry.name != LOCK_DIR and not entry.name.startswith(saving)
        )

    def remove_temporaries(self, folders: Iterable[str], own_ids: set[str]) -> None:
        """Delete the ``.tmp-*`` leftovers of ``<id>.<ext>`` files of ``own_ids`` in the
        subfolders ``folders`` (other shards' images may be being written). An fsspec
        location has none: each output is written as one object."""
        if not isinstance(self.path, Path):
            return
        for sub in folders:
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for stale in folder.glob(TEMP_PREFIX + "*"):
                final_name = stale.name[len(TEMP_PREFIX) :].rsplit(".", 1)[0]
                if Path(final_name).stem in own_ids:
                    stale.unlink(missing_ok=True)

    def lock(self) -> RunLock | ObjectStoreLock:
        """Take this shard's lock (release it with ``release()``): a local folder's
        :class:`~samwsss.runs.lock.RunLock` (the folder made if missing), or on an object
        store a renewed lease (:class:`~samwsss.runs.lease.ObjectStoreLock`).

        Raises:
            RunLockedError: a live run holds this shard or uses the folder with another
                shard count, or a lock this host cannot check is there.
        """
        if isinstance(self.path, Path):
            return RunLock.acquire(self.path, self.shard)
        return ObjectStoreLock.acquire(self.path, self.shard)

    def check_lock(self) -> None:
        """Raise the ``RunLockedError`` :meth:`lock` would raise, now (before minutes of
        loading models); on an object store this only reads the locks."""
        if isinstance(self.path, Path):
            RunLock.acquire(self.path, self.shard).release()
        else:
            ObjectStoreLock.check(self.path, self.shard)

    @contextlib.contextmanager
    def hold(self) -> Iterator[RunLock | ObjectStoreLock]:
        """Hold this shard's lock (:meth:`lock`) for the block; it is removed however the
        block ends (SIGTERM, in the main thread, ends it with ``SystemExit(143)``)."""
        lock = self.lock()
        try:
            with _sigterm_exits():
                yield lock
        finally:
            lock.release()


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While the block runs in the main thread and SIGTERM has its default action, SIGTERM
    raises ``SystemExit(143)`` there, so that ``finally`` blocks (the lock's release) run."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    owner = os.getpid()

    def terminate(signum: int, frame: FrameType | None) -> Any:
        if os.getpid() != owner:  # a forked child (DataLoader worker): die as before
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
