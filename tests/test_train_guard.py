"""The trainer's divergence guard (``divergence_factor``, :class:`TrainingDiverged`) and the
``train-segmenter`` error for initial weights that cannot be downloaded."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

import samwsss.training.train as train_module
from samwsss.cli import cli
from samwsss.training.config import TrainConfig, config_from_dict
from samwsss.training.guard import DivergenceGuard
from samwsss.training.state import load_training_checkpoint
from samwsss.training.train import Trainer, TrainingDiverged, initial_weights_error
from tests.data_fixtures import make_voc_tree
from tests.deeplab_fixtures import (
    ShapesDataset,
    as_rank,
    one_torch_thread,
    run_two_ranks,
    tiny_config,
)

TINY_YAML = {
    "backbone": "custom",
    "backbone_layers": [1, 1, 1, 1],
    "width_per_group": 8,
    "atrous_rates": [1, 2],
    "iterations": 4,
    "batch_size": 2,
    "crop_size": 32,
    "workers": 0,
    "log_every": 1,
    "checkpoint_every": 1,
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _explode_loss(monkeypatch: pytest.MonkeyPatch, from_call: int, scale: float) -> None:
    """Multiply the training loss (so its gradients too) by ``scale`` from the
    ``from_call``-th (0-based) loss of this process on."""
    real = train_module.arch_forward_loss
    calls = [0]

    def exploding(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = real(*args, **kwargs)
        calls[0] += 1
        return loss * scale if calls[0] > from_call else loss

    monkeypatch.setattr(train_module, "arch_forward_loss", exploding)


def _scale_logged_loss(monkeypatch: pytest.MonkeyPatch, from_iteration: int, scale: float) -> None:
    """Multiply the loss the trainer logs (not the one it trains with) by ``scale`` from
    ``from_iteration`` (0-based) on."""
    real = Trainer._step

    def step(self: Trainer, session: Any, loader: Any, iteration: int) -> Any:
        loss, lr = real(self, session, loader, iteration)
        return (loss * scale if iteration >= from_iteration else loss), lr

    monkeypatch.setattr(Trainer, "_step", step)


def _finite_weights(state: dict[str, Any]) -> bool:
    return all(
        bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point()
    )


def test_an_exploding_loss_stops_before_the_checkpoint_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = ShapesDataset(6, (40, 40), seed=1)
    config = tiny_config(iterations=8, checkpoint_every=2, crop_size=32)
    _explode_loss(monkeypatch, from_call=5, scale=1e6)  # iteration 6 (1-based) explodes
    with pytest.raises(TrainingDiverged) as caught:
        Trainer(config, dataset, tmp_path / "run").run()
    error = caught.value
    assert error.iteration == 6 and error.checkpoint_iteration == 4
    assert error.reference is not None and error.loss > 1e3 * error.reference
    message = str(error)
    assert "diverged at iteration 6" in message
    assert f"loss {error.loss:.4g}" in message and f"{error.reference:.4g}" in message
    assert "learning rate" in message and "--init none" in message and "masks" in message
    assert "last.pt (iteration 4)" in message
    # iteration 6 is a checkpoint iteration: nothing was written from the diverged state
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_training_checkpoint(last)
    assert state["iteration"] == 4 and _finite_weights(state)
    assert state["guard"]["reference"] == error.reference
    assert not (tmp_path / "run" / "model_final.pt").exists()
    monkeypatch.undo()
    resumed = Trainer(config, dataset, tmp_path / "run", resume=True).run()
    assert resumed.start_iteration == 4 and resumed.iterations == 8
    assert math.isfinite(resumed.last_loss)
    final = load_training_checkpoint(last)
    assert final["iteration"] == 8 and final["guard"]["reference"] == error.reference


def test_a_checkpoint_between_log_rows_checks_the_loss_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(iterations=8, log_every=4, checkpoint_every=2, crop_size=32)
    _explode_loss(monkeypatch, from_call=4, scale=math.inf)  # iterations 5.. are inf
    with pytest.raises(TrainingDiverged, match=r"iteration 6 \(mean loss of iterations 5..6\)"):
        Trainer(config, ShapesDataset(6, (40, 40), seed=1), tmp_path / "run").run()
    state = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["iteration"] == 4 and _finite_weights(state)
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["4"]  # no log row from 5..6


def test_a_huge_learning_rate_stops_the_run(tmp_path: Path) -> None:
    config = tiny_config(lr=1e4, iterations=20, checkpoint_every=1, crop_size=32)
    with pytest.raises(TrainingDiverged) as caught:
        Trainer(config, ShapesDataset(6, (40, 40), seed=1), tmp_path / "run").run()
    error = caught.value
    assert error.iteration < 20 and f"diverged at iteration {error.iteration}:" in str(error)
    state = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["iteration"] == error.iteration - 1 and _finite_weights(state)


@pytest.mark.parametrize(
    ("factor", "scale", "stops"),
    [(None, 1e6, False), (0.0, 1e6, False), (1e7, 1e6, False), (1e3, 1e6, True),
     (0.0, math.nan, True), (None, math.inf, True)],
)  # fmt: skip
def test_divergence_factor_off_keeps_the_nonfinite_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factor: float | None, scale: float, stops: bool
) -> None:
    config = tiny_config(iterations=4, crop_size=32, divergence_factor=factor)
    _scale_logged_loss(monkeypatch, from_iteration=2, scale=scale)
    trainer = Trainer(config, ShapesDataset(4, (40, 40), seed=1), tmp_path / "run")
    if stops:
        with pytest.raises(TrainingDiverged, match="diverged at iteration 3"):
            trainer.run()
    else:
        assert trainer.run().iterations == 4


def test_a_normal_run_keeps_the_first_logged_loss_as_its_reference(tmp_path: Path) -> None:
    result = Trainer(
        tiny_config(iterations=3, log_every=2, checkpoint_every=3, crop_size=32),
        ShapesDataset(4, (40, 40), seed=1),
        tmp_path / "run",
    ).run()
    assert result.iterations == 3 and (tmp_path / "run" / "model_final.pt").is_file()
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    first = float(rows[1].split(",")[1])
    state = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["guard"]["reference_iteration"] == 2
    assert state["guard"]["reference"] == pytest.approx(first, abs=1e-6)


def test_the_guard_and_its_config_field() -> None:
    assert TrainConfig().divergence_factor == 1e3
    assert config_from_dict({"divergence_factor": "1e4"}).divergence_factor == 1e4
    assert config_from_dict({"divergence_factor": None}).divergence_factor is None
    with pytest.raises(ValueError, match="divergence_factor must be a number >= 0"):
        TrainConfig(divergence_factor=-1).validate()
    guard = DivergenceGuard(10.0)
    guard.check(0.0, 1, 1)  # a zero loss is no reference
    guard.check(2.0, 2, 2)
    guard.check(19.0, 3, 3)
    assert guard.state() == {"reference": 2.0, "reference_iteration": 2}
    with pytest.raises(TrainingDiverged, match=r"loss 21 is 10.5 x the reference loss 2"):
        guard.check(21.0, 4, 4)
    resumed = DivergenceGuard(None, guard.state())
    resumed.check(1e9, 5, 5)
    with pytest.raises(TrainingDiverged, match="loss nan is not finite"):
        resumed.check(math.nan, 6, 6)


def _cli_args(voc: Path, run: Path, config: Path, *extra: str) -> list[str]:
    return [
        "train-deeplab", "--data", str(voc), "--split", "train_aug", "--out", str(run),
        "--config", str(config), "--init", "none", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_cli_reports_divergence_without_a_traceback_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    voc = make_voc_tree(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_YAML), encoding="utf-8")
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, _cli_args(voc, run, config, "--set", "lr=1e4"))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Error: training diverged at iteration 2" in result.output
    assert "Traceback" not in result.output and "Likely causes" in result.output
    assert load_training_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    # a rise the user expects: resume with the ratio check off (a resumable setting)
    run2 = tmp_path / "run2"
    _scale_logged_loss(monkeypatch, from_iteration=2, scale=1e6)
    result = runner.invoke(cli, _cli_args(voc, run2, config))
    assert result.exit_code == 1 and "diverged at iteration 3" in result.output
    again = runner.invoke(cli, ["train-deeplab", "--out", str(run2), "--resume"])
    assert again.exit_code == 1 and "diverged at iteration 3" in again.output
    resumed = runner.invoke(
        cli, ["train-deeplab", "--out", str(run2), "--resume", "--set", "divergence_factor=0"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "trained 4 iterations (from 2)" in resumed.output


# --------------------------------------------------------------------------- DDP
def _diverging_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One gloo process; rank 0's loss becomes infinite at iteration 3 (1-based)."""
    as_rank(rank, world_size, port)
    real = Trainer._step

    def step(self: Trainer, session: Any, loader: Any, iteration: int) -> Any:
        loss, lr = real(self, session, loader, iteration)
        return (loss * math.inf if rank == 0 and iteration >= 2 else loss), lr

    Trainer._step = step  # type: ignore[method-assign]  # a forked child of its own
    config = tiny_config(iterations=6, checkpoint_every=1, crop_size=32)
    try:
        Trainer(config, ShapesDataset(6, (40, 40), seed=2), Path(out_dir) / "run").run()
    except TrainingDiverged as error:
        (Path(out_dir) / f"rank{rank}.txt").write_text(str(error.iteration))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_every_rank_stops_at_the_same_iteration(tmp_path: Path) -> None:
    run_two_ranks(_diverging_worker, tmp_path)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["3", "3"]
    state = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["iteration"] == 2 and state["world_size"] == 2


