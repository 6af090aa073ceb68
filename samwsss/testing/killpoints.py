"""Kill points: stop a dataset run dead at a fixed point of its work, for the resume tests.

A run is killed by a count of events, not by a timer, so the same setting,
``SAMWSSS_TEST_KILL_AT="<event>:<n>[:<signal>]"``, stops it at the same place every time.
The tests call :func:`install_from_env` before the CLI, in a forked child or a fresh
interpreter (``tests/forked_runs.py``); this module imports no CLI code.

``event`` is one of :data:`EVENTS`, counted from 1 over the process:

* ``failure`` -- right after the n-th unreadable image is logged (its line flushed);
* ``batch`` -- right after the pipeline returns the n-th batch, before any of its outputs
  is queued for writing;
* ``temp`` -- when the n-th per-image output file is fully written under its temporary
  name, before the rename that publishes it (a ``.tmp-*`` file is left behind); on an
  fsspec ``--out``, just before the put of the n-th per-image object;
* ``commit`` -- right after the n-th per-image output file is renamed into place (or put);
* ``image`` -- right after the n-th palette mask (``masks/<id>.png``, the last file written
  for an image) is renamed into place: n images are complete, and the batch of the last
  may hold an image that is not (the writer threads write two images at once).

``signal`` is ``KILL`` (default: the run dies with no chance to clean up, like a lost node
or the OOM killer) or ``STOP`` (it freezes, holding its lock, until it gets SIGCONT). When
``SAMWSSS_TEST_KILL_CHILDREN`` names a file, the pids of the process's children (DataLoader
workers) are written there, one a line, just before the signal.

Nothing in the package reads these variables: :func:`install` wraps, in the running
process only, the functions where the events happen (``os.replace`` as the atomic writes
use it, ``samwsss.storage.put_bytes`` for fsspec outputs, ``Pipeline.run_arrays``,
``FailureLog.record``). An unset variable installs nothing,
so runs pay nothing.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import samwsss.storage
from samwsss.atomic import TEMP_PREFIX

#: Environment variable holding ``<event>:<n>[:<signal>]``.
KILL_AT = "SAMWSSS_TEST_KILL_AT"
#: Environment variable naming a file that receives the children's pids before the signal.
KILL_CHILDREN = "SAMWSSS_TEST_KILL_CHILDREN"
#: The events that can be counted (see the module docstring).
EVENTS = ("failure", "batch", "temp", "commit", "image")
#: The per-image output folders whose files ``temp`` and ``commit`` count.
OUTPUT_DIRS = frozenset({"masks", "masks_plain", "instances", "overlays"})


@dataclass(frozen=True)
class KillPoint:
    """Send ``signal`` to this process at the ``count``-th ``event``."""

    event: str
    count: int
    signal: signal.Signals = signal.SIGKILL

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        """``"commit:3"`` or ``"batch:1:STOP"`` -> KillPoint."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or parts[0] not in EVENTS or not parts[1].isdigit():
            raise ValueError(
                f"{KILL_AT} must look like <event>:<n>[:KILL|STOP] with event one of "
                f"{', '.join(EVENTS)}, got {text!r}"
            )
        name = parts[2].upper() if len(parts) == 3 else "KILL"
        if name not in ("KILL", "STOP"):
            raise ValueError(f"{KILL_AT}: the signal must be KILL or STOP, got {parts[2]!r}")
        return cls(parts[0], int(parts[1]), signal.Signals[f"SIG{name}"])


def child_pids(pid: int) -> list[int]:
    """The pids of the live children of ``pid`` (read from ``/proc``; empty elsewhere)."""
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 1 :].split()  # state, ppid, ... after "(comm)"
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


class _Counter:
    """Counts events of one kind; at the chosen one, signals this process."""

    def __init__(self, point: KillPoint) -> None:
        self.point = point
        self.seen = 0
        self._lock = threading.Lock()

    def event(self, name: str) -> None:
        if name != self.point.event:
            return
        with self._lock:
            self.seen += 1
            if self.seen != self.point.count:
                return
            children_file = os.environ.get(KILL_CHILDREN)
            if children_file:
                pids = child_pids(os.getpid())
                Path(children_file).write_text("".join(f"{p}\n" for p in pids), encoding="ascii")
            os.kill(os.getpid(), self.point.signal)


def install(point: KillPoint) -> None:
    """Wrap the functions where the events happen so that ``point`` fires (this process only)."""
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.runs.failures import FailureLog

    counter = _Counter(point)

    def output_file(source: Any, target: Any) -> bool:
        return Path(target).parent.name in OUTPUT_DIRS and Path(source).name.startswith(TEMP_PREFIX)

    real_replace = os.replace

    @functools.wraps(real_replace)
    def replace(source: Any, target: Any, **kwargs: Any) -> None:
        counted = output_file(source, target)
        if counted:
            counter.event("temp")
        real_replace(source, target, **kwargs)
        if counted:
            counter.event("commit")
            if Path(target).parent.name == "masks":
                counter.event("image")

    real_put = samwsss.storage.put_bytes

    @functools.wraps(real_put)
    def put(path: Any, data: bytes) -> None:
        counted = path.parent.name in OUTPUT_DIRS
        if counted:
            counter.event("temp")
        real_put(path, data)
        if counted:
            counter.event("commit")
            if path.parent.name == "masks":
                counter.event("image")

    def after(method: Callable[..., Any], event: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            counter.event(event)
            return result

        return wrapper

    os.replace = replace  # type: ignore[assignment]
    samwsss.storage.put_bytes = put
    Pipeline.run_arrays = after(Pipeline.run_arrays, "batch")  # type: ignore[method-assign]
    FailureLog.record = after(FailureLog.record, "failure")  # type: ignore[method-assign]


def install_from_env() -> KillPoint | None:
    """Install the point :data:`KILL_AT` names, if set; returns it."""
    text = os.environ.get(KILL_AT)
    if not text:
        return None
    point = KillPoint.parse(text)
    install(point)
    return point
