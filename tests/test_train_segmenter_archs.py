"""``samwsss train-segmenter`` with the real architectures (tiny random backbones given as
local folders, the path a user's own download takes): train, resume exactly, predict and
evaluate through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.testing.segnets import write_tiny_backbone
from tests.data_fixtures import make_voc_tree
from tests.torch_fixtures import one_torch_thread


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


@pytest.mark.parametrize(("kind", "family"), [("mit", "segformer"), ("swin", "mask2former")])
def test_train_resume_predict_with_a_local_backbone_folder(
    tmp_path: Path, kind: str, family: str
) -> None:
    voc = make_voc_tree(tmp_path)
    backbone = write_tiny_backbone(kind, tmp_path / kind)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {"iterations": 2, "batch_size": 2, "crop_size": 64, "workers": 0,
             "checkpoint_every": 1}
        )
    )  # fmt: skip
    run = tmp_path / "run"
    runner = CliRunner()
    args = [
        "train-segmenter", "--arch", str(backbone), "--data", str(voc), "--split",
        "train_aug", "--out", str(run), "--config", str(config), "--device", "cpu",
    ]  # fmt: skip
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "trained 2 iterations (from 0)" in result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"] == "adamw" and saved["init"] == str(backbone)
    state = torch.load(run / "model_final.pt", weights_only=True)
    assert family in json.dumps(state["architecture"]).lower() or family in state["arch"]
    again = runner.invoke(cli, ["train-segmenter", "--out", str(run), "--resume"])
    assert again.exit_code == 0, again.output
    assert "trained 2 iterations (from 2)" in again.output
    preds = tmp_path / "preds"
    predict = [
        "predict", "--checkpoint", str(run / "model_final.pt"), "--data", str(voc), "--split",
        "val", "--out", str(preds), "--workers", "0", "--device", "cpu", "--flip",
    ]  # fmt: skip
    result = runner.invoke(cli, predict, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote 2 predictions" in result.output and "mIoU" in result.output


@pytest.mark.parametrize(
    ("name", "kind", "options"),
    [
        ("segformer-b5", "mit", {}),
        ("mask2former-swin-base", "swin", {"num_points": 12}),  # sampled points: RNG resumes
        ("eomt-dinov2-large", "dinov2", {}),
    ],
)
def test_a_killed_run_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str, options: dict
) -> None:
    import samwsss.training.train as train_module
    from samwsss.testing.segnets import tiny_arch
    from samwsss.training.train import Trainer
    from tests.deeplab_fixtures import ShapesDataset
    from tests.segmenter_fixtures import tiny_arch_config

    arch = tiny_arch(name, **options)
    crop = int(getattr(arch, "image_size", 32))
    dataset = ShapesDataset(4, (crop + 8, crop + 12), seed=2)
    backbone = write_tiny_backbone(kind, tmp_path / kind)
    config = tiny_arch_config(
        arch=arch.name, init=str(backbone), iterations=4, batch_size=2,
        checkpoint_every=1, crop_size=crop,
    )  # fmt: skip
    Trainer(config, dataset, tmp_path / "a", arch=tiny_arch(name, **options)).run()
    real = train_module.set_learning_rates

    def killed(optimizer, cfg, iteration):  # type: ignore[no-untyped-def]
        if iteration == 2:
            raise KeyboardInterrupt
        return real(optimizer, cfg, iteration)

    monkeypatch.setattr(train_module, "set_learning_rates", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, dataset, tmp_path / "b", arch=tiny_arch(name, **options)).run()
    monkeypatch.undo()
    Trainer(config, dataset, tmp_path / "b", resume=True, arch=tiny_arch(name, **options)).run()
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 4 if "iteration" in a else True
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, moments in a["optimizer"]["state"].items():
        for moment, value in moments.items():
            assert torch.equal(value, b["optimizer"]["state"][index][moment]), (index, moment)
