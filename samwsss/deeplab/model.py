"""DeepLabV2: a dilated ResNet (output stride 8) with the ASPP-v2 head.

The backbone is torchvision's ResNet with strides of the last two stages replaced by
dilation 2 and 4 (``replace_stride_with_dilation=[False, True, True]``) and frozen batch
norm (``FrozenBatchNorm2d``: statistics and affine parameters are buffers, never trained),
as in the DeepLab-v2 reference. The head (ASPP-v2) is four parallel 3x3 convolutions with
dilations 6, 12, 18, 24, each mapping the 2048 backbone channels straight to the class
scores (with bias); their outputs are summed. Head weights are initialised N(0, 0.01^2),
biases 0, as the reference's ``fc8`` layers.

Parameter names: ``backbone.<torchvision resnet name>`` (``backbone.conv1.weight``,
``backbone.layer4.2.conv3.weight``, ...) and ``head.branches.<i>.{weight,bias}``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from samwsss.checkpoints import load_checkpoint, tensor_state

logger = logging.getLogger(__name__)

OUTPUT_STRIDE = 8
BACKBONE_CHANNELS = 2048

#: ``init`` values naming torchvision ImageNet weights, per backbone.
_TORCHVISION_WEIGHTS = {
    ("resnet50", "imagenet"): "ResNet50_Weights.IMAGENET1K_V1",
    ("resnet50", "imagenet-v2"): "ResNet50_Weights.IMAGENET1K_V2",
    ("resnet101", "imagenet"): "ResNet101_Weights.IMAGENET1K_V1",
    ("resnet101", "imagenet-v2"): "ResNet101_Weights.IMAGENET1K_V2",
    ("resnet152", "imagenet"): "ResNet152_Weights.IMAGENET1K_V1",
    ("resnet152", "imagenet-v2"): "ResNet152_Weights.IMAGENET1K_V2",
}


class ASPPV2(nn.Module):
    """Atrous spatial pyramid pooling as in DeepLab-v2: summed 3x3 atrous classifiers.

    Args:
        in_channels: channels of the backbone feature map (2048 for ResNet-50/101/152).
        num_classes: output channels (classes including background).
        rates: dilation (= padding) of each branch.

    Shape:
        ``(B, in_channels, h, w)`` float -> ``(B, num_classes, h, w)`` logits.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int]) -> None:
        super().__init__()
        convs = [
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate, bias=True)
            for rate in rates
        ]
        for conv in convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            assert conv.bias is not None  # built with bias=True
            nn.init.zeros_(conv.bias)
        self.branches = nn.ModuleList(convs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](features)
        for branch in self.branches[1:]:
            out = out + branch(features)
        return out


