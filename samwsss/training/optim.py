"""Optimisation: the optimiser of any architecture, the poly schedule, the training forward.

:func:`build_arch_optimizer` and :func:`arch_forward_loss` are the one optimiser builder and
the one training forward of every architecture, DeepLabV2 included (SGD or AdamW over
``arch.param_groups``, ``arch.loss`` under autocast; DeepLabV2's are
:class:`~samwsss.segnets.deeplab.DeepLabArch`'s).

DeepLabV2's parameter groups and loss (:func:`deeplab_param_groups`, :func:`deeplab_loss`,
:func:`segmentation_loss`, :func:`loss_targets`, :func:`count_valid_pixels`) live in
:mod:`samwsss.segnets.deeplab` and are re-exported here.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from samwsss.segnets.deeplab import (
    DeepLabArch,
    count_valid_pixels,
    deeplab_loss,
    deeplab_param_groups,
    loss_targets,
    segmentation_loss,
)
from samwsss.training.config import TrainConfig
from samwsss.training.transforms import normalize_batch

if TYPE_CHECKING:
    from samwsss.segnets.arch import SegmentationArch

__all__ = [
    "arch_forward_loss",
    "build_arch_optimizer",
    "build_optimizer",
    "count_valid_pixels",
    "deeplab_loss",
    "deeplab_param_groups",
    "forward_loss",
    "logged_learning_rates",
    "loss_targets",
    "poly_lr",
    "segmentation_loss",
    "set_learning_rates",
]


def build_arch_optimizer(
    arch: SegmentationArch, model: nn.Module, config: TrainConfig
) -> torch.optim.Optimizer:
    """The optimiser of ``config.optimizer`` over ``arch.param_groups(...)``.

    Every group keeps the ratio of its learning rate to ``config.lr`` as ``lr_mult``
    (given by the architecture, or computed from its ``lr``), which the poly schedule
    (:func:`set_learning_rates`) multiplies.

    Raises:
        ValueError: an unknown optimiser, or a group without ``params``.
    """
    groups = arch.param_groups(
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        backbone_lr_mult=config.backbone_lr_mult,
    )
    for position, group in enumerate(groups):
        if "params" not in group:
            raise ValueError(
                f"{arch.name}: parameter group {position} ({group.get('name')!r}) has no "
                "'params'; param_groups must return optimiser groups"
            )
        if "lr_mult" not in group:
            group["lr_mult"] = float(group.get("lr", config.lr)) / config.lr
        group.setdefault("lr", config.lr * group["lr_mult"])
        group.setdefault("name", f"group{position}")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            groups,
            lr=config.lr,
            betas=(float(config.betas[0]), float(config.betas[1])),
            weight_decay=config.weight_decay,
        )
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")


def poly_lr(base_lr: float, iteration: int, iterations: int, power: float) -> float:
    """``base_lr * (1 - iteration / iterations) ** power`` (Caffe's "poly", iteration 0-based)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    fraction = min(max(iteration, 0), iterations) / iterations
    return base_lr * (1.0 - fraction) ** power


def set_learning_rates(
    optimizer: torch.optim.Optimizer, config: TrainConfig, iteration: int
) -> float:
    """Set every group's lr for ``iteration`` (poly x the group's ``lr_mult``).

    With ``config.warmup_iterations > 0`` the poly rate is also scaled by
    ``(iteration + 1) / warmup_iterations`` during the first ``warmup_iterations``.

    Returns:
        The base learning rate (``config.lr`` on the schedule).
    """
    if config.iterations is None:
        raise ValueError("config.iterations is unset; call config.resolve(kind) first")
    base = poly_lr(config.lr, iteration, config.iterations, config.poly_power)
    if iteration < config.warmup_iterations:
        base = base * (iteration + 1) / config.warmup_iterations
    for group in optimizer.param_groups:
        group["lr"] = base * group.get("lr_mult", 1.0)
    return base


def logged_learning_rates(
    optimizer: torch.optim.Optimizer, base: float, config: TrainConfig
) -> tuple[float, float, float]:
    """The ``lr_backbone``, ``lr_head_weight``, ``lr_head_bias`` log values.

    The learning rates of the groups named ``backbone``, ``head_weight`` and ``head_bias``
    (DeepLabV2's); an architecture without such groups logs ``base x backbone_lr_mult``
    for the backbone and ``base`` for the other two.
    """
    by_name = {str(g.get("name")): float(g["lr"]) for g in optimizer.param_groups}
    backbone = by_name.get("backbone", base * config.backbone_lr_mult)
    head_weight = by_name.get("head_weight", by_name.get("head", base))
    head_bias = by_name.get("head_bias", head_weight)
    return backbone, head_weight, head_bias


def arch_forward_loss(
    arch: SegmentationArch,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    world_size: int = 1,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """One training forward of any architecture: normalise, ``arch.loss`` under autocast.

    Args:
        model: the network, possibly wrapped in ``DistributedDataParallel``.
        images: ``(B, H, W, 3)`` uint8 crops of this process.
        labels: ``(B, H, W)`` uint8 labels (``config.ignore_index`` ignored).
        world_size: processes sharing the global batch (handed to ``arch.loss``).
        amp: bf16 autocast (architectures compute their loss terms in float32).

    Returns:
        Scalar float32 loss to call ``backward`` on.
    """
    inputs = normalize_batch(
        images, config.mean, config.std, device=device, channels_last=channels_last
    )
    targets = labels.to(device, non_blocking=True).long()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = arch.loss(model, inputs, targets, world_size=world_size)
    return loss.float()


# -- deprecated DeepLabV2-only names (one release) ----------------------------------------------
def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Deprecated: ``build_arch_optimizer(DeepLabArch.from_config(config), model, config)``."""
    _deprecated("build_optimizer", "build_arch_optimizer(DeepLabArch.from_config(config), ...)")
    return build_arch_optimizer(DeepLabArch.from_config(config), model, config)


def forward_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    **kwargs: Any,
) -> torch.Tensor:
    """Deprecated: ``arch_forward_loss(DeepLabArch.from_config(config), model, ...)``."""
    _deprecated("forward_loss", "arch_forward_loss(DeepLabArch.from_config(config), ...)")
    return arch_forward_loss(
        DeepLabArch.from_config(config), model, images, labels, config, **kwargs
    )


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and goes in the next release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )
