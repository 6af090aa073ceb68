"""Runs whose ``--out`` is an fsspec URL: the same outputs as a local run, resume, kill and
resume, failures, conflicts and the lease lock.

``memory://`` lives in this process; ``objdisk://`` (:mod:`samwsss.testing.object_disk`) is
an object store on the local disk (whole-object puts, no rename) that forked runs share.
Every run uses one torch thread, as the reference does (see tests/forked_runs.py).
"""

from __future__ import annotations

import json
import logging
import signal
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from samwsss.pipeline.batching import Shard
from samwsss.runs import lease
from samwsss.runs.folder import RunFolder
from samwsss.runs.lease import ObjectStoreLock
from samwsss.runs.lock import RunLockedError
from samwsss.storage import as_path
from samwsss.testing import object_disk
from samwsss.testing.killpoints import KILL_AT
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

object_disk.register()


@pytest.fixture(scope="module", autouse=True)
def _threads(torch_threads_restored: None) -> None:
    """Runs here use one torch thread; restored after the module."""


@pytest.fixture(autouse=True)
def _quick_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settling pause after a lock's put (the races are tested on their own)."""
    monkeypatch.setattr(lease, "SETTLE_SECONDS", 0.0)


def _memory_url() -> str:
    return f"memory://samwsss-test-{uuid.uuid4().hex}/run"


def _download(url: str, local: Path) -> Path:
    """Copy a memory:// run folder to ``local`` (to hash it like a local one)."""
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    for name in fs.find(root):
        target = local / name[len("/" + root) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat_file(name))
    return local


def test_memory_out_equals_the_local_run(
    kill_tree: Path, models: list[str], kill_reference: Path, tmp_path: Path
) -> None:
    url = _memory_url()
    result = CliRunner().invoke(cli, run_args(kill_tree, url, models), catch_exceptions=False)
    assert result.exit_code == UNREADABLE, result.output
    assert "3 images processed" in result.output and "1 unreadable" in result.output
    assert "mIoU" in result.output
    copy = _download(url, tmp_path / "copy")
    assert output_hashes(copy) == output_hashes(kill_reference)
    assert manifest_config(copy) == manifest_config(kill_reference)
    assert leftovers(copy) == []  # no temporaries, the lock removed
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"] == {"images": 4, "complete": 3, "failed": 1, "remaining": 0}
    assert manifest["failures_file"] == "failures/failures.jsonl"


def test_memory_out_resumes_after_max_images(
    kill_tree: Path, models: list[str], kill_reference: Path, tmp_path: Path
) -> None:
    url = _memory_url()
    first = CliRunner().invoke(
        cli,
        run_args(kill_tree, url, models, "--max-images", "2"),
        catch_exceptions=False,
    )
    assert first.exit_code == UNREADABLE, first.output
    assert "1 images processed" in first.output  # the failure and one image
    second = CliRunner().invoke(cli, run_args(kill_tree, url, models), catch_exceptions=False)
    assert second.exit_code == UNREADABLE, second.output
    assert "2 images processed, 1 already done" in second.output
    copy = _download(url, tmp_path / "copy")
    assert output_hashes(copy) == output_hashes(kill_reference)
    assert failure_ids(copy) == [CORRUPT_ID]


def test_memory_out_holding_another_run_is_refused(kill_tree: Path, models: list[str]) -> None:
    url = _memory_url()
    as_path(url + "/config.yaml").write_text("route: zero-shot\n")
    result = CliRunner().invoke(cli, run_args(kill_tree, url, models))
    assert result.exit_code != 0
    assert "holds a different run" in result.output and "--overwrite" in result.output


def test_a_missing_storage_package_is_named(
    kill_tree: Path, models: list[str], without_s3fs: None
) -> None:
    result = CliRunner().invoke(cli, run_args(kill_tree, "s3://bucket/run", models))
    assert result.exit_code != 0
    assert "needs s3fs" in result.output and "pip install s3fs" in result.output


