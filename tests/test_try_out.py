"""``samwsss try-out``: tiny random models, the real text-input run, report and both exports,
offline, every output present and labelled as random."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from samwsss.cli import cli, try_out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Offline environment, and every socket connection or name lookup recorded and refused."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("the try-out test allows no network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.mark.slow
def test_try_out_writes_every_output_marked_random(tmp_path: Path, no_network: list[str]) -> None:
    out = tmp_path / "try-out"
    result = CliRunner().invoke(
        cli, ["try-out", "--out", str(out), "--max-images", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert no_network == [], f"network access attempted: {no_network}"
    assert result.output.count("RANDOM WEIGHTS") >= 2  # at the start and at the end
    assert "MEANINGLESS" in result.output and "samwsss zero-shot" in result.output

    run = out / try_out.RUN_DIR
    for marker in (out, run, out / try_out.MODELS_DIR):
        assert "RANDOM" in (marker / try_out.MARKER_NAME).read_text(encoding="utf-8")
    # the run's own records name the random models' folders
    config = (run / "config.yaml").read_text(encoding="utf-8")
    manifest = (run / "manifest.json").read_text(encoding="utf-8")
    for name in (try_out.BOXER_DIR, try_out.MASKER_DIR):
        assert name in config and name in manifest

    masks = sorted((run / "masks").glob("*.png"))
    assert len(masks) == 2 and all(path.stat().st_size > 0 for path in masks)
    page = run / "report" / "index.html"
    assert page.stat().st_size > 0 and try_out.BOXER_DIR in page.read_text(encoding="utf-8")
    results = json.loads((run / "export/coco/results.json").read_text(encoding="utf-8"))
    dataset = json.loads((run / "export/coco/dataset.json").read_text(encoding="utf-8"))
    assert results and len(dataset["images"]) == 2
    labels = sorted((run / "export/yolo-seg/labels").glob("*.txt"))
    assert len(labels) == 2 and all(path.stat().st_size > 0 for path in labels)
    assert (run / "export/yolo-seg/dataset.yaml").is_file()


def test_try_out_needs_data_without_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(try_out, "repository_examples", lambda: None)
    result = CliRunner().invoke(cli, ["try-out", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2
    assert "--data is required" in result.output and "examples/" in result.output
    assert not (tmp_path / "t").exists()


def test_try_out_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(cli, ["try-out", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "not empty" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine.txt"]


def test_offline_sets_and_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with try_out.offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "TRANSFORMERS_OFFLINE" not in os.environ
