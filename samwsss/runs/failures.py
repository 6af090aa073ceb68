"""A run's failure log: the images it could not read, one JSON line each, per shard
(``failures/failures<shard suffix>.jsonl``), so that a resumed run skips them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from samwsss.storage import AnyPath, list_file_names, put_bytes

logger = logging.getLogger(__name__)

#: Folder of the failure logs (one ``failures<shard suffix>.jsonl`` per shard).
FAILURES_DIR = "failures"


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
