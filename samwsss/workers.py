"""DataLoader worker processes that exit when the process that started them is gone.

A DataLoader worker whose parent is killed (SIGKILL, the OOM killer, a cluster's time
limit) can stay blocked for minutes, holding its memory: torch's own check runs only
between items, and a worker stuck writing to a full pipe or exiting behind its queue's
feeder thread never reaches it. :func:`exit_with_parent` (a ``worker_init_fn``) starts a
daemon thread in each worker that polls the parent's pid and ends the worker with
``os._exit`` within :data:`POLL_SECONDS` of the parent's death.
"""

from __future__ import annotations

import os
import threading

__all__ = ["POLL_SECONDS", "exit_with_parent"]

POLL_SECONDS = 0.5
"""How often a worker checks that its parent is alive."""

EXIT_CODE = 3
"""A worker's exit status when it found its parent gone."""


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
