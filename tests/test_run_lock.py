"""The run lock: one live process per shard of an output folder.

The first tests exercise the lock alone (no model); the rest run the CLI with tiny models,
with a live holder simulated by a forked run frozen at a kill point (``...:STOP``) while it
holds its lock in the middle of its work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from samwsss.pipeline.batching import Shard
from samwsss.runs.folder import RunFolder
from samwsss.runs.lock import (
    LOCK_DIR,
    RunConflictError,
    RunLock,
    RunLockedError,
    lock_path,
    pid_alive,
)
from samwsss.testing.killpoints import KILL_AT
from tests.forked_runs import (
    CORRUPT_ID,
    failure_ids,
    fork_cli,
    leftovers,
    make_kill_tree,
    output_hashes,
    run_args,
    wait_exit,
    wait_stopped,
)

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE

# --------------------------------------------------------------------------- the lock alone


def _dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _write_lock(out: Path, shard: Shard, pid: int, host: str | None = None) -> Path:
    path = lock_path(out, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": "2024-01-02T03:04:05+0000",
        "shard": f"{shard.index}/{shard.count}",
        "command": "samwsss text-input --out x",
    }
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_the_lock_names_its_holder_and_goes_when_the_block_ends(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunFolder(out, Shard(1, 3)).hold() as lock:
        assert lock.path == out / LOCK_DIR / "shard-1-of-3.json"
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["shard"] == "1/3" and record["started"] and record["command"]
    assert not out.exists()  # made for the lock only: removed with it
    (out / "masks").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="boom"), RunFolder(out).hold():
        raise RuntimeError("boom")
    assert leftovers(out) == [] and (out / "masks").is_dir()


def test_a_live_holder_is_named_and_kept(tmp_path: Path) -> None:
    path = _write_lock(tmp_path, Shard(), os.getpid())  # this process: alive
    before = path.read_bytes()
    with pytest.raises(RunLockedError) as refused:
        RunLock.acquire(tmp_path, Shard())
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "2024-01-02T03:04:05" in message and str(path) in message and "wait" in message
    assert path.read_bytes() == before


def test_a_dead_holder_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _dead_pid()
    path = _write_lock(tmp_path, Shard(), dead)
    with caplog.at_level(logging.WARNING, logger="samwsss"):
        lock = RunLock.acquire(tmp_path, Shard())
    assert f"taking over the lock of a dead run: pid {dead} " in caplog.text
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_a_zombie_holder_is_dead() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # exited, not reaped: a zombie
        assert not pid_alive(pid)
    finally:
        os.waitpid(pid, 0)
    assert pid_alive(os.getpid()) and not pid_alive(_dead_pid())


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    path = _write_lock(tmp_path, Shard(), _dead_pid(), host="other-node.invalid")
    with pytest.raises(RunLockedError, match="another host") as refused:
        RunLock.acquire(tmp_path, Shard())
    assert "other-node.invalid" in str(refused.value) and f"delete {path}" in str(refused.value)
    # nor by a run of another shard count
    with pytest.raises(RunLockedError, match="other-node.invalid"):
        RunLock.acquire(tmp_path, Shard(1, 2))
    assert json.loads(path.read_text())["host"] == "other-node.invalid"


def test_shards_of_one_run_share_the_folder_and_other_counts_are_refused(tmp_path: Path) -> None:
    with RunFolder(tmp_path, Shard(0, 2)).hold(), RunFolder(tmp_path, Shard(1, 2)).hold():
        assert sorted(p.name for p in (tmp_path / LOCK_DIR).iterdir()) == [
            "shard-0-of-2.json",
            "shard-1-of-2.json",
        ]
        for other in (Shard(), Shard(0, 3)):
            with pytest.raises(RunLockedError, match="shard 0/2") as refused:
                RunLock.acquire(tmp_path, other)
            assert f"pid {os.getpid()}" in str(refused.value)
        assert not lock_path(tmp_path, Shard()).exists()  # the refused run's own lock went
    # a dead run of another count does not block (its shard takes its lock over later)
    _write_lock(tmp_path, Shard(1, 2), _dead_pid())
    with RunFolder(tmp_path).hold():
        pass


def test_a_shard_starting_while_another_saves_the_identity_claims_the_folder(
    tmp_path: Path,
) -> None:
    """torchrun starts every shard at once: shard 0's identity may be half-saved (its
    temporary exists, config.yaml not yet) when shard 1 looks at the folder."""
    (tmp_path / ".tmp-config.yaml.4mybaezt").write_text("route: text-", encoding="utf-8")
    identity = {"route": "text-input", "data": {"split": "train"}}
    RunFolder(tmp_path, Shard(1, 2)).claim(identity)
    (tmp_path / "stray.txt").write_text("", encoding="utf-8")
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(RunConflictError, match=r"not empty \(stray.txt\)"):
        RunFolder(tmp_path, Shard(1, 2)).claim(identity)


def test_sigterm_ends_the_run_and_removes_its_lock(tmp_path: Path) -> None:
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_read)
            with RunFolder(tmp_path).hold():
                os.write(ready_write, b"1")
                time.sleep(60)
        except SystemExit as exit_:  # what SIGTERM raises while the lock is held
            code = int(exit_.code or 0)
        finally:
            os._exit(code)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"1"
        assert lock_path(tmp_path, Shard()).is_file()
        os.kill(pid, signal.SIGTERM)
    finally:
        os.close(ready_read)
        code = wait_exit(pid, timeout=30)
    assert code == 128 + signal.SIGTERM and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- predict, training


def test_a_training_run_holds_its_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from samwsss.training.train import Trainer
    from tests.deeplab_fixtures import ShapesDataset, one_torch_thread, tiny_config

    run, data = tmp_path / "train", ShapesDataset(2, (32, 32))
    with one_torch_thread(), RunFolder(run).hold():
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            Trainer(tiny_config(iterations=1), data, run).run()
    assert not run.exists()  # refused before anything was written
    _write_lock(run, Shard(), _dead_pid())
    with one_torch_thread(), caplog.at_level(logging.WARNING, logger="samwsss"):
        result = Trainer(tiny_config(iterations=1), data, run).run()
    assert "taking over the lock of a dead run" in caplog.text
    assert result.final_model.is_file() and leftovers(run) == []


def test_predict_holds_its_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from samwsss.training.predict import load_checkpoint_model, predict_dataset
    from samwsss.training.prediction_identity import IDENTITY_NAME
    from samwsss.training.train import Trainer
    from tests.deeplab_fixtures import ShapesDataset, one_torch_thread, tiny_config

    data, out = ShapesDataset(2, (32, 32)), tmp_path / "pred"
    with one_torch_thread():
        trained = Trainer(tiny_config(iterations=1), data, tmp_path / "train").run()
        model = load_checkpoint_model(trained.final_model, "cpu")
        with RunFolder(out).hold(), pytest.raises(RunLockedError) as refused:
            predict_dataset(model, data, out, workers=0)
        assert f"pid {os.getpid()} on host" in str(refused.value)
        assert not out.exists()  # refused before anything was written
        _write_lock(out, Shard(), _dead_pid())
        with caplog.at_level(logging.WARNING, logger="samwsss"):
            summary = predict_dataset(model, data, out, workers=0)
    assert "taking over the lock of a dead run" in caplog.text and summary.written == 2
    assert (out / IDENTITY_NAME).is_file() and leftovers(out) == []


# --------------------------------------------------------------------------- CLI runs


@pytest.fixture(scope="module", autouse=True)
def _threads(torch_threads_restored: None) -> None:
    """Runs here use one torch thread; restored after the module."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_kill_tree(tmp_path_factory.mktemp("lock_tree"))


