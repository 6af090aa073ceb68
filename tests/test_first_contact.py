"""A run's first seconds: what needs no weights is answered before any model loads, missing
weights are named at once when they cannot be downloaded, and a failed run leaves no
empty ``--out`` behind.

No test reaches a hub: ``HF_HUB_OFFLINE=1`` (conftest), an empty ``HF_HOME`` each, and
the reachability probe replaced wherever the code under test would ask the network.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from samwsss import devices, registry, weights
from samwsss.cli import cli
from samwsss.pipeline import builders
from samwsss.pipeline.config import PipelineConfig

#: Registry name -> hub id of the models a default zero-shot run loads.
DEFAULT_HUB_IDS = {
    "grounding-dino-tiny": "IDEA-Research/grounding-dino-tiny",
    "sam-vit-huge": "facebook/sam-vit-huge",
    "ram-plus-swin-large-14m": "xinyu1205/recognize-anything-plus-model",
}


class ModelLoaded(AssertionError):
    """A model began loading where the test expects none to."""


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline, with empty Hugging Face, torch hub and samwsss caches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("SAMWSSS_RAM_DATA", raising=False)
    monkeypatch.setenv("SAMWSSS_CACHE", str(tmp_path / "samwsss-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture()
def no_loading(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``registry.create`` records what would load, then raises :class:`ModelLoaded`."""
    calls: list[tuple[str, str]] = []

    def refuse(kind: str, name_or_path: Any, **kwargs: Any) -> Any:
        calls.append((kind, str(name_or_path)))
        raise ModelLoaded(f"{kind} {name_or_path} began loading")

    # builders holds its own reference to create (imported before either is patched)
    monkeypatch.setattr(builders, "create", refuse)
    monkeypatch.setattr(registry, "create", refuse)
    return calls


@pytest.fixture()
def hub_online(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """``HF_HUB_OFFLINE`` unset; the probe answers for every host (and records them)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    probed: list[list[str]] = []

    def answer(hosts: Any, timeout: float) -> dict[str, str | None]:
        probed.append(list(hosts))
        return dict.fromkeys(probed[-1])

    monkeypatch.setattr(weights, "probe", answer)
    return probed


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    """A plain folder of three small images."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "b", "c"):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{stem}.jpg")
    return folder


@pytest.fixture()
def labels(tmp_path: Path) -> Path:
    """Image labels of :func:`images`, VOC class names."""
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"a.jpg": ["cat"], "b.jpg": ["dog"], "c.jpg": ["person"]}))
    return path


def _invoke(args: list[str]) -> tuple[Result, float]:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    return result, time.perf_counter() - start


