"""Shared fixtures: tiny random models written once per test session (no downloads)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm.std import TqdmDefaultWriteLock

from samwsss.cli.exit_codes import ExitCode

# tqdm guards its bars with a multiprocessing RLock, a POSIX semaphore that forked children
# share with this process. The kill tests SIGKILL forked runs: one killed while drawing a
# bar leaves the semaphore held, and the next bar here waits forever (seen: the suite hung
# in test_kill_resume under load). Bars keep tqdm's thread lock, which no child can hold.
TqdmDefaultWriteLock.mp_lock = None

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# caches in a fresh folder: a test never finds (or writes) a user's downloaded weights or
# RAM vocabulary, so anything that would need the network fails visibly instead
_CACHE = tempfile.mkdtemp(prefix="samwsss-test-cache-")
os.environ["SAMWSSS_CACHE"] = os.path.join(_CACHE, "samwsss")
os.environ["TORCH_HOME"] = os.path.join(_CACHE, "torch")


@pytest.fixture(scope="session")
def tiny_gdino_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Grounding DINO whose processor resizes to 128/213 (fast plumbing tests)."""
    from samwsss.testing.gdino import build_tiny_grounding_dino

    return build_tiny_grounding_dino(
        tmp_path_factory.mktemp("gdino_small"), shortest_edge=128, longest_edge=213
    )


@pytest.fixture(scope="session")
def tiny_sam_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers SAM saved with save_pretrained."""
    from samwsss.testing.sam import build_tiny_sam

    return build_tiny_sam(tmp_path_factory.mktemp("sam"))


@pytest.fixture(scope="session")
def tiny_run_options(tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path) -> list[str]:
    """CLI options of a run with the tiny Grounding DINO and SAM on the CPU (the thresholds
    make the random models find a few boxes), batches of 2."""
    return [
        "--boxer", str(tiny_gdino_small_dir), "--masker", str(tiny_sam_session_dir),
        "--box-threshold", "0.2", "--text-threshold", "0", "--device", "cpu",
        "--batch-size", "2",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def models(tiny_run_options: list[str]) -> list[str]:
    """:func:`tiny_run_options`, under the name the run tests use (a module may add to it)."""
    return tiny_run_options


@pytest.fixture(scope="module")
def torch_threads_restored() -> Iterator[None]:
    """For modules whose runs set torch to one thread (``--threads 1``): the next module
    gets back the thread count it had."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def without_s3fs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3fs`` cannot be imported (as on a machine without it), even where it is installed
    and fsspec already loaded it."""
    import sys

    import fsspec  # noqa: F401 -- fsspec.registry is the module once fsspec is imported

    registry_module = sys.modules["fsspec.registry"]
    for protocol in ("s3", "s3a"):
        monkeypatch.delitem(registry_module._registry, protocol, raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)


@pytest.fixture(scope="session")
def kill_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VOC fixture with one undecodable image (tests/forked_runs.py: make_kill_tree)."""
    from tests.forked_runs import make_kill_tree

    return make_kill_tree(tmp_path_factory.mktemp("kill_tree"))


@pytest.fixture(scope="session")
def kill_reference(
    kill_tree: Path, tiny_run_options: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The outputs of an uninterrupted run of ``run_args`` over :func:`kill_tree` (one torch
    thread, as every run compared with it; the thread count is restored after)."""
    import torch
    from click.testing import CliRunner

    from samwsss.cli import cli
    from tests.forked_runs import leftovers, run_args

    out = tmp_path_factory.mktemp("kill_reference") / "out"
    threads = torch.get_num_threads()
    try:
        args = run_args(kill_tree, out, tiny_run_options)
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == UNREADABLE, result.output
    assert "3 images processed" in result.output and "1 unreadable" in result.output
    assert "mIoU" in result.output and leftovers(out) == []
    return out
