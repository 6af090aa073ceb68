"""Every checkpoint loader turns a file that is not a checkpoint into one clear error."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from samwsss.checkpoints import CheckpointError, load_checkpoint, tensor_state
from samwsss.cli import cli
from samwsss.ram.checkpoint import read_checkpoint
from samwsss.segnets.deeplab import build_deeplab
from samwsss.stages.masker_official import load_official_state_dict
from samwsss.training.predict import load_checkpoint_model
from samwsss.training.state import load_training_checkpoint
from tests.data_fixtures import make_voc_tree


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text_h(path: Path) -> None:
    # torch's weights-only unpickler raises KeyError: 104 on this (opcode 'h')
    path.write_text("hello, I am not a checkpoint\n")


def _text(path: Path) -> None:
    path.write_text("a: 1\nb: 2\n")


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a torch archive")


def _tensor(path: Path) -> None:
    torch.save(torch.zeros(2), path)


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "empty": _empty,
    "text-h": _text_h,
    "text": _text,
    "zip": _zip,
}

LOADERS: dict[str, tuple[Callable[[Path], object], str]] = {
    "sam": (load_official_state_dict, "SAM"),
    "ram": (read_checkpoint, "RAM"),
    "deeplab-init": (
        lambda p: build_deeplab(
            3, backbone="custom", layers=(1, 1, 1, 1), width_per_group=8, init=str(p)
        ),
        "DeepLabV2 or ResNet",
    ),
    "training": (load_training_checkpoint, "samwsss training"),
    "predict": (load_checkpoint_model, "samwsss DeepLabV2"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_file_that_is_not_a_checkpoint_is_named_with_the_reason(
    tmp_path: Path, bad: str, loader: str
) -> None:
    path = tmp_path / f"{bad}.pth"
    BAD_FILES[bad](path)
    load, kind = LOADERS[loader]
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a {kind} checkpoint: ")
    assert "; expected " in message
    if bad == "empty":
        assert "the file is empty" in message


def test_missing_file_folder_and_wrong_content(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt", kind="SAM", expected="x")
    with pytest.raises(CheckpointError, match="a folder"):
        load_checkpoint(tmp_path, kind="SAM", expected="x")
    _tensor(tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="found a Tensor"):
        load_official_state_dict(tmp_path / "tensor.pt")
    torch.save({"epoch": 3, "step": 4}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="'epoch', 'step'"):
        read_checkpoint(tmp_path / "meta.pt")
    torch.save({"weight": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no samwsss format tag"):
        load_training_checkpoint(tmp_path / "plain.pt")


def test_tensor_state_finds_nested_dicts(tmp_path: Path) -> None:
    state = {"a.weight": torch.ones(2)}
    assert tensor_state({"model": state}, "x", kind="k", expected="e") == state
    assert (
        tensor_state(
            {"state_dict": state}, "x", kind="k", expected="e", nested=("model", "state_dict")
        )
        == state
    )
    assert tensor_state(state, "x", kind="k", expected="e") == state
    with pytest.raises(CheckpointError, match="an empty dict"):
        tensor_state({}, "x", kind="k", expected="e")


@pytest.mark.parametrize("bad", ["empty", "text-h", "zip"])
def test_train_deeplab_init_with_a_bad_file_says_so(tmp_path: Path, bad: str) -> None:
    voc = make_voc_tree(tmp_path)
    config = tmp_path / "tiny.yaml"
    tiny = {
        "model": {"backbone": "custom", "backbone_layers": [1, 1, 1, 1], "width_per_group": 8},
        "train": {"iterations": 1, "batch_size": 2, "crop_size": 32, "workers": 0},
    }
    config.write_text(yaml.safe_dump(tiny), encoding="utf-8")
    init = tmp_path / f"{bad}.pt"
    BAD_FILES[bad](init)
    result = CliRunner().invoke(
        cli,
        [
            "train-deeplab", "--data", str(voc), "--split", "train_aug",
            "--out", str(tmp_path / "run"), "--config", str(config),
            "--init", str(init), "--device", "cpu",
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "Aborted" not in result.output and "Traceback" not in result.output
    assert f"{init} is not a DeepLabV2 or ResNet checkpoint" in result.output, result.output


def test_predict_checkpoint_that_is_text_says_so(tmp_path: Path) -> None:
    voc = make_voc_tree(tmp_path)
    checkpoint = tmp_path / "model.pt"
    _text_h(checkpoint)
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--checkpoint", str(checkpoint), "--data", str(voc), "--split", "val",
            "--out", str(tmp_path / "pred"), "--device", "cpu",
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "KeyError" in result.output  # the reason, inside one line
    assert f"{checkpoint} is not a samwsss DeepLabV2 checkpoint" in result.output
    assert "Traceback" not in result.output