# -- missing weights ---------------------------------------------------------------------------
def test_offline_missing_weights_fail_fast_naming_each_model(
    images: Path, tmp_path: Path, no_loading: list[tuple[str, str]]
) -> None:
    out = tmp_path / "runs" / "examples"
    result, elapsed = _invoke(
        ["zero-shot", "--data", str(images), "--mapping", "voc", "--out", str(out),
         "--overlays", "3"]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert no_loading == []
    cli_name = weights.hub_cli()
    for name, hub_id in DEFAULT_HUB_IDS.items():
        assert name in result.output and hub_id in result.output
    assert f"{cli_name} download IDEA-Research/grounding-dino-tiny\n" in result.output
    assert f"{cli_name} download facebook/sam-vit-huge\n" in result.output
    assert (
        f"{cli_name} download xinyu1205/recognize-anything-plus-model "
        "ram_plus_swin_large_14m.pth" in result.output
    )
    for option in ("--boxer PATH", "--masker PATH", "--tagger PATH", "--ram-vocabulary FILE"):
        assert option in result.output
    assert "HF_HUB_OFFLINE" in result.output
    assert result.output.count("IDEA-Research/grounding-dino-tiny\n") == 1  # said once
    assert "Traceback" not in result.output
    assert not out.exists() and not out.parent.exists()


def test_an_unreachable_hub_is_probed_once_and_named(
    images: Path, labels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hub_online: list[list[str]], no_loading: list[tuple[str, str]],
) -> None:  # fmt: skip
    def unreachable(hosts: Any, timeout: float) -> dict[str, str | None]:
        hub_online.append(list(hosts))
        assert timeout <= 3
        return dict.fromkeys(hub_online[-1], "[Errno -2] Name or service not known")

    monkeypatch.setattr(weights, "probe", unreachable)
    out = tmp_path / "out"
    result, elapsed = _invoke(
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         "--out", str(out), "--masker", "sam-vit-base-official"]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert elapsed < 10 and no_loading == []
    assert len(hub_online) == 1  # one probe call for every host
    assert sorted(hub_online[0]) == ["https://dl.fbaipublicfiles.com", "https://huggingface.co"]
    assert "the Hugging Face Hub (https://huggingface.co) cannot be reached" in result.output
    assert "IDEA-Research/grounding-dino-tiny" in result.output
    official = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert official in result.output and "--masker PATH" in result.output
    assert not out.exists()


def test_a_reachable_hub_downloads_missing_weights_as_before(
    images: Path, labels: Path, tmp_path: Path,
    hub_online: list[list[str]], no_loading: list[tuple[str, str]],
) -> None:  # fmt: skip
    from huggingface_hub import constants

    result = CliRunner().invoke(
        cli,
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert isinstance(result.exception, ModelLoaded), result.output
    assert no_loading == [("boxer", "grounding-dino-tiny")]
    assert hub_online == [["https://huggingface.co"]]
    assert constants.HF_HUB_OFFLINE is False  # downloads are allowed
    assert not (tmp_path / "out").exists()


def test_a_gated_model_without_a_token_says_how_to_log_in(
    images: Path, labels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hub_online: list[list[str]], no_loading: list[tuple[str, str]],
) -> None:  # fmt: skip
    monkeypatch.setattr(weights, "_hub_token", lambda: None)
    result, _ = _invoke(
        ["zero-shot", "--data", str(images), "--mapping", "voc", "--preset", "sam3",
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "facebook/sam3" in result.output and "HF_TOKEN" in result.output
    assert "auth login" in result.output or "huggingface-cli login" in result.output
    assert no_loading == []


def _cache_repo(hub: Path, repo_id: str, files: dict[str, str]) -> Path:
    """Lay out ``repo_id`` in a Hugging Face cache as a download leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


def test_cached_hub_models_load_without_asking_the_unreachable_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_online: list[list[str]]
) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hf-home" / "hub"
    _cache_repo(hub, "IDEA-Research/grounding-dino-tiny", {"config.json": "{}", "model.safetensors": "x"})  # fmt: skip
    _cache_repo(hub, "facebook/sam-vit-huge", {"config.json": "{}", "model.safetensors": "x"})
    monkeypatch.setattr(weights, "probe", lambda hosts, timeout: dict.fromkeys(hosts, "down"))
    needed = builders.run_weights(PipelineConfig(), with_tagger=False)
    assert [entry.available() for entry in needed] == [True, True]
    offline = weights.preflight(needed)
    assert offline is True
    with weights.hub_offline(offline):
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False


def test_a_sharded_model_counts_as_cached_only_with_every_shard(tmp_path: Path) -> None:
    hub = tmp_path / "hf-home" / "hub"
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    snapshot = _cache_repo(
        hub, "owner/sharded",
        {"config.json": "{}", "model.safetensors.index.json": json.dumps(index),
         "model-1.safetensors": "x"},
    )  # fmt: skip
    assert not weights.in_hub_cache("owner/sharded")
    (snapshot / "model-2.safetensors").write_text("x")
    assert weights.in_hub_cache("owner/sharded")
    assert not weights.in_hub_cache("owner/config-only")


# -- checks made before any model loads -----------------------------------------------------------
def _cheap_cases(tmp_path: Path, images: Path, labels: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    empty_folder = tmp_path / "empty-model"
    empty_folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    base = ["--data", str(images), "--mapping", "voc"]
    text_input = ["text-input", *base, "--labels", str(labels)]
    return {
        "no labels": (["text-input", *base], "--labels"),
        "text file as masker": ([*text_input, "--masker", str(text)], "text file"),
        "file as boxer": ([*text_input, "--boxer", str(text)], "is a file, not a folder"),
        "folder without config": ([*text_input, "--masker", str(empty_folder)], "config.json"),
        "missing masker path": (
            [*text_input, "--masker", str(tmp_path / "models" / "sam")],
            "no such file or folder",
        ),
        "missing tagger file": (
            ["zero-shot", *base, "--tagger", str(tmp_path / "ram.pth")],
            "no such file or folder",
        ),
        "missing labels file": (
            ["text-input", *base, "--labels", str(tmp_path / "nope.json")],
            "no such file",
        ),
        "gt-dir a file": ([*text_input, "--gt-dir", str(text)], "is a file, not a folder"),
        "out below a file": ([*text_input, "--out", str(a_file / "run")], "is a file"),
    }


CHEAP_CASES = (
    "no labels", "text file as masker", "file as boxer", "folder without config",
    "missing masker path", "missing tagger file",
    "missing labels file", "gt-dir a file", "out below a file",
)  # fmt: skip


@pytest.mark.parametrize("case", CHEAP_CASES)
def test_checks_that_need_no_weights_come_before_any_model(
    case: str, images: Path, labels: Path, tmp_path: Path,
    no_loading: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def no_preflight(*args: Any, **kwargs: Any) -> Any:
        raise ModelLoaded("the weights preflight ran before the cheap checks")

    monkeypatch.setattr(builders, "run_weights", no_preflight)
    args, expected = _cheap_cases(tmp_path, images, labels)[case]
    out = tmp_path / "out"
    if "--out" not in args:
        args = [*args, "--out", str(out)]
    result, elapsed = _invoke(args)
    assert result.exit_code == 1, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output and no_loading == []
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert not out.exists()


def test_an_unknown_model_name_is_refused_with_the_closest_names(
    images: Path, labels: Path, tmp_path: Path, no_loading: list[tuple[str, str]]
) -> None:
    result, elapsed = _invoke(
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         "--masker", "sam-vit-hug", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "--masker 'sam-vit-hug'" in result.output
    assert "did you mean sam-vit-huge" in result.output
    assert no_loading == [] and elapsed < 5 and not (tmp_path / "out").exists()


def test_cuda_without_a_driver_is_refused_before_torch_is_asked(
    images: Path, labels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    no_loading: list[tuple[str, str]],
) -> None:  # fmt: skip
    monkeypatch.setattr(devices, "cuda_driver_present", lambda: False)
    out = tmp_path / "out"
    result, elapsed = _invoke(
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         "--device", "cuda", "--out", str(out)]
    )  # fmt: skip
    assert result.exit_code == 1
    assert "device 'cuda' requested but CUDA is not available" in result.output
    assert "use cpu" in result.output and no_loading == [] and not out.exists()
    assert elapsed < 5


def test_a_cuda_index_the_machine_lacks_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(devices, "cuda_driver_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"'cuda:3'.* has 1 CUDA device \(cuda:0 to cuda:0\)"):
        devices.check_device("cuda:3")
    devices.check_device("cuda:0")


@pytest.mark.skipif(sys.platform == "darwin", reason="MPS may be there on macOS")
def test_mps_off_macos_is_refused() -> None:
    with pytest.raises(ValueError, match="MPS .* not available"):
        devices.check_device("mps")


def test_predict_refuses_a_missing_gpu_before_loading_anything(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ModelLoaded("predict went past the device check")

    monkeypatch.setattr(devices, "cuda_driver_present", lambda: False)
    monkeypatch.setattr("samwsss.data.open_dataset", refuse)
    monkeypatch.setattr("samwsss.training.predict.load_checkpoint_model", refuse)
    checkpoint = tmp_path / "model_final.pt"
    checkpoint.write_bytes(b"PK\x03\x04")
    result = CliRunner().invoke(
        cli,
        ["predict", "--checkpoint", str(checkpoint), "--data", str(images), "--out",
         str(tmp_path / "pred"), "--device", "cuda"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "CUDA is not available" in result.output


# -- the output folder ------------------------------------------------------------------------------
def test_a_run_failing_after_making_out_removes_it_only_while_empty(
    images: Path, labels: Path, tiny_run_options: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def make_then_fail(pipe: Any, dataset: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        (options.out / "locks").mkdir(parents=True)
        raise ValueError("failed before writing anything")

    monkeypatch.setattr("samwsss.runs.runner.run_dataset", make_then_fail)
    args = ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
            *tiny_run_options]  # fmt: skip
    fresh = tmp_path / "fresh"
    result = CliRunner().invoke(cli, [*args, "--out", str(fresh)])
    assert result.exit_code == 1 and "failed before writing anything" in result.output
    assert not fresh.exists()

    earlier = tmp_path / "earlier"  # made by someone else: kept, even empty
    earlier.mkdir()
    result = CliRunner().invoke(cli, [*args, "--out", str(earlier)])
    assert result.exit_code == 1 and earlier.is_dir()


def test_a_failed_run_keeps_what_it_wrote(
    images: Path, labels: Path, tiny_run_options: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def write_then_fail(pipe: Any, dataset: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        options.out.mkdir(parents=True)
        (options.out / "config.yaml").write_text("x: 1\n")
        raise ValueError("failed after writing")

    monkeypatch.setattr("samwsss.runs.runner.run_dataset", write_then_fail)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         *tiny_run_options, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1 and (out / "config.yaml").is_file()


# -- all weights local ------------------------------------------------------------------------------
def test_a_run_with_local_weights_works_and_asks_no_host(
    images: Path, labels: Path, tiny_run_options: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, hub_online: list[list[str]],
) -> None:  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["text-input", "--data", str(images), "--mapping", "voc", "--labels", str(labels),
         "--workers", "0", *tiny_run_options, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 images processed" in result.output
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.png", "b.png", "c.png"]
    assert hub_online == []  # nothing comes from a hub: no probe


# -- the hub client's log lines ---------------------------------------------------------------------
def test_hub_retries_print_one_line_per_repository(caplog: pytest.LogCaptureFixture) -> None:
    weights.tidy_hub_logging()
    weights.tidy_hub_logging()  # idempotent: one filter
    library = logging.getLogger("huggingface_hub")
    assert not [h for h in library.handlers if type(h) is logging.StreamHandler]
    http = logging.getLogger("huggingface_hub.utils._http")
    assert sum(isinstance(f, weights.HubRetryFilter) for f in http.filters) == 1
    url = "https://huggingface.co/IDEA-Research/grounding-dino-tiny/resolve/main/config.json"
    other = "https://huggingface.co/facebook/sam-vit-huge/resolve/main/config.json"
    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        for attempt in range(1, 6):
            http.warning(f"'[Errno -2] Name or service not known' thrown while requesting HEAD {url}")  # fmt: skip
            http.warning(f"Retrying in {attempt}s [Retry {attempt}/5].")
        http.warning(f"'timed out' thrown while requesting HEAD {other}")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "IDEA-Research/grounding-dino-tiny" in lines[0] and "retrying" in lines[0]
    assert "facebook/sam-vit-huge" in lines[1]


# -- the reachability probe -------------------------------------------------------------------------
@pytest.fixture()
def local_server() -> Iterator[str]:
    """An HTTP server on the loopback interface answering every request with 404."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_probe_tells_an_answering_host_from_a_closed_port(local_server: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        start = time.perf_counter()
        answers = weights.probe([local_server, dead], timeout=3.0)
    assert answers[local_server] is None  # any HTTP answer, even an error, means reachable
    assert answers[dead] is not None and time.perf_counter() - start < 3.5
