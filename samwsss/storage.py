"""Where runs read and write: local paths, or fsspec URLs (``s3://``, ``gs://``, ``hf://``,
``memory://``, ...).

A location is a :class:`pathlib.Path` when it is local (a plain path or a ``file://``
URL) and a :class:`upath.UPath` otherwise: both offer ``/``, ``name``, ``stem``,
``is_file``, ``read_bytes``, ``open`` and ``glob``, so code that reads datasets and run
folders works on either. What differs is here:

* object stores have no folders (a prefix exists only while an object is under it), no
  rename and no append: :func:`list_file_names` and :func:`is_folder` answer for an empty
  or missing prefix without raising, :func:`put_bytes` writes one object in one request
  (an object appears whole or not at all, as a renamed file does), and
  :func:`remove_tree` deletes a prefix;
* the file system of a URL comes from an optional package (``s3fs`` for ``s3://``,
  ``gcsfs`` for ``gs://``; ``huggingface_hub``, a dependency, for ``hf://``):
  :func:`as_path` says which one to install when it is missing.

Credentials come from each package's usual places (environment variables, config files,
instance metadata), on every machine that reads or writes.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Protocol, Union

if TYPE_CHECKING:
    from upath import UPath

#: A local path or a :class:`upath.UPath` on any fsspec file system.
AnyPath = Union[Path, "UPath"]

#: URL schemes that name the local file system.
_LOCAL_SCHEMES = ("file", "local")
#: The package each common scheme needs, for the error message.
_BACKENDS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hf": "huggingface_hub",
}


def is_url(location: object) -> bool:
    """Whether ``location`` is a string (or UPath) naming a non-local file system."""
    if isinstance(location, PurePath):
        return False
    text = str(location)
    if "://" not in text:
        return False
    return text.partition("://")[0].lower() not in _LOCAL_SCHEMES


def is_location(value: object) -> bool:
    """Whether ``value`` names a file: a string, an ``os.PathLike`` or a :class:`upath.UPath`."""
    if isinstance(value, (str, os.PathLike)):
        return True
    upath = sys.modules.get("upath")  # a UPath exists only once upath was imported
    return upath is not None and isinstance(value, upath.UPath)


def is_remote(path: AnyPath) -> bool:
    """Whether ``path`` lives on a non-local file system (not a :class:`pathlib.Path`)."""
    return not isinstance(path, PurePath)


def as_path(location: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """The path of ``location``: a :class:`~pathlib.Path` for a local path or ``file://``
    URL (``~`` expanded), a :class:`upath.UPath` for any other fsspec URL.

    Raises:
        ValueError: an unknown URL scheme, or the package its file system needs is not
            installed (the message names it).
    """
    if isinstance(location, PurePath):
        return Path(location)
    if not isinstance(location, str) and not is_url(location):
        return Path(os.fspath(location)).expanduser()  # type: ignore[arg-type]
    text = str(location)
    if "://" not in text:
        return Path(text).expanduser()
    scheme, _, rest = text.partition("://")
    if scheme.lower() in _LOCAL_SCHEMES:
        return Path(rest).expanduser()
    from upath import UPath

    try:
        path = UPath(text)
        path.fs  # noqa: B018 -- builds the file system now: a missing package fails here
    except ImportError as error:
        package = _BACKENDS.get(scheme.lower(), f"the fsspec implementation of {scheme}://")
        raise ValueError(
            f"{text}: reading or writing {scheme}:// needs {package}; install it (pip install "
            f"{package}) on every machine of the run"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"{text}: unknown storage scheme {scheme}:// ({error}); give a local path or a "
            "URL fsspec knows (s3://, gs://, hf://, memory://, ...)"
        ) from error
    return path


def describe(path: AnyPath) -> str:
    """How ``path`` is written in messages and run identities: a local path made absolute,
    a URL as it is."""
    if isinstance(path, Path):
        return str(path.resolve())
    return str(path)


def is_folder(path: AnyPath) -> bool:
    """Whether ``path`` is a folder (on an object store: a prefix with objects under it)."""
    try:
        return path.is_dir()
    except (FileNotFoundError, NotADirectoryError):
        return False


class FolderEntry(Protocol):
    """One entry of :func:`scan_folder`: an :class:`os.DirEntry` locally, a listed object
    or prefix remotely."""

    @property
    def name(self) -> str:
        """The entry's name (no folder part)."""

    def is_file(self) -> bool:
        """Whether the entry is a file (locally: symbolic links followed)."""

    def is_dir(self) -> bool:
        """Whether the entry is a folder (on an object store: a prefix)."""


