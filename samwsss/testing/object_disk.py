"""``objdisk://``: an object store on the local disk, for tests of runs whose ``--out`` is
an fsspec URL.

``memory://`` lives in one process, so a run forked and killed by a test, or a Ray
worker, cannot share it. ``objdisk:///tmp/x`` keeps objects as files under ``/tmp/x`` (any
process sees them) and behaves as an object store where it matters: a put
(``pipe_file``) makes the object appear whole, a folder emptied by a delete goes, and there
is no rename or move, so code that leans on them fails here as it would on S3.

Register it with :func:`register` (tests do; nothing in the package uses it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "objdisk"
#: Name prefix of a put's bytes before they appear as the object.
UPLOAD_PREFIX = ".objdisk-put-"


def _is_upload(name: str) -> bool:
    return name.rstrip("/").rsplit("/", 1)[-1].startswith(UPLOAD_PREFIX)


class ObjectDiskFileSystem(LocalFileSystem):
    """Local files behind object-store semantics: atomic puts, no rename."""

    protocol = (PROTOCOL,)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        text = str(path)
        if text.startswith(f"{PROTOCOL}://"):
            text = text[len(PROTOCOL) + 3 :]
        return super()._strip_protocol(text)

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    def pipe_file(self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Put one object: it appears whole (written beside, then moved into place; a put
        cut short leaves an :data:`UPLOAD_PREFIX` file that listings do not show, as an
        object store keeps an interrupted upload out of sight)."""
        target = self._strip_protocol(path)
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(value)
        os.rename(temporary, target)

    def ls(self, path: Any, detail: bool = False, **kwargs: Any) -> Any:
        """The listing, without uploads in progress (or cut short)."""
        listed = super().ls(path, detail=detail, **kwargs)
        name = (lambda item: item["name"]) if detail else (lambda item: item)
        return [item for item in listed if not _is_upload(str(name(item)))]

    def rm_file(self, path: Any) -> None:
        """Delete one object; like a prefix on an object store, a folder left empty goes."""
        target = self._strip_protocol(path)
        os.remove(target)
        with contextlib.suppress(OSError):  # stops at the first folder that is not empty
            os.removedirs(os.path.dirname(target))

    def mv(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("objdisk:// is an object store: it has no rename")

    rename = mv
    move = mv


def register() -> None:
    """Make ``objdisk://`` known to fsspec (and so to ``samwsss.storage.as_path``)."""
    import fsspec
    from upath.registry import register_implementation

    fsspec.register_implementation(PROTOCOL, ObjectDiskFileSystem, clobber=True)
    # the generic UPath (without this, upath warns that the scheme is not one it tested)
    register_implementation(PROTOCOL, "upath.core.UPath", clobber=True)