class DeepLabV2(nn.Module):
    """Dilated ResNet + ASPP-v2.

    Args:
        num_classes: classes including background (21 VOC, 81 COCO).
        layers: Bottleneck blocks per stage (``(3, 4, 23, 3)`` = ResNet-101).
        width_per_group: Bottleneck inner width per 64 planes (64 = standard ResNet).
        atrous_rates: ASPP branch dilations.

    ``forward`` takes a normalised float ``(B, 3, H, W)`` batch and returns
    ``(B, num_classes, h, w)`` logits at output stride 8, ``h = ceil(H / 8)`` for the usual
    sizes (``321 -> 41``); use :func:`upsample_logits` to reach the input size.
    """

    def __init__(
        self,
        num_classes: int,
        layers: Sequence[int] = (3, 4, 23, 3),
        width_per_group: int = 64,
        atrous_rates: Sequence[int] = (6, 12, 18, 24),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        resnet = ResNet(
            Bottleneck,
            list(layers),
            width_per_group=width_per_group,
            replace_stride_with_dilation=[False, True, True],
            norm_layer=FrozenBatchNorm2d,
        )
        self.backbone = nn.Sequential(
            OrderedDict(
                (name, getattr(resnet, name))
                for name in (
                    "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"
                )
            )
        )  # fmt: skip
        self.head = ASPPV2(BACKBONE_CHANNELS, num_classes, atrous_rates)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split as the reference solver does.

        Returns:
            ``{"backbone": [...], "head_weight": [...], "head_bias": [...]}``. Frozen batch
            norm holds buffers only, so every parameter is in exactly one group.
        """
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head_weight": [], "head_bias": []}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("head."):
                groups["head_bias" if name.endswith(".bias") else "head_weight"].append(parameter)
            else:
                groups["backbone"].append(parameter)
        return groups


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize ``(B, C, h, w)`` logits to ``size = (H, W)`` (align_corners=False)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _stage_layers(backbone: str, layers: Sequence[int] | None) -> tuple[int, ...]:
    """Bottleneck counts per stage of ``backbone`` (``layers`` for ``"custom"``).

    Raises:
        ValueError: unknown backbone, ``"custom"`` without ``layers``, or ``layers`` that
            do not match the named backbone.
    """
    from samwsss.deeplab.config import BACKBONES

    if backbone == "custom":
        if layers is None:
            raise ValueError("backbone 'custom' needs layers, e.g. layers=(1, 1, 1, 1)")
        return tuple(int(n) for n in layers)
    if backbone not in BACKBONES:
        raise ValueError(
            f"backbone {backbone!r} is unknown; use one of {sorted(BACKBONES)} or 'custom'"
        )
    stage_layers = BACKBONES[backbone]
    if layers is not None and tuple(layers) != stage_layers:
        raise ValueError(
            f"layers {list(layers)} do not match backbone {backbone!r} {list(stage_layers)}; "
            "use backbone='custom' for other depths"
        )
    return stage_layers


def build_deeplab(
    num_classes: int,
    *,
    backbone: str = "resnet101",
    layers: Sequence[int] | None = None,
    width_per_group: int = 64,
    atrous_rates: Sequence[int] = (6, 12, 18, 24),
    init: str = "imagenet",
) -> DeepLabV2:
    """Build a DeepLabV2 and initialise it.

    Args:
        num_classes: classes including background.
        backbone: ``"resnet50"``, ``"resnet101"``, ``"resnet152"`` or ``"custom"``.
        layers: Bottleneck counts per stage; required for ``"custom"``, otherwise must match
            the named backbone when given.
        width_per_group: 64 for the standard networks; smaller only for tests/experiments.
        atrous_rates: ASPP dilations.
        init: ``"imagenet"`` / ``"imagenet-v2"`` (torchvision weights through the weights
            enum, downloaded to the torch hub cache on first use), ``"none"`` (random), or a
            path to a local file: a samwsss DeepLab checkpoint (``model`` entry), a plain
            DeepLabV2 state dict, or a torchvision-layout ResNet state dict (``fc.*`` dropped).

    Raises:
        ValueError: unknown backbone/init, layer counts that do not match the name, or a
            local checkpoint whose keys/shapes do not fit.
    """
    model = DeepLabV2(num_classes, _stage_layers(backbone, layers), width_per_group, atrous_rates)
    if init == "none":
        return model
    if init in ("imagenet", "imagenet-v2"):
        key = (backbone, init)
        if key not in _TORCHVISION_WEIGHTS or width_per_group != 64:
            raise ValueError(
                f"init {init!r} needs a standard torchvision backbone (resnet50/101/152 with "
                f"width_per_group 64), got backbone {backbone!r} width {width_per_group}; "
                "use init='none' or a local checkpoint"
            )
        load_torchvision_backbone(model, _TORCHVISION_WEIGHTS[key])
        return model
    path = Path(init)
    if not path.is_file():
        raise ValueError(
            f"init {init!r} is neither 'imagenet', 'imagenet-v2', 'none' nor an existing "
            "checkpoint file"
        )
    load_local_weights(model, path)
    return model


def load_torchvision_backbone(model: DeepLabV2, weights_name: str) -> None:
    """Load torchvision ImageNet weights (e.g. ``"ResNet101_Weights.IMAGENET1K_V1"``).

    The weights are fetched through ``torchvision.models.get_weight(...).get_state_dict``,
    i.e. downloaded once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and
    read from there.

    Raises:
        ValueError: the download failed (offline machine); the message names the file to
            place in the cache and the offline alternatives.
    """
    from torchvision.models import get_weight

    weights = get_weight(weights_name)
    logger.info("loading %s (%s)", weights_name, weights.url)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as error:  # urllib's URLError/HTTPError are OSErrors
        cache = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[1]
        raise ValueError(
            f"could not download the ImageNet weights {weights_name} from {weights.url} "
            f"({error}); copy that file to {cache}, or use --init none / --init PATH "
            "(a local torchvision ResNet or samwsss checkpoint)"
        ) from error
    _load_backbone_state(model, state, str(weights_name))


def load_local_weights(model: DeepLabV2, path: str | os.PathLike[str]) -> None:
    """Initialise ``model`` from a local file (see :func:`build_deeplab`'s ``init``).

    A full DeepLabV2 state dict must match in every backbone key; its head is loaded when
    the shapes match (same class count) and left at its fresh initialisation otherwise
    (logged), so a checkpoint trained on one dataset can seed another.
    """
    expected = (
        "a torchvision ResNet state dict, or a samwsss DeepLabV2 checkpoint "
        "(model_final.pt, checkpoints/last.pt)"
    )
    loaded = load_checkpoint(path, kind="DeepLabV2 or ResNet", expected=expected)
    state = tensor_state(loaded, path, kind="DeepLabV2 or ResNet", expected=expected)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        backbone_state = {
            k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")
        }
        _load_backbone_state(model, backbone_state, str(path))
        head_state = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
        own = model.head.state_dict()
        if (
            head_state
            and all(k in head_state and head_state[k].shape == v.shape for k, v in own.items())
            and len(head_state) == len(own)
        ):
            model.head.load_state_dict(head_state)
        else:
            logger.info("%s: head not loaded (class count or rates differ); fresh head", path)
        return
    _load_backbone_state(model, state, str(path))


def _load_backbone_state(model: DeepLabV2, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a torchvision-layout ResNet state dict into ``model.backbone`` (``fc.*`` ignored)."""
    filtered = {
        k: v
        for k, v in state.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(filtered))
    unexpected = sorted(set(filtered) - set(own))
    mismatched = sorted(k for k in set(own) & set(filtered) if own[k].shape != filtered[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source}: weights do not fit the DeepLabV2 backbone: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(mismatched)} with other shapes "
            f"(e.g. {mismatched[:3]}); "
            "check the backbone depth/width in the config"
        )
    model.backbone.load_state_dict(filtered, strict=True)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
