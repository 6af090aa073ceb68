"""Segmenter architectures (SegFormer, Mask2Former): init from backbone folders, training,
ignore-exact losses, parameter groups, the segmentation-init guard, rebuild, DDP scaling."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samwsss.segnets.arch import IGNORE_INDEX, ArchCard, SegmentationArch
from samwsss.segnets.deeplab import DEEPLAB_ARCH, DeepLabArch
from samwsss.segnets.mask_loss import MaskLossSettings, mask_classification_loss, upsampled_at
from samwsss.segnets.registry import ARCHS, DEFAULT_ARCH, family, get_arch
from samwsss.segnets.segformer import pixel_cross_entropy
from samwsss.testing.segnets import tiny_arch, write_tiny_backbone
from tests.deeplab_fixtures import ShapesDataset
from tests.torch_fixtures import one_torch_thread

NUM_CLASSES = 4
#: architecture name -> tiny backbone kind.
TINY = {"segformer-b5": "mit", "mask2former-swin-large": "swin", "eomt-dinov2-large": "dinov2"}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backbones")
    return {kind: write_tiny_backbone(kind, root / kind) for kind in ("mit", "swin", "dinov2")}


def _build(
    name: str, backbones: dict[str, Path], **options
) -> tuple[SegmentationArch, torch.nn.Module]:
    arch = tiny_arch(name, **options)
    torch.manual_seed(0)
    return arch, arch.build(NUM_CLASSES, str(backbones[TINY[name]]))


def _batch(count: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(B, 3, H, W)`` pixels and ``(B, H, W)`` int64 labels of shapes."""
    data = ShapesDataset(count, (size, size), seed=1)
    images = np.stack([data.load_image(i) for i in data.ids])
    labels = np.stack([data.gt(i) for i in data.ids])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (pixels - mean) / std, torch.from_numpy(labels).long()


# -- initialisation ---------------------------------------------------------------------


def test_segformer_encoder_comes_from_the_mit_folder(backbones):
    from transformers import SegformerModel

    _, model = _build("segformer-b5", backbones)
    encoder = SegformerModel.from_pretrained(backbones["mit"]).state_dict()
    built = model.segformer.state_dict()
    assert encoder.keys() == built.keys()
    assert all(torch.equal(encoder[k], built[k]) for k in encoder)
    assert model.config.num_labels == NUM_CLASSES


def test_mask2former_swin_comes_from_the_swin_folder(backbones):
    from transformers import SwinForImageClassification

    _, model = _build("mask2former-swin-large", backbones)
    reference = SwinForImageClassification.from_pretrained(backbones["swin"]).state_dict()
    built = model.model.pixel_level_module.encoder.state_dict()
    shared = [k for k in reference if k.startswith("swin.")]
    assert shared and all(k in built for k in shared)
    assert all(torch.equal(reference[k], built[k]) for k in shared)
    assert model.class_predictor.out_features == NUM_CLASSES + 1


def test_eomt_vit_comes_from_the_dinov2_folder(backbones):
    from transformers import Dinov2Model

    _, model = _build("eomt-dinov2-large", backbones)
    reference = Dinov2Model.from_pretrained(backbones["dinov2"]).state_dict()
    built = model.state_dict()
    for name, tensor in reference.items():
        if name.startswith("encoder.layer."):
            target = "layers." + name[len("encoder.layer.") :]
            target = target.replace(".attention.o_proj.", ".attention.out_proj.")
            assert torch.equal(built[target], tensor), name
    assert torch.equal(built["layernorm.weight"], reference["layernorm.weight"])
    positions = reference["embeddings.position_embeddings"]
    assert torch.equal(
        built["embeddings.cls_token"], reference["embeddings.cls_token"] + positions[:, :1]
    )
    assert built["embeddings.position_embeddings.weight"].shape == (36, 32)  # 48 / 8 = 6
    with pytest.raises(ValueError, match="48x48"):
        tiny_arch("eomt-dinov2-large").loss(
            model, torch.zeros(1, 3, 40, 40), torch.zeros(1, 40, 40)
        )


