"""DeepLabV2 model: output stride, ASPP-v2 head, frozen BN, parameter groups, local init."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from samwsss.segnets.deeplab import ASPPV2, DeepLabV2, build_deeplab
from samwsss.segnets.inference import upsample_logits
from tests.deeplab_fixtures import one_torch_thread


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


def _tiny(num_classes: int = 4, init: str = "none") -> DeepLabV2:
    return build_deeplab(
        num_classes,
        backbone="custom",
        layers=(1, 1, 1, 1),
        width_per_group=8,
        atrous_rates=(1, 2, 3, 4),
        init=init,
    )


def test_tiny_output_stride_8_and_shapes() -> None:
    model = _tiny(5).eval()
    for size in ((48, 48), (41, 57), (97, 129)):
        with torch.no_grad():
            out = model(torch.randn(1, 3, *size))
        expected = tuple((s - 1) // 8 + 1 for s in size)  # ceil(s / 8)
        assert out.shape == (1, 5, *expected)
    assert out.shape[-2:] == (13, 17)
    assert upsample_logits(out, (97, 129)).shape == (1, 5, 97, 129)


def test_resnet101_structure_dilations_and_aspp() -> None:
    torch.manual_seed(0)
    model = build_deeplab(21, init="none")
    backbone = model.backbone
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    # stride 8: layer3/layer4 keep resolution and dilate their 3x3 convolutions
    assert backbone.layer2[0].conv2.stride == (2, 2)
    assert backbone.layer3[0].conv2.stride == (1, 1) and backbone.layer4[0].conv2.stride == (1, 1)
    assert backbone.layer3[1].conv2.dilation == (2, 2)
    assert backbone.layer4[1].conv2.dilation == (4, 4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 104
    head = model.head
    assert isinstance(head, ASPPV2)
    assert [c.dilation for c in head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(
        c.in_channels == 2048 and c.out_channels == 21 and c.kernel_size == (3, 3)
        for c in head.branches
    )
    assert all(c.bias is not None and torch.count_nonzero(c.bias) == 0 for c in head.branches)
    assert abs(float(head.branches[0].weight.detach().std()) - 0.01) < 0.001
    # torchvision ResNet-101 has 44,549,160 parameters; minus fc (2048*1000 + 1000) and
    # the batch-norm affine parameters, which frozen BN keeps as buffers
    backbone_params = sum(p.numel() for p in backbone.parameters())
    frozen_affine = sum(
        2 * m.weight.numel() for m in model.modules() if isinstance(m, FrozenBatchNorm2d)
    )
    assert backbone_params + frozen_affine == 44_549_160 - 2_049_000
    assert sum(p.numel() for p in head.parameters()) == 4 * (2048 * 9 * 21 + 21)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 33, 33))
    assert out.shape == (1, 21, 5, 5)


def test_aspp_is_sum_of_branches() -> None:
    head = ASPPV2(16, 3, (1, 2))
    x = torch.randn(2, 16, 7, 7)
    expected = head.branches[0](x) + head.branches[1](x)
    torch.testing.assert_close(head(x), expected)


def test_frozen_bn_has_no_parameters_and_param_groups_partition() -> None:
    model = _tiny()
    groups = model.param_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("backbone.") for p in groups["backbone"])
    head_weights = sorted(names[id(p)] for p in groups["head_weight"])
    assert head_weights == [f"head.branches.{i}.weight" for i in range(4)]
    head_biases = sorted(names[id(p)] for p in groups["head_bias"])
    assert head_biases == [f"head.branches.{i}.bias" for i in range(4)]
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert not any(
        "bn" in names[id(p)] or "downsample.1" in names[id(p)] for p in groups["backbone"]
    )
    assert any(n.endswith("bn1.running_mean") for n, _ in model.named_buffers())


def test_init_from_torchvision_layout_state_dict(tmp_path) -> None:
    torch.manual_seed(1)
    resnet = ResNet(
        Bottleneck,
        [1, 1, 1, 1],
        width_per_group=8,
        replace_stride_with_dilation=[False, True, True],
    )
    state = resnet.state_dict()  # torchvision layout incl. fc.* and num_batches_tracked
    path = tmp_path / "resnet_tiny.pth"
    torch.save(state, path)
    model = _tiny(init=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(
        model.backbone.layer4[0].bn3.running_var, state["layer4.0.bn3.running_var"]
    )
    # a samwsss-style full checkpoint with a matching head loads the head too
    full = tmp_path / "full.pt"
    torch.save({"model": model.state_dict()}, full)
    again = _tiny(init=str(full))
    torch.testing.assert_close(again.head.branches[2].weight, model.head.branches[2].weight)
    # different class count: backbone loads, head stays fresh
    other = build_deeplab(
        7,
        backbone="custom",
        layers=(1, 1, 1, 1),
        width_per_group=8,
        atrous_rates=(1, 2, 3, 4),
        init=str(full),
    )
    torch.testing.assert_close(
        other.backbone.layer1[0].conv2.weight, model.backbone.layer1[0].conv2.weight
    )
    assert other.head.branches[0].weight.shape[0] == 7


def test_init_errors(tmp_path) -> None:
    wrong = ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16).state_dict()
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ValueError, match="do not fit the DeepLabV2 backbone"):
        _tiny(init=str(path))
    with pytest.raises(ValueError, match="neither 'imagenet'"):
        _tiny(init=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="standard torchvision backbone"):
        _tiny(init="imagenet")
    with pytest.raises(ValueError, match="unknown"):
        build_deeplab(21, backbone="resnet18", init="none")
    with pytest.raises(ValueError, match="do not match backbone"):
        build_deeplab(21, backbone="resnet101", layers=(1, 1, 1, 1), init="none")


def test_imagenet_init_reads_torchvision_weights_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    """The real ``init='imagenet'`` path, offline: the weights enum's file is already cached."""
    from torchvision.models import ResNet50_Weights, resnet50

    torch.manual_seed(2)
    reference = resnet50().state_dict()  # torchvision layout, as the download would hold
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(reference, cached)
    model = build_deeplab(21, backbone="resnet50", init="imagenet")
    torch.testing.assert_close(
        model.backbone.layer3[5].conv2.weight, reference["layer3.5.conv2.weight"]
    )
    torch.testing.assert_close(model.backbone.bn1.running_mean, reference["bn1.running_mean"])


def test_imagenet_init_offline_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ValueError, match=r"resnet50-0676ba61\.pth.*--init none"):
        build_deeplab(21, backbone="resnet50", init="imagenet")
