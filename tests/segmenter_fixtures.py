"""A tiny test architecture for the general segmenter trainer (CPU, milliseconds per step).

``TinyConvArch`` implements :class:`samwsss.segnets.arch.SegmentationArch` around a
two-layer convolutional "backbone" (stride 2) and a 1x1 head, with AdamW-style parameter
groups (backbone at ``lr * backbone_lr_mult``; biases without weight decay) given by their
``lr`` only, so the trainer derives each group's multiplier itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from samwsss.training.config import TrainConfig
from tests.deeplab_fixtures import ShapesDataset, as_rank, tiny_config

TINY_ARCH = "tiny-conv"


class TinyConvNet(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 stride 2 -> ReLU -> conv1x1 classes (logits at stride 2)."""

    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, num_classes, 1)
        self.num_classes = num_classes
        self.width = width

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixels))


class TinyConvArch:
    """:class:`TinyConvNet` behind the SegmentationArch interface."""

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, width: int = 8, fixed_input_size: bool = False) -> None:
        self.name = TINY_ARCH
        self.width = width
        self.fixed_input_size = fixed_input_size

    def build(
        self, num_classes: int, init: str | None, *, allow_segmentation_init: bool = False
    ) -> nn.Module:
        model = TinyConvNet(num_classes, self.width)
        if init not in (None, "none"):
            state = torch.load(str(init), weights_only=True)
            state = state.get("model", state)
            if any(k.startswith("head.") for k in state) and not allow_segmentation_init:
                raise ValueError(f"{init} was trained on segmentation; allow it explicitly")
            model.load_state_dict(state, strict=False)
        return model

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        return {"num_classes": int(model.num_classes), "width": int(model.width)}

    def rebuild(self, architecture: Mapping[str, Any]) -> nn.Module:
        return TinyConvNet(int(architecture["num_classes"]), int(architecture["width"]))

    def loss(
        self,
        model: nn.Module,
        pixels: torch.Tensor,
        labels: torch.Tensor,
        *,
        world_size: int = 1,
    ) -> torch.Tensor:
        logits = F.interpolate(
            model(pixels).float(), size=labels.shape[-2:], mode="bilinear", align_corners=False
        )
        total = F.cross_entropy(logits, labels, ignore_index=255, reduction="sum")
        valid = (labels != 255).sum()
        if world_size > 1:
            dist.all_reduce(valid)
        return total / (valid.float() / world_size).clamp(min=1)

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            model(pixels).float(), size=pixels.shape[-2:], mode="bilinear", align_corners=False
        )

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float
    ) -> list[dict[str, Any]]:
        groups: dict[str, list[nn.Parameter]] = {
            "backbone": [],
            "backbone_no_decay": [],
            "head": [],
            "head_no_decay": [],
        }
        for name, parameter in model.named_parameters():
            part = "backbone" if name.startswith("backbone.") else "head"
            groups[part + ("_no_decay" if name.endswith(".bias") else "")].append(parameter)
        rates = {"backbone": lr * backbone_lr_mult, "head": lr}
        return [
            {
                "params": params,
                "name": name,
                "lr": rates[name.split("_")[0]],
                "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
            }
            for name, params in groups.items()
        ]


def tiny_arch_config(**overrides: object) -> TrainConfig:
    """A tiny-conv run: AdamW, backbone x0.1, weight decay 0.01, 40-pixel crops on CPU."""
    values: dict[str, object] = {
        "arch": TINY_ARCH,
        "optimizer": "adamw",
        "lr": 0.01,
        "backbone_lr_mult": 0.1,
        "weight_decay": 0.01,
    }
    values.update(overrides)
    return tiny_config(**values)


def tiny_arch_ddp_config(batch_size: int) -> TrainConfig:
    """The tiny-conv config of the DDP test (seed 3: the ranks' valid pixel counts differ)."""
    return tiny_arch_config(
        iterations=2,
        batch_size=batch_size,
        crop_size=32,
        checkpoint_every=2,
        seed=3,
    )


def tiny_arch_ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One forked gloo process: a short tiny-conv DDP run into ``out_dir/ddp``."""
    from samwsss.training.train import Trainer

    as_rank(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        Trainer(
            tiny_arch_ddp_config(batch_size=2),
            ShapesDataset(6, (40, 40), seed=2),
            Path(out_dir) / "ddp",
            arch=TinyConvArch(),
        ).run()
    finally:
        dist.destroy_process_group()