@dataclass(frozen=True)
class _ListedEntry:
    """A remote listing entry: its name and the type the file system reported."""

    name: str
    kind: str

    def is_file(self) -> bool:
        return self.kind == "file"

    def is_dir(self) -> bool:
        return self.kind == "directory"


def scan_folder(folder: AnyPath) -> list[FolderEntry]:
    """The entries directly in ``folder`` (files and sub-folders), with one listing request.

    ``folder`` may be a local path or a remote location (:func:`as_path` of a URL). Locally
    the entries are :class:`os.DirEntry` objects, whose types are read lazily; remotely
    their types come with the listing, so nothing is asked per entry: a dataset folder
    holds tens of thousands of images.

    Raises:
        FileNotFoundError: ``folder`` does not exist (on an object store: no object is
            under the prefix).
        NotADirectoryError: ``folder`` is a file.
    """
    if isinstance(folder, Path):
        with os.scandir(folder) as local:
            return list(local)
    key = folder.path.rstrip("/")
    # a cached listing may predate objects other processes wrote (a run's outputs)
    folder.fs.invalidate_cache(folder.path)
    listed = folder.fs.ls(folder.path, detail=True)
    entries: list[FolderEntry] = []
    for item in listed:
        name = str(item["name"]).rstrip("/")
        if name == key:  # the folder itself (a folder marker), or the file ``folder`` is
            if item.get("type") == "file" and len(listed) == 1:
                raise NotADirectoryError(f"{folder} is a file, not a folder")
            continue
        entries.append(_ListedEntry(name.rsplit("/", 1)[-1], str(item.get("type", ""))))
    return entries


def list_file_names(folder: AnyPath) -> set[str]:
    """The names of the files directly in ``folder`` (empty when it does not exist), with
    one listing request (:func:`scan_folder`): a resumed run checks tens of thousands of
    outputs."""
    try:
        return {entry.name for entry in scan_folder(folder) if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def put_bytes(path: AnyPath, data: bytes) -> None:
    """Write ``data`` to the remote ``path`` as one object in one request (it appears whole
    or not at all; an existing object is replaced)."""
    if isinstance(path, Path):
        raise ValueError(f"put_bytes writes remote objects; {path} is local (use samwsss.atomic)")
    path.fs.pipe_file(path.path, data)


def remove_file(path: AnyPath) -> None:
    """Delete the file ``path`` if it exists."""
    if isinstance(path, Path):
        path.unlink(missing_ok=True)
        return
    try:
        path.fs.rm_file(path.path)
    except FileNotFoundError:
        pass


def remove_tree(folder: AnyPath) -> None:
    """Delete ``folder`` and everything under it, if it exists."""
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        folder.fs.rm(folder.path, recursive=True)
    except FileNotFoundError:
        pass


def open_binary(path: AnyPath, block_size: int | None = None) -> IO[bytes]:
    """Open ``path`` for reading bytes (a local file, or a buffered remote object).

    Args:
        block_size: bytes a remote read fetches at a time (default: the file system's, often
            megabytes); a small one when only a header is read (an image's size).
    """
    if isinstance(path, Path):
        return open(path, "rb")
    if block_size is not None:
        return path.open("rb", block_size=block_size)
    return path.open("rb")
