"""DeepLabV2: a dilated ResNet (output stride 8) with the ASPP-v2 head, its loss, and its
:class:`~samwsss.segnets.arch.SegmentationArch` (:class:`DeepLabArch`).

The backbone is torchvision's ResNet with strides of the last two stages replaced by
dilation 2 and 4 (``replace_stride_with_dilation=[False, True, True]``) and frozen batch
norm (``FrozenBatchNorm2d``: statistics and affine parameters are buffers, never trained),
as in the DeepLab-v2 reference. The head (ASPP-v2) is four parallel 3x3 convolutions with
dilations 6, 12, 18, 24, each mapping the 2048 backbone channels straight to the class
scores (with bias); their outputs are summed. Head weights are initialised N(0, 0.01^2),
biases 0, as the reference's ``fc8`` layers.

Parameter names: ``backbone.<torchvision resnet name>`` (``backbone.conv1.weight``,
``backbone.layer4.2.conv3.weight``, ...) and ``head.branches.<i>.{weight,bias}``.

The loss is cross-entropy summed over the valid (non-ignore) pixels and divided by a
normaliser; :func:`deeplab_loss` makes that normaliser the valid-pixel count of the *global*
batch under DDP, so the averaged gradients equal those of one process with the whole batch.

The DeepLab-specific settings (backbone depth and width, ASPP rates, the head's learning rate
and decay multipliers, the loss resolution) live in the run's config
(:class:`~samwsss.training.config.TrainConfig`); :meth:`DeepLabArch.from_config` takes them
from there.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from samwsss.checkpoints import CheckpointError, load_checkpoint, tensor_state
from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD
from samwsss.segnets.arch import IGNORE_INDEX
from samwsss.segnets.inference import upsample_logits

logger = logging.getLogger(__name__)

#: The name of DeepLabV2 for ``--arch`` and in checkpoints.
DEEPLAB_ARCH = "deeplabv2"

OUTPUT_STRIDE = 8
BACKBONE_CHANNELS = 2048

BACKBONES: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}
"""Bottleneck block counts per stage of the named backbones."""

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


def _stage_layers(backbone: str, layers: Sequence[int] | None) -> tuple[int, ...]:
    """Bottleneck counts per stage of ``backbone`` (``layers`` for ``"custom"``).

    Raises:
        ValueError: unknown backbone, ``"custom"`` without ``layers``, or ``layers`` that
            do not match the named backbone.
    """
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


def deeplab_param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    head_lr_mult: float,
    head_bias_lr_mult: float,
    head_bias_decay: bool,
    backbone_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """The reference solver's three parameter groups of a DeepLabV2.

    Groups (in this order), each carrying its ``lr_mult`` and ``name``:

    - ``backbone``: lr x ``backbone_lr_mult`` (1), weight decay ``weight_decay``;
    - ``head_weight``: lr x ``head_lr_mult`` (10), weight decay ``weight_decay``;
    - ``head_bias``: lr x ``head_bias_lr_mult`` (20), weight decay 0 unless
      ``head_bias_decay`` (the reference's ``decay_mult: 0``).
    """
    if not isinstance(model, DeepLabV2):
        raise ValueError(
            f"DeepLabV2 parameter groups need a DeepLabV2, got {type(model).__name__}; "
            "use the architecture that built the model"
        )
    groups = model.param_groups()
    spec = [
        ("backbone", backbone_lr_mult, weight_decay),
        ("head_weight", head_lr_mult, weight_decay),
        ("head_bias", head_bias_lr_mult, weight_decay if head_bias_decay else 0.0),
    ]
    return [
        {
            "params": groups[name],
            "name": name,
            "lr_mult": mult,
            "lr": lr * mult,
            "weight_decay": decay,
        }
        for name, mult, decay in spec
    ]


def loss_targets(
    labels: torch.Tensor, logits_size: tuple[int, int], resolution: str
) -> torch.Tensor:
    """The labels the loss compares the logits with, at the loss's resolution.

    Both :func:`segmentation_loss` and :func:`deeplab_loss` (which counts the valid pixels
    for the DDP normaliser) go through this, so the pixels counted are the pixels summed.

    Args:
        labels: ``(B, H, W)`` int64 class indices.
        logits_size: ``(h, w)`` of the stride-8 logits.
        resolution: ``"label"`` keeps ``labels`` as they are (the logits are upsampled);
            ``"logits"`` shrinks them to ``(h, w)`` with nearest neighbour, as Caffe DeepLab
            did (labels already of that size are returned as they are).

    Returns:
        ``(B, H, W)`` or ``(B, h, w)`` int64 labels.
    """
    if resolution == "label":
        return labels
    if resolution != "logits":
        raise ValueError(f"resolution must be 'label' or 'logits', got {resolution!r}")
    size = (int(logits_size[0]), int(logits_size[1]))
    if tuple(labels.shape[-2:]) == size:
        return labels
    shrunk = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return shrunk[:, 0].long()


def count_valid_pixels(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Number of pixels of ``labels`` that are not ``ignore_index`` (0-dim int64 tensor)."""
    return (labels != ignore_index).sum()


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    resolution: str = "label",
    normalizer: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Cross-entropy summed over valid pixels, divided by ``normalizer``.

    Args:
        logits: ``(B, C, h, w)`` stride-8 logits (any float dtype; computed in float32).
        labels: ``(B, H, W)`` int64 class indices, ``ignore_index`` ignored.
        resolution: ``"label"`` upsamples the logits to ``(H, W)`` (bilinear);
            ``"logits"`` shrinks the labels to ``(h, w)`` (nearest), as Caffe DeepLab did
            (see :func:`loss_targets`).
        normalizer: the divisor; default the number of valid pixels of the labels the loss
            uses (a plain mean). The trainer passes ``valid pixels of the global batch /
            world size`` under DDP, counted on the same (possibly shrunk) labels.

    Returns:
        Scalar float32 loss (0 when no pixel is valid).
    """
    logits = logits.float()
    labels = loss_targets(labels, (logits.shape[-2], logits.shape[-1]), resolution)
    if resolution == "label":
        logits = upsample_logits(logits, (labels.shape[-2], labels.shape[-1]))
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    if normalizer is None:
        normalizer = count_valid_pixels(labels, ignore_index)
    if isinstance(normalizer, torch.Tensor):
        return total / normalizer.clamp(min=1).to(total.dtype)
    return total / max(float(normalizer), 1.0)


def deeplab_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    resolution: str = "label",
    world_size: int = 1,
) -> torch.Tensor:
    """The loss of stride-8 ``logits`` over the valid pixels of the *global* batch.

    Args:
        logits: ``(B, C, h, w)`` logits of this process's batch.
        labels: ``(B, H, W)`` int64 labels on the logits' device.
        world_size: processes sharing the global batch; with more than one, the valid
            pixel count is all-reduced and the loss scaled so that DDP's gradient averaging
            yields the gradient of the mean over every valid pixel of the global batch.
            The count is taken on the labels the loss uses (shrunk to the logits' size
            with ``resolution="logits"``).
    """
    targets = loss_targets(labels, (logits.shape[-2], logits.shape[-1]), resolution)
    valid = count_valid_pixels(targets, ignore_index)
    if world_size > 1:
        dist.all_reduce(valid)
    normalizer = valid.float() / world_size
    return segmentation_loss(
        logits,
        targets,
        ignore_index=ignore_index,
        resolution=resolution,
        normalizer=normalizer,
    )


class DeepLabSettings(Protocol):
    """The fields of a run's config that :meth:`DeepLabArch.from_config` reads
    (:class:`~samwsss.training.config.TrainConfig` has them)."""

    @property
    def backbone(self) -> str: ...
    @property
    def layers(self) -> tuple[int, ...]: ...
    @property
    def width_per_group(self) -> int: ...
    @property
    def atrous_rates(self) -> Sequence[int]: ...
    @property
    def head_lr_mult(self) -> float: ...
    @property
    def head_bias_lr_mult(self) -> float: ...
    @property
    def head_bias_decay(self) -> bool: ...
    @property
    def loss_resolution(self) -> str: ...
    @property
    def ignore_index(self) -> int: ...
    @property
    def mean(self) -> Sequence[float]: ...
    @property
    def std(self) -> Sequence[float]: ...


@dataclass
class DeepLabArch:
    """DeepLabV2 behind the per-architecture interface of the trainer.

    Attributes:
        backbone: ``"resnet50"``, ``"resnet101"``, ``"resnet152"`` or ``"custom"``.
        layers: Bottleneck counts per stage for ``"custom"`` (``None`` otherwise).
        width_per_group: Bottleneck inner width per 64 planes (64 = standard).
        atrous_rates: ASPP-v2 dilations.
        head_lr_mult, head_bias_lr_mult: the head's weight / bias learning rate multipliers.
        head_bias_decay: weight decay on the head biases (off in the reference).
        loss_resolution: ``"label"`` or ``"logits"`` (see
            :func:`segmentation_loss`).
        ignore_index: label value without loss.
        mean, std: input normalisation (torchvision's ImageNet statistics).
    """

    backbone: str = "resnet101"
    layers: tuple[int, ...] | None = None
    width_per_group: int = 64
    atrous_rates: tuple[int, ...] = (6, 12, 18, 24)
    head_lr_mult: float = 10.0
    head_bias_lr_mult: float = 20.0
    head_bias_decay: bool = False
    loss_resolution: str = "label"
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = DEEPLAB_ARCH
    #: Any input size works (fully convolutional): no sliding window needed.
    fixed_input_size: bool = False

    @classmethod
    def from_config(cls, config: DeepLabSettings) -> DeepLabArch:
        """The DeepLabV2 of a run's config (backbone, rates, head multipliers, loss)."""
        return cls(
            backbone=config.backbone,
            layers=config.layers if config.backbone == "custom" else None,
            width_per_group=config.width_per_group,
            atrous_rates=tuple(config.atrous_rates),
            head_lr_mult=config.head_lr_mult,
            head_bias_lr_mult=config.head_bias_lr_mult,
            head_bias_decay=config.head_bias_decay,
            loss_resolution=config.loss_resolution,
            ignore_index=config.ignore_index,
            mean=tuple(config.mean),  # type: ignore[arg-type]
            std=tuple(config.std),  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ network
    def build(
        self, num_classes: int, init: str | None, *, allow_segmentation_init: bool = False
    ) -> nn.Module:
        """DeepLabV2 for ``num_classes`` initialised from ``init`` (see
        :func:`build_deeplab`).

        Raises:
            ValueError: ``init`` is a file of segmentation-trained weights (a samwsss
                segmenter checkpoint or a DeepLabV2 state dict with its head) and
                ``allow_segmentation_init`` is off, or whatever ``build_deeplab`` rejects.
        """
        chosen = "none" if init is None else init
        if not allow_segmentation_init and Path(chosen).is_file():
            _refuse_segmentation_weights(Path(chosen))
        return build_deeplab(
            num_classes,
            backbone=self.backbone,
            layers=self.layers,
            width_per_group=self.width_per_group,
            atrous_rates=self.atrous_rates,
            init=chosen,
        )

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        """Backbone, stage layers, width, ASPP rates and class count (JSON-safe)."""
        return {
            "num_classes": int(getattr(model, "num_classes", 0)),
            "backbone": self.backbone,
            "layers": list(_stage_layers(self.backbone, self.layers)),
            "width_per_group": self.width_per_group,
            "atrous_rates": list(self.atrous_rates),
        }

    def rebuild(self, architecture: Mapping[str, Any]) -> nn.Module:
        """A random DeepLabV2 of :meth:`architecture`'s description."""
        backbone = str(architecture["backbone"])
        return build_deeplab(
            int(architecture["num_classes"]),
            backbone=backbone,
            layers=tuple(int(n) for n in architecture["layers"]),
            width_per_group=int(architecture["width_per_group"]),
            atrous_rates=tuple(int(r) for r in architecture["atrous_rates"]),
            init="none",
        )

    # ------------------------------------------------------------------ training
    def loss(
        self, model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, world_size: int = 1
    ) -> torch.Tensor:
        """Cross-entropy over the valid pixels of the global batch
        (:func:`deeplab_loss` of the model's logits)."""
        return deeplab_loss(
            model(pixels),
            labels,
            ignore_index=self.ignore_index,
            resolution=self.loss_resolution,
            world_size=world_size,
        )

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Stride-8 logits upsampled bilinearly to the input size, float32."""
        return self.logits_at(model, pixels, (int(pixels.shape[-2]), int(pixels.shape[-1])))

    def logits_at(
        self, model: nn.Module, pixels: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """Logits upsampled straight to ``size`` (multi-scale inference interpolates once)."""
        return upsample_logits(model(pixels).float(), size)

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float
    ) -> list[dict[str, Any]]:
        """The reference solver's groups ``backbone`` (x ``backbone_lr_mult``),
        ``head_weight`` (x ``head_lr_mult``), ``head_bias`` (x ``head_bias_lr_mult``, no
        decay unless ``head_bias_decay``); each carries ``lr_mult``."""
        return deeplab_param_groups(
            model,
            lr=lr,
            weight_decay=weight_decay,
            backbone_lr_mult=backbone_lr_mult,
            head_lr_mult=self.head_lr_mult,
            head_bias_lr_mult=self.head_bias_lr_mult,
            head_bias_decay=self.head_bias_decay,
        )


def _refuse_segmentation_weights(path: Path) -> None:
    """Raise ``ValueError`` if ``path`` holds weights trained on segmentation.

    A samwsss segmenter checkpoint (format tag) or a state dict with DeepLabV2 head keys
    counts as segmentation-trained; a torchvision ResNet (ImageNet) does not. Files that
    cannot be read are left to :func:`build_deeplab` to report.
    """
    try:
        loaded = load_checkpoint(path, kind="DeepLabV2 or ResNet", expected="")
    except CheckpointError:
        return
    segmentation = False
    if isinstance(loaded, Mapping):
        if str(loaded.get("format", "")).startswith("samwsss-"):
            segmentation = True
        state = loaded.get("model", loaded)
        if isinstance(state, Mapping) and any(
            str(k).removeprefix("module.").startswith("head.") for k in state
        ):
            segmentation = True
    if segmentation:
        raise ValueError(
            f"init {str(path)!r} holds weights trained on segmentation (a DeepLabV2 head); "
            "the WSSS protocol allows only image-classification or self-supervised "
            "pretraining: pass an ImageNet ResNet checkpoint, or --allow-segmentation-init "
            "(allow_segmentation_init=true) to use it anyway, leaving the protocol"
        )
