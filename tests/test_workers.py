"""DataLoader workers exit within seconds when their parent is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

# A run whose decode workers are busy on a slow image when the main process is killed.
_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from samwsss.runs.runner import _load
    from samwsss.training.predict import iterate_images

    class SlowImages:
        ids = [str(i) for i in range(16)]
        def load_image(self, image_id):
            time.sleep(120)
        def labels(self, image_id):
            return None

    which = sys.argv[1]
    if which == "runner":
        batches = iter(_load(SlowImages(), [["0", "1"], ["2", "3"]], 2, False))
    else:
        batches = iterate_images(SlowImages(), SlowImages.ids, 2, 2)
    print("ready", flush=True)
    next(batches)
    """
)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("which", ["runner", "predict"])
def test_workers_exit_soon_after_their_parent_is_killed(tmp_path: Path, which: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    parent = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, which], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = _children(parent.pid)
            time.sleep(0.1)
        assert len(workers) >= 2, "the DataLoader workers did not start"
        time.sleep(0.5)  # let them enter the slow decode
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent by 5 s"
