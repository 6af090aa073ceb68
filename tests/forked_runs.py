"""Dataset runs in forked child processes, to be killed, stopped or raced: helpers of the
lock and kill-and-resume tests.

A child is forked from the test process and runs the ``samwsss`` CLI there with a kill point
(:mod:`samwsss.testing.killpoints`) installed. Forking skips the interpreter start and the
imports of a fresh ``python -m samwsss`` (seconds per run on a small machine), while the
run is still a process of its own: its own pid, lock, writer threads and DataLoader
workers, and SIGKILL ends it with no clean-up. The child runs torch on one thread (the
parent's OpenMP pool does not survive a fork) and writes its output to a log file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from samwsss.runs.lock import LOCK_DIR
from tests.data_fixtures import make_voc_tree

#: The image of the kill tree that cannot be decoded (a failure line in every run).
CORRUPT_ID = "2010_000005"

#: ``samwsss`` in a fresh interpreter with the kill point of ``SAMWSSS_TEST_KILL_AT``
#: installed first (its arguments follow), for runs that cannot be forked.
KILLABLE_CLI = [
    sys.executable,
    "-c",
    "from samwsss.testing.killpoints import install_from_env; install_from_env(); "
    "from samwsss.cli import main; main()",
]


def make_kill_tree(root: Path) -> Path:
    """The VOC fixture with :data:`CORRUPT_ID` overwritten by bytes that are no JPEG: its
    ``trainval`` split is 3 good images and 1 failure."""
    voc = make_voc_tree(root)
    (voc / "JPEGImages" / f"{CORRUPT_ID}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return voc


def run_args(voc: Path, out: Path | str, models: list[str], *extra: str) -> list[str]:
    """``text-input`` over the kill tree's ``trainval`` with every output (4 images in 2
    batches: the failure and one image, then two images; 10 output files).

    Torch runs on one thread (``--threads 1``) in every run, killed or not: scores summed
    in another order differ in the last digit that ``instances/*.json`` keeps.
    """
    return [
        "text-input",
        "--data",
        str(voc),
        "--split",
        "trainval",
        "--out",
        str(out),
        "--plain",
        "--instances",
        "--overlays",
        "2",
        "--workers",
        "0",
        "--threads",
        "1",
        *models,
        *extra,
    ]


def fork_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Run ``samwsss <args>`` in a forked child with ``env`` added (e.g. a kill point);
    returns its pid (reap it with :func:`wait_exit`)."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.environ.update(env or {})
        stream = open(log, "w", buffering=1, encoding="utf-8")  # open until _exit
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        logging.root.handlers.clear()  # the test's capture handlers
        import torch

        torch.set_num_threads(1)
        from samwsss.cli import cli
        from samwsss.testing.killpoints import install_from_env

        install_from_env()
        cli.main(args=args, prog_name="samwsss")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 (reported in the log and by the exit code)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def wait_exit(pid: int, timeout: float = 120.0) -> int:
    """Reap child ``pid``: its exit code, or minus the signal that killed it."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} still ran after {timeout} s: killed")
        time.sleep(0.02)


def wait_stopped(pid: int, timeout: float = 120.0) -> None:
    """Wait until child ``pid`` stops itself (a ``:STOP`` kill point)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
        if done and os.WIFSTOPPED(status):
            return
        if done:
            raise AssertionError(
                f"child {pid} ended ({os.waitstatus_to_exitcode(status)}) before its stop point"
            )
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not stop within {timeout} s: killed")
        time.sleep(0.02)


#: Keys of ``evaluation.json`` that differ between two runs of the same outputs.
EVALUATION_VOLATILE = ("predictions", "elapsed_s")


def output_hashes(out: Path) -> dict[str, str]:
    """SHA-256 of every file of a run folder but the manifests (timings, counts) and the
    lock folder: masks, plain masks, instances, overlays, failures, config, evaluation
    (``evaluation.json`` without its folder path and timing)."""
    hashes = {}
    for path in sorted(out.rglob("*")):
        name = str(path.relative_to(out))
        if not path.is_file() or path.name.startswith("manifest") or LOCK_DIR in name:
            continue
        data = path.read_bytes()
        if name == "evaluation.json":
            report = {
                key: value
                for key, value in json.loads(data).items()
                if key not in EVALUATION_VOLATILE
            }
            data = json.dumps(report, sort_keys=True).encode("utf-8")
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


def manifest_config(out: Path) -> object:
    """The run identity saved in ``manifest.json``."""
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))["config"]


def leftovers(out: Path) -> list[str]:
    """Temporary files, the lock folder and locks left in a run folder (none once it ends)."""
    return [
        str(path.relative_to(out))
        for path in sorted(out.rglob("*"))
        if path.name.startswith(".tmp-") or LOCK_DIR in path.relative_to(out).parts
    ]


def failure_ids(out: Path) -> list[str]:
    """The image ids of every failure line of every shard (duplicates kept)."""
    return [
        json.loads(line)["image_id"]
        for path in sorted((out / "failures").glob("failures*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
