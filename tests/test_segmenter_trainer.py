"""The general segmenter trainer with a non-DeepLab architecture (a tiny AdamW conv net):
learning, parameter-group schedule, exact resume, DDP, predict / evaluate, checkpoints of
version 1, the architecture lookup and ``train-segmenter``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.segnets import registry as archs
from samwsss.segnets.arch import ArchCard, Recipe, SegmentationArch
from samwsss.segnets.deeplab import DeepLabArch
from samwsss.segnets.inference import window_starts as _window_starts
from samwsss.training.optim import build_arch_optimizer, poly_lr, set_learning_rates
from samwsss.training.predict import (
    InferenceOptions,
    evaluate_model,
    load_checkpoint_model,
    predict_dataset,
    predict_labels,
    predict_probabilities,
)
from samwsss.training.train import Trainer
from tests.data_fixtures import make_voc_tree
from tests.deeplab_fixtures import ShapesDataset, free_port, one_torch_thread, tiny_config
from tests.segmenter_fixtures import (
    TINY_ARCH,
    TinyConvArch,
    tiny_arch_config,
    tiny_arch_ddp_config,
    tiny_arch_ddp_worker,
)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


def _read_log(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _kill_at(monkeypatch, iteration: int) -> None:
    """Make the trainer raise KeyboardInterrupt when it reaches ``iteration`` (0-based)."""
    import samwsss.training.train as train_module

    real = train_module.set_learning_rates

    def killed(optimizer, cfg, it):
        if it == iteration:
            raise KeyboardInterrupt
        return real(optimizer, cfg, it)

    monkeypatch.setattr(train_module, "set_learning_rates", killed)


def test_tiny_arch_implements_the_protocol() -> None:
    assert isinstance(TinyConvArch(), SegmentationArch)
    assert isinstance(DeepLabArch(), SegmentationArch)


def test_training_learns_and_predict_evaluates_its_checkpoint(tmp_path, monkeypatch) -> None:
    dataset = ShapesDataset(8, (48, 48), seed=0)
    config = tiny_arch_config(
        iterations=40,
        batch_size=4,
        log_every=10,
        val_every=40,
        checkpoint_every=20,
        lr=0.03,
        backbone_lr_mult=0.5,
    )
    result = Trainer(
        config, dataset, tmp_path / "run", val_dataset=dataset, arch=TinyConvArch()
    ).run()
    rows = _read_log(tmp_path / "run" / "train_log.csv")
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.2 * losses[0], losses
    # the logged rates: the backbone group's, and the base rate for the head columns
    base = poly_lr(0.03, 9, 40, 0.9)
    assert float(rows[0]["lr_head_weight"]) == pytest.approx(base, rel=1e-5)
    assert float(rows[0]["lr_backbone"]) == pytest.approx(0.5 * base, rel=1e-5)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["arch"] == TINY_ARCH and saved["optimizer"] == "adamw"
    state = torch.load(result.final_model, weights_only=True)
    assert state["format"] == "samwsss-segmenter" and state["version"] == 2
    assert state["arch"] == TINY_ARCH and state["architecture"] == {"num_classes": 4, "width": 8}
    # predict finds the architecture by the checkpoint's name (here an in-process addition)
    with pytest.raises(ValueError, match="tiny-conv"):
        load_checkpoint_model(result.final_model, "cpu")
    monkeypatch.setitem(archs.EXTRA_ARCHS, TINY_ARCH, TinyConvArch())
    loaded = load_checkpoint_model(result.final_model, "cpu")
    assert loaded.arch is archs.EXTRA_ARCHS[TINY_ARCH] and loaded.iteration == 40
    matrix = evaluate_model(
        loaded.model, dataset, mean=config.mean, std=config.std, arch=loaded.arch
    )
    miou = float(matrix.compute().miou)
    assert miou > 0.5 and result.val_miou == pytest.approx(miou, abs=1e-6)
    summary = predict_dataset(
        loaded,
        dataset,
        tmp_path / "pred",
        options=InferenceOptions(scales=(0.75, 1.0), flip=True),
        workers=0,
    )
    assert summary.written == len(dataset)
    identity = json.loads((tmp_path / "pred" / "prediction_identity.json").read_text())
    assert "sliding_window" not in identity["inference"]


def test_param_group_rates_follow_poly_with_their_multipliers() -> None:
    config = tiny_arch_config(iterations=100, warmup_iterations=0)
    model = TinyConvArch().build(4, None)
    optimizer = build_arch_optimizer(TinyConvArch(), model, config)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert list(groups) == ["backbone", "backbone_no_decay", "head", "head_no_decay"]
    assert [g["weight_decay"] for g in groups.values()] == [0.01, 0.0, 0.01, 0.0]
    assert groups["backbone"]["lr_mult"] == pytest.approx(0.1)
    assert groups["head"]["lr_mult"] == 1.0
    for iteration in (0, 37, 99, 100):
        base = set_learning_rates(optimizer, config, iteration)
        assert base == pytest.approx(0.01 * (1 - iteration / 100) ** 0.9, abs=1e-15)
        for name, group in groups.items():
            mult = 0.1 if name.startswith("backbone") else 1.0
            assert group["lr"] == pytest.approx(base * mult, rel=1e-9, abs=1e-15), name
    warm = tiny_arch_config(iterations=100, warmup_iterations=10)
    assert set_learning_rates(optimizer, warm, 4) == pytest.approx(poly_lr(0.01, 4, 100, 0.9) / 2)
    assert groups["backbone"]["lr"] == pytest.approx(0.1 * poly_lr(0.01, 4, 100, 0.9) / 2)
    sgd = build_arch_optimizer(TinyConvArch(), model, tiny_arch_config(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch) -> None:
    dataset = ShapesDataset(5, (40, 44), seed=1)
    config = tiny_arch_config(
        iterations=6, batch_size=2, checkpoint_every=2, crop_size=32, clip_grad_norm=1.0
    )
    straight = Trainer(config, dataset, tmp_path / "a", arch=TinyConvArch()).run()
    _kill_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, dataset, tmp_path / "b", arch=TinyConvArch()).run()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="differs in arch"):
        Trainer(tiny_config(iterations=6, batch_size=2, crop_size=32), dataset, tmp_path / "b",
                resume=True).run()  # fmt: skip
    resumed = Trainer(config, dataset, tmp_path / "b", resume=True, arch=TinyConvArch()).run()
    assert resumed.start_iteration == 2
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for index, moments in a["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    losses_a = [r["loss"] for r in _read_log(tmp_path / "a" / "train_log.csv")]
    losses_b = [r["loss"] for r in _read_log(tmp_path / "b" / "train_log.csv")]
    assert losses_a == losses_b and straight.iterations == resumed.iterations == 6


def test_version_1_deeplab_checkpoint_is_read_and_resumed(tmp_path, monkeypatch) -> None:
    """A checkpoint written before architectures were pluggable is DeepLabV2."""
    dataset = ShapesDataset(5, (40, 44), seed=1)
    config = tiny_config(iterations=4, batch_size=2, checkpoint_every=2, crop_size=32)
    straight = Trainer(config, dataset, tmp_path / "a").run()
    _kill_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, dataset, tmp_path / "b").run()
    monkeypatch.undo()
    new_keys = {"arch", "optimizer", "backbone_lr_mult", "betas", "warmup_iterations",
                "clip_grad_norm", "allow_segmentation_init"}  # fmt: skip
    for path in (tmp_path / "b" / "checkpoints" / "last.pt", straight.final_model):
        state = torch.load(path, weights_only=True)
        state.update(format="samwsss-deeplabv2", version=1)
        del state["arch"], state["architecture"]
        state["config"] = {k: v for k, v in state["config"].items() if k not in new_keys}
        torch.save(state, path)
    yaml_path = tmp_path / "b" / "config.yaml"
    saved = yaml.safe_load(yaml_path.read_text())
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in saved.items() if k not in new_keys}))
    resumed = Trainer(config, dataset, tmp_path / "b", resume=True).run()
    assert resumed.start_iteration == 2
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert b["arch"] == "deeplabv2" and b["format"] == "samwsss-segmenter"
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    loaded = load_checkpoint_model(straight.final_model, "cpu")
    assert isinstance(loaded.arch, DeepLabArch) and loaded.arch.layers == (1, 1, 1, 1)
    images = [dataset.load_image(i) for i in dataset.ids[:2]]
    options = InferenceOptions(scales=(0.75, 1.0), flip=True)
    through_arch = predict_labels(
        loaded.model, images, mean=config.mean, std=config.std, options=options, arch=loaded.arch
    )
    plain = predict_labels(loaded.model, images, mean=config.mean, std=config.std, options=options)
    assert all(np.array_equal(x, y) for x, y in zip(through_arch, plain, strict=True))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_gloo_matches_single_process_for_the_tiny_arch(tmp_path) -> None:
    mp.start_processes(
        tiny_arch_ddp_worker,
        args=(2, free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    single = Trainer(
        tiny_arch_ddp_config(batch_size=4),
        ShapesDataset(6, (40, 40), seed=2),
        tmp_path / "single",
        arch=TinyConvArch(),
    ).run()
    ddp_state = torch.load(tmp_path / "ddp" / "model_final.pt", weights_only=True)
    single_state = torch.load(single.final_model, weights_only=True)
    assert ddp_state["world_size"] == 2 and single_state["world_size"] == 1
    initial = TinyConvArch().build(4, None).state_dict()
    for name, expected in single_state["model"].items():
        assert not torch.equal(expected, initial[name]) or name.endswith("bias")
        torch.testing.assert_close(
            ddp_state["model"][name], expected, rtol=1e-4, atol=1e-6, msg=name
        )
    ddp_rows = _read_log(tmp_path / "ddp" / "train_log.csv")
    single_rows = _read_log(tmp_path / "single" / "train_log.csv")
    for row_ddp, row_single in zip(ddp_rows, single_rows, strict=True):
        assert float(row_ddp["loss"]) == pytest.approx(float(row_single["loss"]), rel=1e-4)


def test_sliding_window_inference() -> None:
    assert _window_starts(40, 24, 16) == [0, 16]
    assert _window_starts(50, 24, 16) == [0, 16, 26]
    assert _window_starts(20, 24, 16) == [0]
    torch.manual_seed(0)
    arch = TinyConvArch(fixed_input_size=True)
    model = arch.build(4, None).eval()
    shapes = ShapesDataset(2, (40, 52), seed=4)
    images = torch.from_numpy(np.stack([shapes.load_image(i) for i in shapes.ids]))
    mean, std = arch.mean, arch.std
    whole = predict_probabilities(model, images, mean=mean, std=std, arch=arch)
    one_window = predict_probabilities(
        model,
        images[:, :40, :40],
        mean=mean,
        std=std,
        arch=arch,
        options=InferenceOptions(sliding_window=40),
    )
    torch.testing.assert_close(one_window, whole[:, :, :40, :40].contiguous(), atol=0.2, rtol=0)
    options = InferenceOptions(scales=(0.5, 1.0), flip=True, sliding_window=24)
    windows = predict_probabilities(model, images, mean=mean, std=std, arch=arch, options=options)
    assert windows.shape == (2, 4, 40, 52)
    torch.testing.assert_close(windows.sum(dim=1), torch.ones(2, 40, 52))
    assert options.stride() == 16
    exact = predict_probabilities(
        model,
        images[:, :24, :24],
        mean=mean,
        std=std,
        arch=arch,
        options=InferenceOptions(sliding_window=24),
    )
    torch.testing.assert_close(
        exact, predict_probabilities(model, images[:, :24, :24], mean=mean, std=std, arch=arch)
    )


def test_arch_lookup_recipe_and_deeplab_segmentation_init(tmp_path, monkeypatch) -> None:
    assert isinstance(archs.resolve_arch(tiny_config()), DeepLabArch)
    with pytest.raises(ValueError, match="no-such-arch"):
        archs.lookup_arch("no-such-arch")
    card = ArchCard(
        name=TINY_ARCH,
        description="tiny",
        init="none",
        recipe=Recipe(
            optimizer="adamw",
            lr=2e-3,
            backbone_lr_mult=0.1,
            weight_decay=0.05,
            iterations=7,
            batch_size=4,
            crop_size=40,
        ),
    )
    values = archs.recipe_values(TinyConvArch(), card, world_size=2)
    assert values["batch_size"] == 2 and values["optimizer"] == "adamw"
    assert values["mean"] == list(TinyConvArch.mean) and values["init"] == "none"
    # DeepLabV2 refuses segmentation-trained init unless allowed (the WSSS protocol)
    dataset = ShapesDataset(4, (40, 40))
    run = Trainer(tiny_config(iterations=1), dataset, tmp_path / "run").run()
    deeplab = DeepLabArch.from_config(tiny_config())
    with pytest.raises(ValueError, match="allow-segmentation-init"):
        deeplab.build(4, str(run.final_model))
    model = deeplab.build(4, str(run.final_model), allow_segmentation_init=True)
    state = torch.load(run.final_model, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_train_segmenter_and_predict_cli(tmp_path, request) -> None:
    voc = make_voc_tree(tmp_path)
    card = ArchCard(
        name=TINY_ARCH,
        description="tiny",
        init="none",
        recipe=Recipe(
            optimizer="adamw",
            lr=5e-3,
            backbone_lr_mult=0.1,
            weight_decay=0.05,
            iterations=3,
            batch_size=2,
            crop_size=32,
        ),
    )
    archs.register_arch(card, TinyConvArch())
    request.addfinalizer(lambda: archs.unregister_arch(TINY_ARCH))
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["train-segmenter", "--arch", TINY_ARCH, "--data", str(voc), "--split", "train_aug",
            "--out", str(run), "--workers", "0", "--device", "cpu", "--set", "lr=0.002"]  # fmt: skip
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "trained 3 iterations (from 0)" in result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["arch"] == TINY_ARCH and saved["optimizer"] == "adamw"
    assert (saved["lr"], saved["weight_decay"], saved["crop_size"]) == (0.002, 0.05, 32)
    assert saved["batch_size"] == 2 and saved["init"] == "none"
    again = runner.invoke(cli, ["train-segmenter", "--out", str(run), "--resume"])
    assert again.exit_code == 0, again.output
    assert "trained 3 iterations (from 3)" in again.output
    preds = tmp_path / "preds"
    predict = ["predict", "--checkpoint", str(run / "model_final.pt"), "--data", str(voc),
               "--split", "val", "--out", str(preds), "--workers", "0", "--device", "cpu",
               "--flip", "--sliding-window", "--window", "24"]  # fmt: skip
    result = runner.invoke(cli, predict, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote 2 predictions" in result.output and (preds / "evaluation.json").is_file()
    identity = json.loads((preds / "prediction_identity.json").read_text())
    assert identity["inference"]["sliding_window"] == [24, 16]
    # train-deeplab trains DeepLabV2 only
    refused = runner.invoke(
        cli,
        ["train-deeplab", "--data", str(voc), "--split", "train_aug", "--out",
         str(tmp_path / "d"), "--set", f"arch={TINY_ARCH}"],
    )  # fmt: skip
    assert refused.exit_code != 0 and "train-segmenter --arch tiny-conv" in refused.output
