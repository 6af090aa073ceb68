"""DeepLabV2 trainer: schedule, parameter groups, data stream, learning, exact resume."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from samwsss.labelio import write_label_png
from samwsss.segnets.deeplab import DeepLabArch, build_deeplab
from samwsss.training.data import AugmentedSegmentationData, PseudoMaskDataset, SampleStream
from samwsss.training.predict import predict_labels
from samwsss.training.train import (
    LOG_COLUMNS,
    Trainer,
    arch_forward_loss,
    build_arch_optimizer,
    plot_training_curves,
    poly_lr,
    read_log_rows,
    segmentation_loss,
    set_learning_rates,
)
from samwsss.training.transforms import TrainAugmentation, normalize_batch
from tests.deeplab_fixtures import ShapesDataset, one_torch_thread, tiny_config


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


def _tiny_model(num_classes: int = 4):
    return build_deeplab(
        num_classes,
        backbone="custom",
        layers=(1, 1, 1, 1),
        width_per_group=8,
        atrous_rates=(1, 2, 3, 4),
        init="none",
    )


def _read_log(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_poly_schedule_and_groups_against_hand_computed_values() -> None:
    config = tiny_config(lr=2.5e-4, iterations=100)
    model = _tiny_model()
    optimizer = build_arch_optimizer(DeepLabArch.from_config(config), model, config)
    names = [g["name"] for g in optimizer.param_groups]
    assert names == ["backbone", "head_weight", "head_bias"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 5e-4, 0.0]
    assert all(g["momentum"] == 0.9 for g in optimizer.param_groups)
    # (iteration, base lr) with 0.5**0.9 = 0.535886731 and 0.01**0.9 = 0.015848932
    for iteration, base in [(0, 2.5e-4), (50, 1.339716828e-4), (99, 3.962233e-6), (100, 0.0)]:
        lr = set_learning_rates(optimizer, config, iteration)
        assert lr == pytest.approx(base, rel=1e-6, abs=1e-15)
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs == pytest.approx([base, 10 * base, 20 * base], rel=1e-6, abs=1e-15)
    assert poly_lr(1.0, 25, 100, 1.0) == pytest.approx(0.75)


def test_weight_decay_applies_to_weights_not_head_biases() -> None:
    config = tiny_config(lr=0.1, iterations=10, weight_decay=0.5)
    model = _tiny_model()
    with torch.no_grad():
        model.head.branches[0].bias.fill_(1.0)
    optimizer = build_arch_optimizer(DeepLabArch.from_config(config), model, config)
    set_learning_rates(optimizer, config, 0)
    conv = model.backbone.conv1.weight
    head_weight = model.head.branches[0].weight
    before_conv, before_head = conv.detach().clone(), head_weight.detach().clone()
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    # zero gradient: SGD moves by lr * wd * w (first step, momentum buffer = wd * w)
    torch.testing.assert_close(conv, before_conv * (1 - 0.1 * 0.5))
    torch.testing.assert_close(head_weight, before_head * (1 - 1.0 * 0.5))
    assert torch.all(model.head.branches[0].bias == 1.0)


def test_loss_ignores_255_and_normalizes_over_valid_pixels() -> None:
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 32, 32))
    labels[0, :16] = 255
    expected = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(
            logits, size=(32, 32), mode="bilinear", align_corners=False
        ),
        labels,
        ignore_index=255,
    )
    torch.testing.assert_close(segmentation_loss(logits, labels), expected)
    shrunk = segmentation_loss(logits, labels, resolution="logits")
    small = torch.nn.functional.interpolate(labels[:, None].float(), size=(4, 4), mode="nearest")
    torch.testing.assert_close(
        shrunk,
        torch.nn.functional.cross_entropy(logits, small[:, 0].long(), ignore_index=255),
    )
    assert segmentation_loss(logits, torch.full((2, 32, 32), 255)).item() == 0.0


def test_sample_stream_global_batch_is_split_across_ranks() -> None:
    single = SampleStream(7, 4, 6, seed=3)
    ranks = [SampleStream(7, 2, 6, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for iteration in range(6):
        combined = ranks[0].batch_keys(iteration) + ranks[1].batch_keys(iteration)
        assert combined == single.batch_keys(iteration)
    positions = [p for batch in single for _, p in batch]
    assert positions == list(range(24))
    first_epoch = [i for batch in list(single)[:2] for i, _ in batch][:7]
    assert sorted(first_epoch) == list(range(7))  # each epoch is a permutation
    resumed = SampleStream(7, 4, 6, seed=3, start_iteration=4)
    assert list(resumed) == list(single)[4:] and len(resumed) == 2
    with pytest.raises(ValueError, match="empty dataset"):
        SampleStream(0, 1, 1)


def test_augmentation_keeps_image_and_label_aligned() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=(20, 30)).astype(np.uint8)
    image = np.repeat((label * 50)[..., None], 3, axis=2).astype(np.uint8)
    augment = TrainAugmentation(crop_size=24, scale_min=1.0, scale_max=1.0, flip=True)
    for seed in range(6):
        crop, crop_label = augment(image, label, np.random.default_rng(seed))
        assert crop.shape == (24, 24, 3) and crop_label.shape == (24, 24)
        valid = crop_label != 255
        assert np.array_equal(crop[..., 0][valid], crop_label[valid] * 50)
        assert np.all(crop[~valid] == np.round(np.array(augment.mean) * 255).astype(np.uint8))
        assert (~valid).sum() >= 24 * 24 - 20 * 24  # 4 padded rows at least
    same = [augment(image, label, np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(same[0][0], same[1][0]) and np.array_equal(same[0][1], same[1][1])
    scaled = TrainAugmentation(crop_size=16, scale_min=0.5, scale_max=1.5)
    for seed in range(4):
        crop, crop_label = scaled(image, label, np.random.default_rng(seed))
        assert crop.shape == (16, 16, 3) and set(np.unique(crop_label)) <= {0, 1, 2, 3, 255}
    with pytest.raises(ValueError, match="differs from image size"):
        augment(image, label[:10], rng)


def test_pseudo_mask_dataset_replaces_gt(tmp_path) -> None:
    base = ShapesDataset(3, (16, 20))
    masks = tmp_path / "masks"
    for image_id in base.ids[:2]:
        write_label_png(masks / f"{image_id}.png", np.full((16, 20), 2, np.uint8))
    with pytest.raises(ValueError, match="1 of 3 images have no mask"):
        PseudoMaskDataset(base, masks)
    dataset = PseudoMaskDataset(base, masks, missing="skip")
    assert dataset.ids == base.ids[:2] and dataset.has_gt
    assert dataset.class_names == base.class_names
    assert np.all(dataset.gt(base.ids[0]) == 2)
    assert np.array_equal(dataset.load_image(base.ids[1]), base.load_image(base.ids[1]))
    with pytest.raises(ValueError, match="does not exist"):
        PseudoMaskDataset(base, tmp_path / "nope")
    write_label_png(masks / f"{base.ids[2]}.png", np.full((16, 20), 9, np.uint8))
    data = AugmentedSegmentationData(PseudoMaskDataset(base, masks), TrainAugmentation(crop_size=8))
    with pytest.raises(ValueError, match="holds value 9"):
        data[(2, 0)]


def test_training_learns_shapes_and_writes_run_dir(tmp_path) -> None:
    dataset = ShapesDataset(8, (48, 48), seed=0)
    config = tiny_config(
        iterations=30,
        batch_size=4,
        lr=0.01,
        log_every=5,
        scale_min=0.75,
        scale_max=1.25,
        val_every=30,
        checkpoint_every=15,
    )
    result = Trainer(config, dataset, tmp_path / "run", val_dataset=dataset).run()
    run = tmp_path / "run"
    rows = _read_log(run / "train_log.csv")
    assert [int(r["iteration"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    assert float(rows[0]["lr_backbone"]) == pytest.approx(0.01 * (1 - 4 / 30) ** 0.9, rel=1e-5)
    for name in ("config.yaml", "training_curve.png", "model_final.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert (run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # training-set mIoU, computed here independently of the evaluation package
    from samwsss.training.predict import load_checkpoint_model

    loaded = load_checkpoint_model(result.final_model, "cpu")
    preds = predict_labels(
        loaded.model,
        [dataset.load_image(i) for i in dataset.ids],
        mean=config.mean,
        std=config.std,
    )
    confusion = np.zeros((4, 4), np.int64)
    for image_id, pred in zip(dataset.ids, preds, strict=True):
        np.add.at(confusion, (dataset.gt(image_id).ravel(), pred.ravel()), 1)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    miou = float(np.nanmean(iou))
    assert miou > 0.5, iou  # all-background would score ~0.2
    val_rows = _read_log(run / "val_log.csv")
    assert len(val_rows) == 1 and float(val_rows[0]["miou"]) == pytest.approx(miou, abs=1e-6)
    assert result.val_miou == pytest.approx(miou, abs=1e-6)


def test_resume_is_identical_to_an_uninterrupted_run(tmp_path, monkeypatch) -> None:
    dataset = ShapesDataset(5, (40, 44), seed=1)
    config = tiny_config(iterations=6, batch_size=2, checkpoint_every=2, crop_size=32)
    straight = Trainer(config, dataset, tmp_path / "a").run()

    import samwsss.training.train as train_module

    real = train_module.set_learning_rates

    def killed_at_four(optimizer, cfg, iteration):
        if iteration == 3:  # iterations 1..3 done, last checkpoint at 2
            raise KeyboardInterrupt
        return real(optimizer, cfg, iteration)

    monkeypatch.setattr(train_module, "set_learning_rates", killed_at_four)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, dataset, tmp_path / "b").run()
    monkeypatch.setattr(train_module, "set_learning_rates", real)
    assert [int(r["iteration"]) for r in _read_log(tmp_path / "b" / "train_log.csv")] == [1, 2, 3]
    with pytest.raises(ValueError, match="already holds a training run"):
        Trainer(config, dataset, tmp_path / "b")
    with pytest.raises(ValueError, match="differs in lr"):
        Trainer(
            tiny_config(iterations=6, batch_size=2, crop_size=32, lr=0.5),
            dataset,
            tmp_path / "b",
            resume=True,
        ).run()
    renamed = ShapesDataset(5, (40, 44), seed=1)
    renamed.class_names = ("background", "box", "disc", "triangle")  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"classes \['background', 'rectangle'.*'box'"):
        Trainer(config, renamed, tmp_path / "b", resume=True).run()
    resumed = Trainer(config, dataset, tmp_path / "b", resume=True).run()
    assert resumed.start_iteration == 2 and resumed.iterations == 6
    a = torch.load(straight.final_model, weights_only=True)["model"]
    b = torch.load(resumed.final_model, weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)
    assert any(not torch.equal(a[k], _tiny_model().state_dict()[k]) for k in a)  # it did train
    rows_a = _read_log(tmp_path / "a" / "train_log.csv")
    rows_b = _read_log(tmp_path / "b" / "train_log.csv")
    assert [r["iteration"] for r in rows_b] == [str(i) for i in range(1, 7)]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert math.isclose(float(row_a["loss"]), float(row_b["loss"]), rel_tol=1e-5)


def test_forward_loss_at_logit_resolution_is_the_mean_over_the_shrunk_labels() -> None:
    config = tiny_config(loss_resolution="logits")
    torch.manual_seed(0)
    model = _tiny_model()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 4, (2, 40, 40), dtype=np.uint8))
    labels[0, :24] = 255  # ignored rows: the valid count must be the shrunk labels' one
    cpu = torch.device("cpu")
    loss = arch_forward_loss(
        DeepLabArch.from_config(config), model, images, labels, config, device=cpu
    )
    logits = model(normalize_batch(images, config.mean, config.std, device=torch.device("cpu")))
    assert logits.shape[-2:] == (5, 5)
    small = torch.nn.functional.interpolate(labels[:, None].float(), size=(5, 5), mode="nearest")
    expected = torch.nn.functional.cross_entropy(logits, small[:, 0].long(), ignore_index=255)
    torch.testing.assert_close(loss, expected)
    # and at label resolution: the mean over the full-size labels
    label_config = tiny_config()
    arch = DeepLabArch.from_config(label_config)
    full = arch_forward_loss(arch, model, images, labels, label_config, device=cpu)
    upsampled = torch.nn.functional.interpolate(
        logits, size=(40, 40), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(
        full, torch.nn.functional.cross_entropy(upsampled, labels.long(), ignore_index=255)
    )


def _write_log(path, rows: list[str], tail: str = "") -> None:
    text = ",".join(LOG_COLUMNS) + "\r\n" + "".join(row + "\r\n" for row in rows) + tail
    path.write_text(text, encoding="utf-8", newline="")


def test_torn_log_rows_are_dropped_when_reading_and_plotting(tmp_path) -> None:
    good = [f"{i},0.5,1e-3,1e-2,2e-2,0.1,10.0," for i in (1, 2)]
    for tail in ("1", "3,0.4,1e-3", "\x00\x00\x00", "3,0.4,1e-3,1e-2,2e-2,0.1,10.0,"):
        _write_log(tmp_path / "train_log.csv", good, tail)
        assert [row[0] for row in read_log_rows(tmp_path / "train_log.csv", LOG_COLUMNS)] == [
            "1",
            "2",
        ], tail
        assert plot_training_curves(tmp_path) == tmp_path / "training_curve.png"
    _write_log(tmp_path / "train_log.csv", [*good, "x,0.4,1e-3,1e-2,2e-2,0.1,10.0,"])
    assert len(read_log_rows(tmp_path / "train_log.csv", LOG_COLUMNS)) == 2


def test_resume_after_a_kill_mid_row_keeps_only_complete_rows(tmp_path, monkeypatch) -> None:
    dataset = ShapesDataset(4, (36, 36), seed=3)
    config = tiny_config(iterations=12, batch_size=1, checkpoint_every=10, crop_size=24)

    import samwsss.training.train as train_module

    real = train_module.set_learning_rates

    def killed(optimizer, cfg, iteration):
        if iteration == 11:  # 11 iterations logged, last checkpoint at 10
            raise KeyboardInterrupt
        return real(optimizer, cfg, iteration)

    monkeypatch.setattr(train_module, "set_learning_rates", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, dataset, tmp_path / "run").run()
    monkeypatch.setattr(train_module, "set_learning_rates", real)
    log = tmp_path / "run" / "train_log.csv"
    with log.open("a", encoding="utf-8", newline="") as handle:
        handle.write("1")  # the kill tore row "12,..." after its first character
    resumed = Trainer(config, dataset, tmp_path / "run", resume=True).run()
    assert resumed.start_iteration == 10
    rows = _read_log(log)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 13))
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert (tmp_path / "run" / "training_curve.png").is_file()


def test_trainer_rejects_one_class_data_and_validation_without_a_set(tmp_path) -> None:
    single = ShapesDataset(2, (24, 24))
    single.class_names = ("background",)  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"has 1 class \['background'\]"):
        Trainer(tiny_config(), single, tmp_path / "a")
    with pytest.raises(ValueError, match="val_every=5 but no val_dataset"):
        Trainer(tiny_config(val_every=5), ShapesDataset(2, (24, 24)), tmp_path / "b")


def test_pseudo_masks_with_upper_case_extension(tmp_path) -> None:
    base = ShapesDataset(2, (16, 20))
    masks = tmp_path / "masks"
    write_label_png(masks / f"{base.ids[0]}.png", np.full((16, 20), 1, np.uint8))
    write_label_png(masks / f"{base.ids[1]}.PNG", np.full((16, 20), 3, np.uint8))
    dataset = PseudoMaskDataset(base, masks)
    assert dataset.ids == base.ids
    assert np.all(dataset.gt(base.ids[1]) == 3)
    write_label_png(masks / f"{base.ids[0]}.PNG", np.full((16, 20), 2, np.uint8))
    if len(list(masks.iterdir())) < 3:
        pytest.skip("case-insensitive file system: a.png and a.PNG are one file")
    with pytest.raises(ValueError, match="holds both"):
        PseudoMaskDataset(base, masks)


def test_the_deprecated_deeplab_names_warn_and_equal_the_arch_path(monkeypatch) -> None:
    from samwsss.training import optim, train

    config = tiny_config()
    model = _tiny_model()
    arch = DeepLabArch.from_config(config)
    with pytest.warns(DeprecationWarning, match="build_arch_optimizer"):
        old = optim.build_optimizer(model, config)
    new = build_arch_optimizer(arch, model, config)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in old.param_groups] == [
        (g["lr"], g["weight_decay"], len(g["params"])) for g in new.param_groups
    ]
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 4, (2, 32, 32))
    with pytest.warns(DeprecationWarning, match="arch_forward_loss"):
        loss = optim.forward_loss(model, images, labels, config, device=torch.device("cpu"))
    expected = train.arch_forward_loss(
        arch, model, images, labels, config, device=torch.device("cpu")
    )
    assert torch.equal(loss, expected)
    calls = []
    monkeypatch.setattr(train, "train_segmenter", lambda *a, **k: calls.append((a, k)) or "r")
    with pytest.warns(DeprecationWarning, match="train_segmenter"):
        assert train.train_deeplab(config, "data", "out", resume=True) == "r"
    assert calls == [((config, "data", "out"), {"val_dataset": None, "resume": True})]
