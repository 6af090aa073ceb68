"""Optimisation: parameter groups and optimisers, the poly schedule, DeepLabV2's loss.

:func:`build_arch_optimizer` and :func:`arch_forward_loss` are the one optimiser builder and
the one training forward of every architecture, DeepLabV2 included (SGD or AdamW over
``arch.param_groups``, ``arch.loss`` under autocast; DeepLabV2's are
:class:`~samwsss.segnets.deeplab.DeepLabArch`'s, which call :func:`deeplab_param_groups` and
:func:`deeplab_loss`).

DeepLabV2's loss is cross-entropy summed over the valid (non-ignore) pixels and divided by
a normaliser; :func:`deeplab_loss` makes that normaliser the valid-pixel count of the
*global* batch under DDP, so the averaged gradients equal those of one process with the
whole batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from samwsss.deeplab.config import DeepLabConfig
from samwsss.deeplab.model import DeepLabV2, upsample_logits
from samwsss.deeplab.transforms import normalize_batch

if TYPE_CHECKING:
    from samwsss.segnets.arch import SegmentationArch


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


def build_arch_optimizer(
    arch: SegmentationArch, model: nn.Module, config: DeepLabConfig
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
    optimizer: torch.optim.Optimizer, config: DeepLabConfig, iteration: int
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
    optimizer: torch.optim.Optimizer, base: float, config: DeepLabConfig
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


def arch_forward_loss(
    arch: SegmentationArch,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: DeepLabConfig,
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
def build_optimizer(model: nn.Module, config: DeepLabConfig) -> torch.optim.Optimizer:
    """Deprecated: ``build_arch_optimizer(DeepLabArch.from_config(config), model, config)``."""
    from samwsss.segnets.deeplab import DeepLabArch

    _deprecated("build_optimizer", "build_arch_optimizer(DeepLabArch.from_config(config), ...)")
    return build_arch_optimizer(DeepLabArch.from_config(config), model, config)


def forward_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: DeepLabConfig,
    **kwargs: Any,
) -> torch.Tensor:
    """Deprecated: ``arch_forward_loss(DeepLabArch.from_config(config), model, ...)``."""
    from samwsss.segnets.deeplab import DeepLabArch

    _deprecated("forward_loss", "arch_forward_loss(DeepLabArch.from_config(config), ...)")
    return arch_forward_loss(
        DeepLabArch.from_config(config), model, images, labels, config, **kwargs
    )


def _deprecated(old: str, new: str) -> None:
    import warnings

    warnings.warn(
        f"{old} is deprecated and goes in the next release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )
