"""DataLoader worker processes that exit when the process that started them is gone.

A DataLoader worker whose parent is killed (SIGKILL, the OOM killer, a cluster's time
limit) can stay blocked for minutes, holding its memory: torch's own check runs only
between items, and a worker stuck writing to a full pipe or exiting behind its queue's
feeder thread never reaches it. :func:`exit_with_parent` (a ``worker_init_fn``) starts a
daemon thread in each worker that polls the parent's pid and ends the worker with
``os._exit`` within :data:`POLL_SECONDS` of the parent's death.

:func:`default_workers` is the one default worker count of every command's ``--workers``:
the CPUs this process may use (shared among the processes ``torchrun`` starts on the node),
at most :data:`MAX_DEFAULT_WORKERS`.
"""

from __future__ import annotations

import os
import threading

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "POLL_SECONDS",
    "default_workers",
    "exit_with_parent",
    "local_processes",
    "usable_cpus",
]

POLL_SECONDS = 0.5
"""How often a worker checks that its parent is alive."""

EXIT_CODE = 3
"""A worker's exit status when it found its parent gone."""

MAX_DEFAULT_WORKERS = 8
"""The most workers :func:`default_workers` gives, however many CPUs there are."""


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the platform has one
    (Linux: a cpuset's or ``taskset``'s limit; a CPU quota does not show), else
    ``os.cpu_count()``; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def local_processes() -> int:
    """How many processes of this job share the node: ``torchrun``'s ``LOCAL_WORLD_SIZE``,
    else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_workers() -> int:
    """The default of every command's ``--workers``: :func:`usable_cpus` divided among
    :func:`local_processes`, at least 1 and at most :data:`MAX_DEFAULT_WORKERS` (a 2-core
    machine gets 2, a 64-core one 8, each of 4 ``torchrun`` processes on 16 cores 4)."""
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cpus() // local_processes()))


def exit_with_parent(worker_id: int = 0) -> None:
    """``worker_init_fn``: end this worker promptly once its parent process is gone.

    Args:
        worker_id: the DataLoader worker's index (unused; part of the signature).
    """
    parent = os.getppid()

    def watch() -> None:
        stopped = threading.Event()
        while not stopped.wait(POLL_SECONDS):
            if os.getppid() != parent:  # re-parented: the starting process died
                os._exit(EXIT_CODE)

    threading.Thread(target=watch, name="samwsss-parent-watch", daemon=True).start()
