"""Kill and resume: a run SIGKILLed at fixed points, then run again with the same command,
ends with the same outputs, byte for byte, as a run never interrupted.

Each case forks a child running the CLI with a kill point (``SAMWSSS_TEST_KILL_AT``, see
:mod:`samwsss.testing.killpoints`), checks that it died by SIGKILL where it was meant to,
then resumes in this process and compares the SHA-256 of every output (palette and plain
masks, instances, overlays, failure log, config, evaluation) with an uninterrupted run;
no temporary file and no lock may be left, and the dead run's lock is taken over.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from samwsss.runs.lock import LOCK_DIR, pid_alive
from samwsss.testing.killpoints import KILL_AT, KILL_CHILDREN, OUTPUT_DIRS
from tests.forked_runs import (
    CORRUPT_ID,
    failure_ids,
    fork_cli,
    leftovers,
    manifest_config,
    output_hashes,
    run_args,
    wait_exit,
)

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE


@pytest.fixture(scope="module", autouse=True)
def _threads(torch_threads_restored: None) -> None:
    """Runs here use one torch thread; restored after the module."""


def _committed(out: Path) -> list[Path]:
    return [path for name in OUTPUT_DIRS for path in sorted((out / name).glob("[!.]*"))]


def _temporaries(out: Path) -> list[Path]:
    return list(out.rglob(".tmp-*"))


def _check_killed_state(point: str, out: Path) -> None:
    """The folder as the kill point leaves it (so a kill point that moved is noticed)."""
    event, count = point.split(":")[0], int(point.split(":")[1])
    committed = _committed(out)
    assert (out / LOCK_DIR / "shard-0-of-1.json").is_file()  # SIGKILL leaves the lock
    assert not (out / "manifest.json").exists()
    if event in ("failure", "batch"):
        assert committed == [] and failure_ids(out) == [CORRUPT_ID]
    elif event == "temp":
        assert len(committed) == count - 1 and _temporaries(out)
    elif event == "image":
        assert len(list((out / "masks").glob("[!.]*"))) == count
    else:  # commit; a second writer thread may have renamed one more file meanwhile
        assert count <= len(committed) <= count + 1


#: Where the runs die: after logging the unreadable image; after the models ran the first
#: batch (nothing written); inside the second atomic write; with an image half written
#: (its instances and overlay, not its masks); with the second batch's first image complete
#: (the resumed run must rerun that batch whole, as the reference batched it); after the
#: last output, before the manifest and the evaluation.
KILL_POINTS = ["failure:1", "batch:1", "temp:2", "commit:5", "image:2", "commit:10"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_run_resumes_to_the_same_outputs(
    point: str,
    kill_tree: Path,
    models: list[str],
    kill_reference: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"
    args = run_args(kill_tree, out, models)
    log = tmp_path / "killed.log"
    pid = fork_cli(args, log, {KILL_AT: point})
    assert wait_exit(pid) == -signal.SIGKILL, log.read_text()
    _check_killed_state(point, out)

    with caplog.at_level(logging.WARNING, logger="samwsss"):
        resumed = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert resumed.exit_code == UNREADABLE, resumed.output
    assert "taking over the lock of a dead run" in caplog.text and f"pid {pid} " in caplog.text
    assert output_hashes(out) == output_hashes(kill_reference)
    assert manifest_config(out) == manifest_config(kill_reference)
    assert leftovers(out) == []
    assert failure_ids(out) == [CORRUPT_ID]  # logged once, by whichever run saw it first


@pytest.fixture(scope="module")
def killed_with_workers(
    kill_tree: Path, models: list[str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], Path, list[int], float]:
    """A run with 2 DataLoader workers killed after its first output file: its command,
    folder, the workers' pids and the time of the kill."""
    folder = tmp_path_factory.mktemp("kill_workers")
    out = folder / "out"
    args = [*run_args(kill_tree, out, models), "--workers", "2"]
    children = folder / "children.txt"
    log = folder / "killed.log"
    pid = fork_cli(args, log, {KILL_AT: "commit:1", KILL_CHILDREN: str(children)})
    assert wait_exit(pid) == -signal.SIGKILL, log.read_text()
    killed = time.monotonic()
    workers = [int(line) for line in children.read_text().split()]
    return args, out, workers, killed


def test_no_worker_outlives_a_killed_run(
    killed_with_workers: tuple[list[str], Path, list[int], float],
) -> None:
    _, _, workers, killed = killed_with_workers
    assert workers, "the run had no DataLoader worker when it was killed"
    while any(pid_alive(pid) for pid in workers) and time.monotonic() < killed + 3.0:
        time.sleep(0.05)
    alive = [pid for pid in workers if pid_alive(pid)]
    assert not alive, f"workers {alive} still run 3 s after their run was killed"


def test_a_run_killed_with_workers_resumes_to_the_same_outputs(
    killed_with_workers: tuple[list[str], Path, list[int], float], kill_reference: Path
) -> None:
    args, out, workers, _ = killed_with_workers
    assert len(workers) == 2
    resumed = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert resumed.exit_code == UNREADABLE, resumed.output
    assert output_hashes(out) == output_hashes(kill_reference)
    assert leftovers(out) == [] and failure_ids(out) == [CORRUPT_ID]


def test_a_child_killed_inside_a_progress_bar_cannot_block_this_process() -> None:
    """conftest gives tqdm no cross-process lock: a forked run killed while drawing a bar
    (what the kill points do) must not leave a lock this process then waits on."""
    import io
    import os
    import threading

    from tqdm import tqdm

    tqdm.get_lock()  # made before the fork, as a run in this process makes it
    pid = os.fork()
    if pid == 0:  # the child: die holding tqdm's write lock
        tqdm.get_lock().acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    drawn = threading.Event()

    def draw() -> None:
        with tqdm(total=1, disable=False, file=io.StringIO()) as bar:
            bar.update()
        drawn.set()

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    assert drawn.wait(timeout=20), "a progress bar waited on a lock a killed child held"
