"""Outputs are readable like any other tool's files: new files honour the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from samwsss import atomic
from samwsss.pipeline.batching import Shard
from samwsss.runs.lock import RunLock, lock_path


@pytest.fixture
def umask_027() -> Iterator[None]:
    """Run with umask 027 (group may read, others nothing), then put the old one back."""
    previous = os.umask(0o027)
    atomic._process_umask.cache_clear()
    yield
    os.umask(previous)
    atomic._process_umask.cache_clear()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_honour_the_umask(tmp_path: Path, umask_027: None) -> None:
    atomic.atomic_write_text(tmp_path / "a.txt", "x")
    atomic.atomic_write_bytes(tmp_path / "b.png", b"x", fsync=False)
    atomic.atomic_write_json(tmp_path / "c.json", {"a": 1})
    with open(tmp_path / "plain.txt", "w") as handle:  # what any other tool would get
        handle.write("x")
    assert _mode(tmp_path / "plain.txt") == 0o640
    for name in ("a.txt", "b.png", "c.json"):
        assert _mode(tmp_path / name) == 0o640, name


def test_the_lock_file_honours_the_umask(tmp_path: Path, umask_027: None) -> None:
    shard = Shard(0, 1)
    lock = RunLock.acquire(tmp_path / "run", shard)
    try:
        assert _mode(lock_path(tmp_path / "run", shard)) == 0o640
    finally:
        lock.release()


def test_a_run_writes_0644_files_under_umask_022(
    tmp_path: Path, models: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from samwsss.cli import cli
    from tests.data_fixtures import make_voc_tree

    previous = os.umask(0o022)
    atomic._process_umask.cache_clear()
    try:
        voc = make_voc_tree(tmp_path / "voc")
        out = tmp_path / "run"
        result = CliRunner().invoke(
            cli,
            ["text-input", "--data", str(voc), "--split", "train", "--out", str(out),
             "--plain", "--instances", "--workers", "0", *models],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
        atomic._process_umask.cache_clear()
    files = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.parent.name == "masks" for path in files)
    assert {path.name for path in files} >= {"manifest.json", "config.yaml", "evaluation.json"}
    wrong = {str(path.relative_to(out)): oct(_mode(path)) for path in files if _mode(path) != 0o644}
    assert not wrong, f"files not 0644 under umask 022: {wrong}"