# -- training ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_ten_adamw_steps_reduce_the_loss(name, backbones):
    arch, model = _build(name, backbones)
    pixels, labels = _batch()
    labels[:, :6] = IGNORE_INDEX
    optimizer = torch.optim.AdamW(arch.param_groups(model, 5e-3, 0.01, 1.0))
    model.train()
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = arch.loss(model, pixels, labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    logits = arch.logits(model.eval(), pixels)
    assert logits.shape == (4, NUM_CLASSES, 48, 48) and logits.dtype == torch.float32


# -- ignored pixels ---------------------------------------------------------------------


def _ignore_labels() -> torch.Tensor:
    _, labels = _batch(2, 32)
    labels[0, :12] = IGNORE_INDEX  # a band at the top
    labels[1, :, 20:] = IGNORE_INDEX  # a band at the right
    labels[1, 0, 0] = IGNORE_INDEX
    return labels


def _mask_loss_and_grads(class_logits, mask_logits, labels, settings):
    class_logits = class_logits.clone().requires_grad_(True)
    mask_logits = mask_logits.clone().requires_grad_(True)
    aux = (class_logits * 0.5, mask_logits * 0.5)  # an auxiliary layer sharing the leaves
    torch.manual_seed(123)
    loss = mask_classification_loss(
        [(class_logits, mask_logits), aux], labels, NUM_CLASSES, settings
    )
    loss.backward()
    return loss.detach(), class_logits.grad, mask_logits.grad


@pytest.mark.parametrize("num_points", [None, 40])
@pytest.mark.parametrize("stride", [1, 4])
def test_mask_loss_ignores_predictions_on_ignored_pixels(num_points, stride):
    labels = _ignore_labels()
    settings = MaskLossSettings(num_points=num_points)
    generator = torch.Generator().manual_seed(0)
    class_logits = torch.randn(2, 5, NUM_CLASSES + 1, generator=generator)
    mask_logits = torch.randn(2, 5, 32 // stride, 32 // stride, generator=generator)
    # Logit cells that no valid pixel's bilinear footprint reaches.
    valid = (labels != IGNORE_INDEX).reshape(2, -1)
    untouched = torch.ones(2, (32 // stride) ** 2, dtype=torch.bool)
    for i in range(2):
        index = torch.nonzero(valid[i]).flatten()[None]
        probe = torch.eye((32 // stride) ** 2).reshape(-1, 32 // stride, 32 // stride)
        reached = upsampled_at(probe, index, (32, 32)).abs().sum(1) > 0
        untouched[i] = ~reached
    assert untouched.any(dim=1).all()
    perturbed = mask_logits.clone()
    noise = 10 * torch.randn(perturbed.shape, generator=generator)
    cells = untouched.reshape(2, 1, 32 // stride, 32 // stride).expand_as(perturbed)
    perturbed[cells] += noise[cells]

    loss, class_grad, mask_grad = _mask_loss_and_grads(class_logits, mask_logits, labels, settings)
    loss2, class_grad2, mask_grad2 = _mask_loss_and_grads(class_logits, perturbed, labels, settings)
    assert torch.equal(loss, loss2)
    assert torch.equal(class_grad, class_grad2)
    assert torch.equal(mask_grad, mask_grad2)
    assert torch.count_nonzero(mask_grad[cells]) == 0

    # The bug this guards against: 255 treated as background makes the loss depend on them.
    as_background = labels.masked_fill(labels == IGNORE_INDEX, 0)
    bug, _, _ = _mask_loss_and_grads(class_logits, mask_logits, as_background, settings)
    bug2, _, _ = _mask_loss_and_grads(class_logits, perturbed, as_background, settings)
    assert not torch.equal(bug, bug2)


def test_upsampled_at_equals_interpolate():
    from torch.nn import functional as F

    logits = torch.randn(3, 7, 5, dtype=torch.float64)
    index = torch.arange(30 * 22)[None]
    full = F.interpolate(logits[None], size=(30, 22), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(upsampled_at(logits, index, (30, 22)), full.reshape(3, -1))


def test_segformer_loss_ignores_predictions_on_ignored_pixels():
    labels = _ignore_labels()
    logits = torch.randn(2, NUM_CLASSES, 32, 32)
    perturbed = logits.clone()
    ignored = (labels == IGNORE_INDEX)[:, None].expand_as(logits)
    perturbed[ignored] += 10 * torch.randn(int(ignored.sum()))

    def run(values):
        values = values.clone().requires_grad_(True)
        loss = pixel_cross_entropy(values, labels)
        loss.backward()
        return loss.detach(), values.grad

    loss, grad = run(logits)
    loss2, grad2 = run(perturbed)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    assert torch.count_nonzero(grad[ignored]) == 0
    as_background = labels.masked_fill(labels == IGNORE_INDEX, 0)
    assert not torch.equal(
        pixel_cross_entropy(logits, as_background), pixel_cross_entropy(perturbed, as_background)
    )


@pytest.mark.parametrize("num_points", [None, 40])
def test_an_image_without_valid_pixels_contributes_nothing(num_points):
    labels = _ignore_labels()
    labels[1] = IGNORE_INDEX
    settings = MaskLossSettings(num_points=num_points)
    class_logits = torch.randn(2, 5, NUM_CLASSES + 1)
    mask_logits = torch.randn(2, 5, 8, 8)
    loss, class_grad, mask_grad = _mask_loss_and_grads(class_logits, mask_logits, labels, settings)
    assert torch.isfinite(loss) and loss > 0
    assert torch.count_nonzero(class_grad[1]) == 0 and torch.count_nonzero(mask_grad[1]) == 0
    # The same loss as the first image alone.
    alone, _, _ = _mask_loss_and_grads(class_logits[:1], mask_logits[:1], labels[:1], settings)
    assert torch.allclose(loss, alone)
    labels[:] = IGNORE_INDEX
    loss, class_grad, mask_grad = _mask_loss_and_grads(class_logits, mask_logits, labels, settings)
    assert float(loss) == 0.0 and torch.count_nonzero(class_grad) == 0
    assert float(pixel_cross_entropy(torch.randn(2, NUM_CLASSES, 32, 32), labels)) == 0.0


def test_mask_loss_rejects_labels_outside_the_classes():
    labels = _ignore_labels()
    labels[0, 20, 20] = NUM_CLASSES
    with pytest.raises(ValueError, match="num_classes"):
        mask_classification_loss(
            [(torch.randn(2, 5, NUM_CLASSES + 1), torch.randn(2, 5, 8, 8))], labels, NUM_CLASSES
        )


# -- DDP scaling ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_world_size_two_halves_average_to_the_full_batch(name, backbones, monkeypatch):
    import torch.distributed as dist

    arch, model = _build(name, backbones)
    model.eval()  # no dropout / drop path / batch statistics: the halves see the same net
    pixels, labels = _batch()
    labels[0, :20] = IGNORE_INDEX
    labels[3, :, 10:] = IGNORE_INDEX

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full = arch.loss(model, pixels, labels)
    full_grads = gradients(full)

    halves = [(pixels[:2], labels[:2]), (pixels[2:], labels[2:])]
    local: list[torch.Tensor] = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: local.append(t.clone()))
    for half_pixels, half_labels in halves:
        arch.loss(model, half_pixels, half_labels, world_size=2)
    assert len(local) == 2
    total = local[0] + local[1]
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: t.copy_(total))
    losses, grads = [], []
    for half_pixels, half_labels in halves:
        loss = arch.loss(model, half_pixels, half_labels, world_size=2)
        losses.append(loss.detach())
        grads.append(gradients(loss))
    assert torch.allclose((losses[0] + losses[1]) / 2, full.detach(), rtol=1e-5)
    for key, value in full_grads.items():
        averaged = (grads[0][key] + grads[1][key]) / 2
        assert torch.allclose(averaged, value, rtol=1e-4, atol=1e-7), key


# -- parameter groups -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_param_groups_follow_the_recipe(name, backbones):
    arch, model = _build(name, backbones)
    recipe = ARCHS[name].recipe
    groups = arch.param_groups(model, recipe.lr, recipe.weight_decay, recipe.backbone_lr_mult)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    for group in groups:
        backbone = group["name"].startswith("backbone")
        mult = recipe.backbone_lr_mult if backbone else 1.0
        assert group["lr"] == pytest.approx(recipe.lr * mult) and group["lr_mult"] == mult
        decay = 0.0 if group["name"].endswith("no_decay") else recipe.weight_decay
        assert group["weight_decay"] == decay
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    backbone_ids = {id(p) for n, p in model.named_parameters() if _in_backbone(name, n)}
    assert backbone_ids == {
        id(p) for g in groups if g["name"].startswith("backbone") for p in g["params"]
    }
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert norms <= {id(p) for g in groups if g["name"].endswith("no_decay") for p in g["params"]}


def _in_backbone(arch_name: str, parameter: str) -> bool:
    if arch_name.startswith("segformer"):
        return parameter.startswith("segformer.")
    if arch_name.startswith("mask2former"):
        return parameter.startswith("model.pixel_level_module.encoder.")
    return parameter.startswith(("embeddings.", "layers.", "layernorm."))


# -- rebuild ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_architecture_round_trip_rebuilds_the_same_network(name, backbones):
    arch, model = _build(name, backbones)
    description = json.loads(json.dumps(arch.architecture(model)))
    rebuilt = arch.rebuild(description)
    original, copy = model.state_dict(), rebuilt.state_dict()
    assert list(original) == list(copy)
    assert all(original[k].shape == copy[k].shape for k in original)
    rebuilt.load_state_dict(original)
    pixels, _ = _batch(2, 40)
    with torch.no_grad():
        expected = arch.logits(model.eval(), pixels)
        assert torch.equal(arch.logits(rebuilt.eval(), pixels), expected)
    with pytest.raises(ValueError, match="architecture"):
        arch.rebuild({"arch": "other", "config": {}})


# -- registry and the WSSS guard --------------------------------------------------------


def test_registry_names_and_defaults():
    assert DEFAULT_ARCH == "mask2former-swin-large" and DEFAULT_ARCH in ARCHS
    assert {"mask2former-swin-base", "segformer-b5"} <= set(ARCHS)
    assert ARCHS["mask2former-swin-large"].init.endswith("in22k")
    assert ARCHS["segformer-b5"].init == "nvidia/mit-b5"
    recipe = ARCHS[DEFAULT_ARCH].recipe
    assert (recipe.lr, recipe.weight_decay, recipe.backbone_lr_mult) == (1e-4, 0.05, 0.1)
    assert (recipe.iterations, recipe.batch_size, recipe.crop_size) == (80_000, 8, 512)
    for card in ARCHS.values():
        assert "segment" not in card.init and "ade" not in card.init
        assert card.recipe is None or card.recipe.source
        arch, same = get_arch(card.name)
        assert same is card and isinstance(arch, SegmentationArch)
    # DeepLabV2 is a card too (no recipe: the run config's defaults are its recipe)
    assert ARCHS[DEEPLAB_ARCH].recipe is None and family(DEEPLAB_ARCH) == "deeplab"
    assert isinstance(get_arch(DEEPLAB_ARCH)[0], DeepLabArch)
    assert family("eomt-large") == "eomt" and family("mask2former-swin-base") == "mask2former"
    with pytest.raises(ValueError, match="unknown --arch"):
        get_arch("deeplab-v9")


def test_registered_arch_is_found_listed_and_removed(tmp_path):
    from click.testing import CliRunner

    from samwsss.cli import cli
    from samwsss.segnets.registry import (
        EXTRA_ARCHS,
        lookup_arch,
        recipe_values,
        register_arch,
        unregister_arch,
    )

    before, extra_before = dict(ARCHS), dict(EXTRA_ARCHS)
    recipe = dataclasses.replace(ARCHS["segformer-b5"].recipe, iterations=7, source="tiny")
    card = ArchCard(
        name="segformer-tiny-test",
        description="a SegFormer added in-process",
        init="none",
        recipe=recipe,
        builder="samwsss.segnets.segformer:SegFormerArch",
        family="segformer",
        model_types=("tiny-test-type",),
    )
    register_arch(card)
    try:
        register_arch(card)  # the same card again: a no-op
        with pytest.raises(ValueError, match="already registered"):
            register_arch(dataclasses.replace(card, init="other"))
        arch, same = lookup_arch(card.name)
        assert same is card and arch.name == "segformer" and family(card.name) == "segformer"
        assert recipe_values(arch, card)["iterations"] == 7
        folder = tmp_path / "tiny"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "tiny-test-type"}')
        arch, folder_card = get_arch(folder)
        assert arch.name == "segformer" and folder_card.recipe is recipe
        assert folder_card.init == str(folder)
        listed = CliRunner().invoke(cli, ["models", "--kind", "arch"])
        assert listed.exit_code == 0, listed.output
        assert "segformer-tiny-test" in listed.output and "recipe: tiny" in listed.output
        assert "deeplabv2" in listed.output and "grounding-dino" not in listed.output
    finally:
        assert unregister_arch(card.name) is card
    assert ARCHS == before and EXTRA_ARCHS == extra_before
    assert list(ARCHS)[0] == DEFAULT_ARCH
    with pytest.raises(ValueError, match="tiny-test-type"):
        get_arch(folder)


def test_get_arch_takes_a_local_model_folder(backbones):
    arch, card = get_arch(backbones["swin"])
    assert arch.name == "mask2former" and card.init == str(backbones["swin"])
    assert card.recipe == ARCHS["mask2former-swin-large"].recipe
    arch, card = get_arch(str(backbones["mit"]))
    assert arch.name == "segformer"


def test_segmentation_checkpoints_are_refused_unless_allowed(tmp_path, backbones):
    from transformers import SegformerForSemanticSegmentation

    _, model = _build("segformer-b5", backbones)
    model.config.architectures = ["SegformerForSemanticSegmentation"]
    model.save_pretrained(tmp_path / "ade")
    arch, card = get_arch(tmp_path / "ade")
    with pytest.raises(ValueError, match="allow_segmentation_init"):
        arch.build(NUM_CLASSES, card.init)
    loaded = arch.build(NUM_CLASSES + 1, card.init, allow_segmentation_init=True)
    assert isinstance(loaded, SegformerForSemanticSegmentation)
    assert loaded.config.num_labels == NUM_CLASSES + 1
    assert torch.equal(loaded.decode_head.linear_fuse.weight, model.decode_head.linear_fuse.weight)


def test_classification_checkpoints_with_a_segmentation_label_map_are_refused(tmp_path):
    from transformers import SwinConfig, SwinForImageClassification

    names = ["wall", "building", "sky"] + [f"thing{i}" for i in range(147)]
    config = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    SwinForImageClassification(config).save_pretrained(tmp_path / "ade-swin")
    arch = tiny_arch("mask2former-swin-large")
    with pytest.raises(ValueError, match="WSSS protocol"):
        arch.build(NUM_CLASSES, str(tmp_path / "ade-swin"))


def test_a_wrong_model_type_is_refused(backbones):
    arch = tiny_arch("mask2former-swin-large")
    with pytest.raises(ValueError, match="Swin checkpoint"):
        arch.build(NUM_CLASSES, str(backbones["mit"]))
    with pytest.raises(ValueError, match="MiT"):
        tiny_arch("segformer-b5").build(NUM_CLASSES, str(backbones["swin"]))


def test_eomt_logits_slide_a_window_over_other_sizes(backbones):
    from samwsss.training.predict import window_probabilities

    arch, model = _build("eomt-dinov2-large", backbones)
    model.eval()
    side = arch.image_size
    with torch.no_grad():
        square = arch.logits(model, torch.randn(1, 3, side, side))
        pixels = torch.randn(1, 3, side + 10, side - 6)
        logits = arch.logits(model, pixels)
        expected = window_probabilities(model, arch, pixels, side, max(1, side * 2 // 3))
    assert square.shape[-2:] == (side, side)
    assert logits.shape == (1, square.shape[1], side + 10, side - 6)
    assert torch.allclose(logits.softmax(1), expected, atol=1e-5)
