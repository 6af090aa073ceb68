"""DeepLabV2 (dilated ResNet + ASPP-v2) as a :class:`~samwsss.segnets.arch.SegmentationArch`.

A thin adapter over :mod:`samwsss.deeplab.model` and :mod:`samwsss.deeplab.optim`: the
network, the parameter groups and the loss are exactly those ``train-deeplab`` has always
used, so a DeepLabV2 run through the general trainer gives the same numbers.

The DeepLab-specific settings (backbone depth and width, ASPP rates, the head's learning rate
and decay multipliers, the loss resolution) live in the run's config
(:class:`~samwsss.deeplab.config.DeepLabConfig`); :meth:`DeepLabArch.from_config` takes them
from there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samwsss.segnets.arch import IGNORE_INDEX

if TYPE_CHECKING:
    import torch
    from torch import nn

    from samwsss.deeplab.config import DeepLabConfig

logger = logging.getLogger(__name__)

#: The name of DeepLabV2 for ``--arch`` and in checkpoints.
DEEPLAB_ARCH = "deeplabv2"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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
            :func:`samwsss.deeplab.optim.segmentation_loss`).
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
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    name: str = DEEPLAB_ARCH
    #: Any input size works (fully convolutional): no sliding window needed.
    fixed_input_size: bool = False

    @classmethod
    def from_config(cls, config: DeepLabConfig) -> DeepLabArch:
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
        :func:`samwsss.deeplab.model.build_deeplab`).

        Raises:
            ValueError: ``init`` is a file of segmentation-trained weights (a samwsss
                segmenter checkpoint or a DeepLabV2 state dict with its head) and
                ``allow_segmentation_init`` is off, or whatever ``build_deeplab`` rejects.
        """
        from samwsss.deeplab.model import build_deeplab

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
        from samwsss.deeplab.model import _stage_layers

        return {
            "num_classes": int(getattr(model, "num_classes", 0)),
            "backbone": self.backbone,
            "layers": list(_stage_layers(self.backbone, self.layers)),
            "width_per_group": self.width_per_group,
            "atrous_rates": list(self.atrous_rates),
        }

    def rebuild(self, architecture: Mapping[str, Any]) -> nn.Module:
        """A random DeepLabV2 of :meth:`architecture`'s description."""
        from samwsss.deeplab.model import build_deeplab

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
        self,
        model: nn.Module,
        pixels: torch.Tensor,
        labels: torch.Tensor,
        *,
        world_size: int = 1,
    ) -> torch.Tensor:
        """Cross-entropy over the valid pixels of the global batch
        (:func:`samwsss.deeplab.optim.deeplab_loss` of the model's logits)."""
        from samwsss.deeplab.optim import deeplab_loss

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
        from samwsss.deeplab.model import upsample_logits

        return upsample_logits(model(pixels).float(), size)

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float
    ) -> list[dict[str, Any]]:
        """The reference solver's groups ``backbone`` (x ``backbone_lr_mult``),
        ``head_weight`` (x ``head_lr_mult``), ``head_bias`` (x ``head_bias_lr_mult``, no
        decay unless ``head_bias_decay``); each carries ``lr_mult``."""
        from samwsss.deeplab.optim import deeplab_param_groups

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
    cannot be read are left to :func:`~samwsss.deeplab.model.build_deeplab` to report.
    """
    from samwsss.checkpoints import CheckpointError, load_checkpoint

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
