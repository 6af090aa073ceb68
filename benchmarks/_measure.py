"""Measuring machinery shared by the benchmark scripts.

* :func:`parser` / :func:`resolve_device`: the options every script takes (``--device``,
  ``--repeats``, ``--threads``) and the device they select.
* :func:`interleave`: median seconds of several ways of doing the same work, taking turns
  within each repeat so that load drifting on a shared machine hits them alike, with the
  peak memory of each (:class:`PeakMemory`) and optionally the seconds spent inside given
  models (:class:`ModelClock`).
* :func:`speedup`, :func:`markdown_table`, :func:`hardware`: what the scripts print.

torch is imported only where a device is involved, so a CPU-only script (the evaluation
benchmark) does not load it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 2**20
GIB = 2**30


# --------------------------------------------------------------------------- options
def parser(
    description: str, *, repeats: int | None = 3, device: bool = True, threads: bool = True
) -> argparse.ArgumentParser:
    """An argument parser with the shared options.

    Args:
        description: the script's one-line description.
        repeats: default of ``--repeats`` (timed repetitions; the median is reported);
            ``None`` when the script picks it per model.
        device: add ``--device`` (default: ``cuda`` when available, else ``cpu``).
        threads: add ``--threads`` (torch CPU threads).
    """
    result = argparse.ArgumentParser(description=description)
    if device:
        result.add_argument(
            "--device", default=None, help="cpu or cuda[:N] (default: cuda when available)"
        )
    default = "per model" if repeats is None else repeats
    result.add_argument(
        "--repeats", type=int, default=repeats, help=f"timed repetitions, median ({default})"
    )
    if threads:
        result.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return result


def resolve_device(args: argparse.Namespace, cpu_threads: int | None = None) -> Any:
    """The ``torch.device`` of ``args.device`` (default: cuda when available); applies
    ``args.threads``, else ``cpu_threads`` when the device is the CPU."""
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    threads = getattr(args, "threads", None) or (cpu_threads if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    return device


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a ``torch.device``, a string or ``None``) is a CUDA device."""
    return device is not None and str(device).startswith("cuda")


# --------------------------------------------------------------------------- timing
def synchronize(device: Any) -> None:
    """Wait for the kernels queued on ``device`` (no-op off CUDA)."""
    if is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


def time_call(call: Callable[[], object], device: Any = None) -> float:
    """Wall seconds of ``call()``, including the kernels it queued on ``device``."""
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


class ModelClock:
    """Seconds spent inside the given modules' forwards (outermost calls only).

    CPU: ``perf_counter`` around each call. CUDA: events recorded around each call and read
    after a synchronize, so timing does not stall the work.
    """

    def __init__(self, modules: Sequence[Any], device: Any) -> None:
        self.cuda = is_cuda(device)
        self.depth = 0
        self.seconds = 0.0
        self._start = 0.0
        self._events: list[tuple[Any, Any]] = []
        self._open: Any = None
        self._handles: list[Any] = []
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, *_args: Any) -> None:
        if self.depth == 0:
            if self.cuda:
                import torch

                self._open = torch.cuda.Event(enable_timing=True)
                self._open.record()
            else:
                self._start = time.perf_counter()
        self.depth += 1

    def _leave(self, *_args: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            if self.cuda:
                import torch

                end = torch.cuda.Event(enable_timing=True)
                end.record()
                self._events.append((self._open, end))
            else:
                self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        """Start counting from zero."""
        self.seconds = 0.0
        self._events.clear()

    def read(self) -> float:
        """Model seconds since the last :meth:`reset`."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self._events) / 1000.0
        return self.seconds

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


# --------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``), in bytes."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def tree_pss_bytes() -> int:
    """Proportional set size of this process and its descendants (Linux), in bytes."""
    pending, total, seen = [os.getpid()], 0, set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss_bytes(pid)
        pending.extend(_children(pid))
    return total


class PeakMemory:
    """Peak memory while the block runs: ``peak`` (bytes) and ``growth`` (peak minus the
    amount at entry).

    CUDA: ``torch.cuda.max_memory_allocated`` (reset at entry). CPU: sampled in a thread,
    every 5 ms the resident set of this process, or with ``tree=True`` every 20 ms the
    proportional set size of this process and its children (DataLoader or pool workers).
    """

    def __init__(self, device: Any = None, *, tree: bool = False) -> None:
        self.cuda = is_cuda(device)
        self.device = device
        self.read = tree_pss_bytes if tree else rss_bytes
        self.interval = 0.02 if tree else 0.005
        self.base = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def growth(self) -> int:
        """Peak minus the memory in use at entry, in bytes."""
        return self.peak - self.base

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = self.peak = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self.peak = self.read()
        self._stop.clear()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self.read())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.read())


# --------------------------------------------------------------------------- repeats
@dataclass
class Measurement:
    """Repeated timings of one way of doing the work."""

    seconds: list[float] = field(default_factory=list)
    #: seconds inside the clocked models, per repeat (with a :class:`ModelClock`).
    model_seconds: list[float] = field(default_factory=list)
    #: largest peak and peak growth over the repeats, in bytes.
    peak_bytes: int = 0
    growth_bytes: int = 0

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)

    @property
    def model_median(self) -> float:
        """Median seconds inside the models."""
        return statistics.median(self.model_seconds)

    def overhead_ms(self, items: int) -> float:
        """Median over repeats of (wall - model seconds) per item, in milliseconds."""
        pairs = zip(self.seconds, self.model_seconds, strict=True)
        return statistics.median(wall - model for wall, model in pairs) / items * 1e3


def interleave(
    calls: Mapping[str, Callable[[], object]],
    device: Any = None,
    repeats: int = 3,
    *,
    warmup: int = 0,
    tree: bool = False,
    clock: ModelClock | None = None,
) -> dict[str, Measurement]:
    """Time each of ``calls`` ``repeats`` times, the calls taking turns within each repeat.

    Args:
        calls: name -> a call doing the work one way.
        device: where the work runs (CUDA work is synchronized before reading a clock).
        repeats: timed calls of each.
        warmup: untimed calls of each first (kernels, caches, lazy imports).
        tree: measure CPU memory over the process tree (see :class:`PeakMemory`).
        clock: also record the seconds inside its models for each call.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    results = {name: Measurement() for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            result = results[name]
            if clock is not None:
                synchronize(device)
                clock.reset()
            with PeakMemory(device, tree=tree) as memory:
                result.seconds.append(time_call(call, device))
            if clock is not None:
                result.model_seconds.append(clock.read())
            result.peak_bytes = max(result.peak_bytes, memory.peak)
            result.growth_bytes = max(result.growth_bytes, memory.growth)
    return results


# --------------------------------------------------------------------------- reporting
def speedup(baseline_seconds: float | None, seconds: float) -> str:
    """``"2.35x"``: how many times faster than the baseline; empty without one."""
    if baseline_seconds is None:
        return ""
    return f"{baseline_seconds / seconds:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table of ``rows`` (cells already formatted, or printed with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def hardware(device: Any) -> str:
    """The device in words: the GPU's name and CUDA version, or the CPU and its threads."""
    import torch

    if is_cuda(device):
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )


def scratch_directory(prefix: str = "samwsss-bench-") -> Path:
    """A fresh temporary folder (under ``$TMPDIR``); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR")))