@pytest.fixture(scope="module")
def reference(tree: Path, models: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsharded run left alone; no lock stays after it."""
    out = tmp_path_factory.mktemp("lock_reference") / "out"
    result = CliRunner().invoke(cli, run_args(tree, out, models), catch_exceptions=False)
    assert result.exit_code == UNREADABLE, result.output
    assert leftovers(out) == []
    return out


@contextlib.contextmanager
def _frozen_run(
    args: list[str], point: str, log: Path, exit_code: int = UNREADABLE
) -> Iterator[int]:
    """A forked run stopped (SIGSTOP) at ``point``, holding its lock; yields its pid. It is
    continued when the block ends, and killed if it is still there after the block."""
    pid = fork_cli(args, log, {KILL_AT: f"{point}:STOP"})
    reaped = False
    try:
        wait_stopped(pid)
        yield pid
        os.kill(pid, signal.SIGCONT)
        assert wait_exit(pid) == exit_code, log.read_text()
        reaped = True
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_second_run_into_a_live_runs_folder_is_refused(
    tree: Path, models: list[str], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = run_args(tree, out, models)
    with _frozen_run(args, "commit:1", tmp_path / "first.log") as holder:
        before = output_hashes(out)
        second = CliRunner().invoke(cli, args)
        assert second.exit_code == 1, second.output
        assert f"pid {holder} on host {socket.gethostname()}" in second.output
        assert str(lock_path(out, Shard())) in second.output and "in use" in second.output
        # --overwrite (a different run) is refused too: nothing is wiped under a live run
        wipe = CliRunner().invoke(cli, [*args, "--merge-rule", "area", "--overwrite"])
        assert wipe.exit_code == 1 and f"pid {holder}" in wipe.output
        assert output_hashes(out) == before
    assert output_hashes(out) == output_hashes(reference)
    assert failure_ids(out) == [CORRUPT_ID] and leftovers(out) == []


def test_a_dead_runs_lock_is_taken_over_and_the_run_completes(
    tree: Path,
    models: list[str],
    reference: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"
    dead = _dead_pid()
    _write_lock(out, Shard(), dead)
    with caplog.at_level(logging.WARNING, logger="samwsss"):
        result = CliRunner().invoke(cli, run_args(tree, out, models), catch_exceptions=False)
    assert result.exit_code == UNREADABLE, result.output
    assert f"taking over the lock of a dead run: pid {dead} " in caplog.text
    assert output_hashes(out) == output_hashes(reference) and leftovers(out) == []


def test_a_lock_from_another_host_refuses_the_cli_run(
    tree: Path, models: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    path = _write_lock(out, Shard(), os.getpid(), host="other-node.invalid")
    result = CliRunner().invoke(cli, run_args(tree, out, models))
    assert result.exit_code == 1 and "another host" in result.output
    assert f"delete {path}" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == [LOCK_DIR]  # nothing else was touched


def test_a_held_folder_is_refused_before_the_models_load(
    tree: Path, models: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _write_lock(out, Shard(), os.getpid())
    # passes the checks made before loading (a folder with a config.json) but could not load
    broken = tmp_path / "no-such-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    missing = ["--boxer", str(broken)]
    result = CliRunner().invoke(cli, run_args(tree, out, [*models, *missing]))
    assert result.exit_code == 1 and f"pid {os.getpid()}" in result.output
    assert "no-such-model" not in result.output


def test_shards_run_at_the_same_time_into_one_folder(
    tree: Path, models: list[str], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = run_args(tree, out, models)
    log = tmp_path / "shard0.log"
    # shard 0 holds no unreadable image (shard 1 does)
    with _frozen_run([*args, "--shard", "0/2"], "commit:1", log, ExitCode.DONE) as shard0:
        unsharded = CliRunner().invoke(cli, args)
        assert unsharded.exit_code == 1 and f"pid {shard0}" in unsharded.output
        assert "shard 0/2" in unsharded.output
        shard1 = CliRunner().invoke(cli, [*args, "--shard", "1/2"], catch_exceptions=False)
        assert shard1.exit_code == UNREADABLE, shard1.output
        assert "mIoU" not in shard1.output  # shard 0 is not done: no evaluation yet
    assert "mIoU" in log.read_text()  # the last shard to finish evaluates the dataset

    def shared(hashes: dict[str, str]) -> dict[str, str]:
        return {name: value for name, value in hashes.items() if not name.startswith("failures")}

    assert shared(output_hashes(out)) == shared(output_hashes(reference))
    assert failure_ids(out) == [CORRUPT_ID] and leftovers(out) == []
    merged = json.loads((out / "manifest.json").read_text())
    assert merged["shards"] == 2 and merged["counts"]["complete"] == 3


def test_the_lock_goes_after_a_run_that_raised(
    tree: Path, models: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samwsss.pipeline.pipeline import Pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the model broke")

    monkeypatch.setattr(Pipeline, "run_arrays", broken)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, run_args(tree, out, models))
    assert isinstance(result.exception, RuntimeError)
    assert leftovers(out) == []