def _missing_init_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One gloo process whose initial weights file is missing (rank 0 loads first)."""
    from tests.segmenter_fixtures import TinyConvArch

    as_rank(rank, world_size, port)
    config = tiny_config(iterations=2, crop_size=32, init=str(Path(out_dir) / "gone" / "w.pt"))
    try:
        Trainer(
            config, ShapesDataset(4, (40, 40)), Path(out_dir) / "run", arch=TinyConvArch()
        ).run()
    except ValueError as error:
        (Path(out_dir) / f"rank{rank}.txt").write_text(str(error))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_missing_initial_weights_under_ddp_stop_every_rank(tmp_path: Path) -> None:
    """Rank 0 loads the initial weights while the others wait: its failure releases them."""
    run_two_ranks(_missing_init_worker, tmp_path)
    for rank in (0, 1):
        assert "neither an existing file or folder" in (tmp_path / f"rank{rank}.txt").read_text()


# --------------------------------------------------------------------------- offline init
def test_train_segmenter_offline_names_the_weights_and_the_download_command(
    tmp_path: Path,
) -> None:
    """The reported case: default --arch, empty Hugging Face cache, hub unreachable."""
    voc = make_voc_tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    command = [
        sys.executable, "-m", "samwsss", "train-segmenter", "--data", str(voc), "--split",
        "train", "--out", str(tmp_path / "run"), "--device", "cpu", "--set", "workers=0",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    hub_id = "microsoft/swin-large-patch4-window12-384-in22k"
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 3, done.stderr
    assert f"`hf download {hub_id}`" in done.stderr and "--init DIR" in done.stderr
    assert str(tmp_path / "hf") in done.stderr  # the cache it looked in
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["segformer-b5", "mask2former-swin-base", "eomt-dinov2-large"])
def test_every_arch_reports_missing_hub_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from huggingface_hub import constants

    from samwsss.segnets.registry import ARCHS

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    voc = make_voc_tree(tmp_path)
    args = [
        "train-segmenter", "--arch", name, "--data", str(voc), "--split", "train", "--out",
        str(tmp_path / "run"), "--device", "cpu", "--set", "workers=0",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    hub_id = ARCHS[name].init
    assert f"the Hugging Face hub model {hub_id}" in result.output
    assert f"hf download {hub_id}" in result.output and "--init DIR" in result.output


def test_initial_weights_error_for_local_paths(tmp_path: Path) -> None:
    folder = tmp_path / "backbone"
    folder.mkdir()
    error = OSError("Permission denied")
    assert "could not read the initial weights" in str(
        initial_weights_error("segformer-b5", str(folder), error)
    )
    for missing in (str(tmp_path / "gone"), "weights.pth", "~/x/y/z"):
        message = str(initial_weights_error("segformer-b5", missing, error))
        assert "neither an existing file or folder nor a Hugging Face hub id" in message
