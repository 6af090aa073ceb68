"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash at any point leaves either the old file or the complete new file, never a
half-written one. Temporary files start with ``.tmp-`` so resumable runs can sweep them.

On an fsspec location (:mod:`samwsss.storage`; object stores have no rename) the data is
buffered in memory and written as one object in one request, which also appears whole or
not at all, and leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

from samwsss import storage

if TYPE_CHECKING:
    from upath import UPath

#: Where atomic writes go: a local path, or a :class:`upath.UPath` (see samwsss.storage).
Target = Union[str, "os.PathLike[str]", "UPath"]

TEMP_PREFIX = ".tmp-"

_UMASK_LOCK = threading.Lock()


@functools.cache
def _process_umask() -> int:
    """The process umask, read once (Linux: from /proc without changing it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give a new file: ``0o666``
    less the umask (``0o644`` under the usual umask 022)."""
    return 0o666 & ~_process_umask()


def make_temporary(target: Path) -> tuple[int, str]:
    """A new temporary file beside ``target`` (``.tmp-<name>.<random>``), readable as a
    plain new file would be (:func:`new_file_mode`; ``mkstemp`` alone gives ``0o600``).

    Returns:
        ``(descriptor, path)`` of the open temporary; the caller renames or removes it.
    """
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".", dir=target.parent)
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, name


@contextlib.contextmanager
def atomic_open(path: Target, mode: str = "wb", fsync: bool = True) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears only once fully written.

    Args:
        path: final destination; its parent folder is created if missing. A remote
            location (:func:`samwsss.storage.as_path` of a URL) is written as one object.
        mode: ``"wb"`` or ``"w"``.
        fsync: also force the data to disk before the rename (survives a power cut, not
            just a killed process); per-image outputs skip it for speed.

    Yields:
        A file object on a temporary file beside ``path``; on normal exit it is flushed,
        (fsynced) and renamed over ``path``; on an exception it is removed.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    if storage.is_remote(path):  # type: ignore[arg-type]
        with _object_open(path, mode) as handle:
            yield handle
        return
    target = Path(path)  # type: ignore[arg-type]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = make_temporary(target)
    encoding = "utf-8" if mode == "w" else None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def _object_open(path: Any, mode: str) -> Iterator[IO[Any]]:
    """Buffer the writes in memory; put them as one object when the block ends normally."""
    buffer: io.BytesIO | io.StringIO = io.BytesIO() if mode == "wb" else io.StringIO()
    yield buffer
    data = buffer.getvalue()
    storage.put_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))


def atomic_write_bytes(path: Target, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(path: Target, text: str, fsync: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", fsync=fsync) as handle:
        handle.write(text)


def atomic_write_json(path: Target, obj: Any, indent: int | None = 2, fsync: bool = True) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n", fsync=fsync)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete leftover ``.tmp-*`` files (from a killed run) under ``folder``; return the count."""
    count = 0
    root = Path(folder)
    if not root.is_dir():
        return 0
    for stale in root.rglob(TEMP_PREFIX + "*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            count += 1
    return count
