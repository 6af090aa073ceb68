"""DeepLabV2 config: recipe defaults, per-kind defaults, YAML, overrides, validation."""

from __future__ import annotations

import pytest
import yaml

from samwsss.training.config import (
    TrainConfig,
    config_from_dict,
    load_config,
    parse_overrides,
    save_config,
)


def test_recipe_defaults_and_kind_resolution() -> None:
    config = TrainConfig()
    assert (config.crop_size, config.lr, config.momentum, config.weight_decay) == (
        321,
        2.5e-4,
        0.9,
        5e-4,
    )
    assert (config.head_lr_mult, config.head_bias_lr_mult, config.poly_power) == (10.0, 20.0, 0.9)
    assert (config.scale_min, config.scale_max, config.flip, config.ignore_index) == (
        0.5,
        1.5,
        True,
        255,
    )
    assert config.atrous_rates == [6, 12, 18, 24] and config.backbone == "resnet101"
    voc, coco = config.resolve("voc"), config.resolve("coco")
    assert (voc.batch_size, voc.iterations) == (5, 20_000)
    assert (coco.batch_size, coco.iterations) == (10, 100_000)
    assert config.batch_size is None  # resolve returns a copy
    explicit = TrainConfig(batch_size=3).resolve("coco")
    assert (explicit.batch_size, explicit.iterations) == (3, 100_000)


def test_yaml_nested_sections_overrides_and_round_trip(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "model:\n  backbone: resnet50\n  init: none\n"
        "train:\n  lr: 1e-3\n  iterations: 50\n  atrous_rates: [1, 2]\n"
        "flip: false\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.backbone == "resnet50" and config.init == "none"
    assert config.lr == pytest.approx(1e-3) and config.iterations == 50
    assert config.atrous_rates == [1, 2] and config.flip is False
    overrides = parse_overrides(["lr=0.02", "val_split=val", "channels_last=null"])
    config = config_from_dict(overrides, base=config)
    assert config.lr == 0.02 and config.val_split == "val" and config.channels_last is None
    assert config.backbone == "resnet50"
    saved = tmp_path / "saved.yaml"
    save_config(config, saved)
    assert load_config(saved) == config
    assert yaml.safe_load(saved.read_text())["lr"] == 0.02


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": 1.0}, "unknown config key 'learning_rate'"),
        ({"iterations": "many"}, "must be an integer"),
        ({"flip": "yes"}, "true or false"),
        ({"atrous_rates": 6}, "must be a list"),
    ],
)
def test_bad_values_are_rejected(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_dict(values)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backbone", "resnet18", "backbone 'resnet18' is unknown"),
        ("scale_min", 2.0, "scale_min <= scale_max"),
        ("amp", "fp16", "amp must be"),
        ("loss_resolution", "pixels", "loss_resolution"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("seed", -1, "seed must be >= 0"),
        ("weight_decay", -0.001, r"weight_decay must be >= 0, got -0.001"),
        ("poly_power", -0.5, r"poly_power must be >= 0, got -0.5"),
    ],
)
def test_validation_names_the_field(field, value, message) -> None:
    config = config_from_dict({field: value})
    with pytest.raises(ValueError, match=message):
        config.resolve("voc")


def test_override_syntax_and_duplicate_yaml_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])
    path = tmp_path / "dup.yaml"
    path.write_text("a:\n  lr: 0.1\nb:\n  lr: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="given twice"):
        load_config(path)
    path.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_config(path)
