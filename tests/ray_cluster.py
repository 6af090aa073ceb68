"""A local Ray cluster for the tests (2 CPUs, no dashboard) whose workers import this
checkout's ``samwsss``."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_pythonpath() -> str:
    """``PYTHONPATH`` with this checkout first (for Ray workers and driver subprocesses)."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


@contextlib.contextmanager
def local_ray_cluster(env_vars: dict[str, str] | None = None) -> Iterator[None]:
    """Start a local cluster for the block, its workers given ``env_vars`` too.

    ``ray.init`` installs its own SIGTERM/SIGINT handlers in this process; the ones there
    before (the run lock's SIGTERM test needs the default) are put back afterwards.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": source_pythonpath(), **(env_vars or {})}},
        logging_level="WARNING",
    )
    try:
        yield
    finally:
        ray.shutdown()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