#: Where the runs die: after logging the unreadable image; before the second object's put;
#: with an image half written; with the second batch's first image complete.
KILL_POINTS = ["failure:1", "temp:2", "commit:3", "image:2"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_object_store_run_resumes_to_the_same_outputs(
    point: str,
    kill_tree: Path,
    models: list[str],
    kill_reference: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "bucket" / "run"
    url = f"objdisk://{folder}"
    args = run_args(kill_tree, url, models)
    pid = fork_cli(args, tmp_path / "killed.log", {KILL_AT: point})
    assert wait_exit(pid) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert (folder / ".lock" / "shard-0-of-1.json").is_file()  # SIGKILL leaves the lease
    assert not (folder / "manifest.json").exists()
    for upload in folder.rglob(f"{object_disk.UPLOAD_PREFIX}*"):
        upload.unlink()  # a put cut short: an object store drops it, no object appears

    with caplog.at_level(logging.WARNING, logger="samwsss"):
        resumed = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert resumed.exit_code == UNREADABLE, resumed.output
    assert "taking over the lock of a finished or dead run" in caplog.text
    assert f"pid {pid} " in caplog.text
    assert output_hashes(folder) == output_hashes(kill_reference)
    assert leftovers(folder) == []
    assert failure_ids(folder) == [CORRUPT_ID]


# --- the lease lock -------------------------------------------------------------------


def _foreign_lock(url: str, shard: str = "0-of-1", host: str = "elsewhere", age: float = 0.0):
    path = as_path(f"{url}/.lock/shard-{shard}.json")
    record = {
        "pid": 4242,
        "host": host,
        "started": "2026-01-01T00:00:00",
        "shard": shard.replace("-of-", "/"),
        "command": "samwsss text-input ...",
        "token": "foreign",
        "renewed": time.time() - age,
    }
    path.write_text(json.dumps(record))
    return path


def test_a_live_lease_refuses_a_second_run(kill_tree: Path, models: list[str]) -> None:
    url = _memory_url()
    with RunFolder(url).hold():
        result = CliRunner().invoke(cli, run_args(kill_tree, url, models))
    assert result.exit_code != 0
    assert "in use by another samwsss run" in result.output and "renewed" in result.output
    assert not as_path(url + "/.lock/shard-0-of-1.json").exists()  # released


def test_a_fresh_lease_of_another_host_is_refused_and_an_expired_one_taken_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _memory_url()
    _foreign_lock(url, age=10.0)
    with pytest.raises(RunLockedError, match="frees itself 300 s after its last renewal"):
        RunFolder(url).lock()
    _foreign_lock(url, age=lease.LEASE_SECONDS + 1)
    with caplog.at_level(logging.WARNING, logger="samwsss"):
        lock = RunFolder(url).lock()
    assert "pid 4242 on host elsewhere" in caplog.text
    record = json.loads(as_path(url + "/.lock/shard-0-of-1.json").read_text())
    assert record["token"] != "foreign"
    lock.release()
    assert not as_path(url + "/.lock/shard-0-of-1.json").exists()


def test_a_dead_pid_on_this_host_frees_the_lease_at_once() -> None:
    from samwsss.runs.lock import pid_alive, this_host

    url = _memory_url()
    _foreign_lock(url, host=this_host())  # pid 4242: not alive here (or not ours to check)
    if pid_alive(4242):
        pytest.skip("pid 4242 runs on this machine")
    RunFolder(url).lock().release()


def test_a_live_run_of_another_shard_count_is_refused() -> None:
    url = _memory_url()
    _foreign_lock(url, shard="0-of-2")
    with pytest.raises(RunLockedError, match="shards of one run share a folder"):
        RunFolder(url).lock()
    assert not as_path(url + "/.lock/shard-0-of-1.json").exists()  # ours released
    RunFolder(url, Shard(1, 2)).lock().release()  # the same count shares it


def test_the_holder_renews_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease, "RENEW_SECONDS", 0.05)
    url = _memory_url()
    lock = RunFolder(url).lock()
    path = as_path(url + "/.lock/shard-0-of-1.json")
    first = json.loads(path.read_text())["renewed"]
    deadline = time.monotonic() + 5
    while json.loads(path.read_text())["renewed"] == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert json.loads(path.read_text())["renewed"] > first
    lock.release()
    assert not path.exists()


def test_a_run_that_loses_the_put_race_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _memory_url()

    def other_run_puts() -> None:  # during the settling pause
        _foreign_lock(url, host="racer")

    monkeypatch.setattr(lease, "_settle", other_run_puts)
    with pytest.raises(RunLockedError, match="took the lock .* as this one started"):
        ObjectStoreLock.acquire(as_path(url), Shard())
    # the winner's lock stays
    assert json.loads(as_path(url + "/.lock/shard-0-of-1.json").read_text())["host"] == "racer"


def test_release_leaves_a_lock_that_is_no_longer_ours() -> None:
    url = _memory_url()
    lock = RunFolder(url).lock()
    _foreign_lock(url, host="successor")
    lock.release()
    assert json.loads(as_path(url + "/.lock/shard-0-of-1.json").read_text())["host"] == (
        "successor"
    )


def test_the_failure_log_of_an_object_store_appends_across_runs() -> None:
    from samwsss.runs.failures import FailureLog, read_failures

    url = _memory_url()
    path = as_path(url + "/failures/failures.jsonl")
    first = FailureLog(path)
    first.record("a", "a: cannot decode image")
    first.close()
    path.write_text(path.read_text() + '{"image_id": "torn')  # a torn last line
    second = FailureLog(path)
    second.record("b", "b: file not found")
    second.close()
    assert read_failures(as_path(url)) == {
        "a": "a: cannot decode image",
        "b": "b: file not found",
    }
    assert path.read_text().count("\n") == 2 and "torn" not in path.read_text()


def test_the_early_check_reads_the_locks_and_writes_nothing() -> None:
    url = _memory_url()
    RunFolder(url).check_lock()
    assert not as_path(url).exists()  # nothing put
    _foreign_lock(url, age=1.0)
    with pytest.raises(RunLockedError, match="in use by another samwsss run"):
        RunFolder(url).check_lock()
    _foreign_lock(url, shard="1-of-3", age=1.0)
    with pytest.raises(RunLockedError, match="shards of one run share a folder"):
        RunFolder(url, Shard(0, 2)).check_lock()


def test_a_run_reads_its_dataset_from_an_object_store(
    kill_tree: Path, models: list[str], kill_reference: Path, tmp_path: Path
) -> None:
    """Data and outputs both in memory://: the masks, instances and overlays of the local
    run, and its mIoU (the config, failure reasons and report name the URL instead)."""
    data_url = f"memory://samwsss-data-{uuid.uuid4().hex}/voc"
    fs = fsspec.filesystem("memory")
    for path in sorted(kill_tree.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{data_url}/{path.relative_to(kill_tree)}", path.read_bytes())
    url = _memory_url()
    args = run_args(kill_tree, url, models)
    args[args.index("--data") + 1] = data_url
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == UNREADABLE, result.output
    assert "3 images processed" in result.output and "mIoU" in result.output
    copy = _download(url, tmp_path / "copy")

    def per_image(folder: Path) -> dict[str, str]:
        outputs = ("masks/", "masks_plain/", "instances/", "overlays/")
        return {k: v for k, v in output_hashes(folder).items() if k.startswith(outputs)}

    assert per_image(copy) == per_image(kill_reference)
    assert failure_ids(copy) == [CORRUPT_ID]
    assert data_url in (copy / "failures" / "failures.jsonl").read_text()
    assert data_url in (copy / "config.yaml").read_text()

    def miou(folder: Path) -> float:
        return float(json.loads((folder / "evaluation.json").read_text())["miou"])

    assert miou(copy) == miou(kill_reference)
