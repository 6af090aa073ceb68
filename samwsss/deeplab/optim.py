"""Optimisation of DeepLabV2: SGD parameter groups, the poly schedule and the loss.

The loss is cross-entropy summed over the valid (non-ignore) pixels and divided by a
normaliser; :func:`forward_loss` makes that normaliser the valid-pixel count of the *global*
batch under DDP, so the averaged gradients equal those of one process with the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from samwsss.deeplab.config import DeepLabConfig
from samwsss.deeplab.model import DeepLabV2, upsample_logits
from samwsss.deeplab.transforms import normalize_batch


def build_optimizer(model: DeepLabV2, config: DeepLabConfig) -> torch.optim.SGD:
    """SGD with the reference's three parameter groups.

    Groups (in this order), each carrying its ``lr_mult`` and ``name``:

    - ``backbone``: lr x1, weight decay ``config.weight_decay``;
    - ``head_weight``: lr x ``head_lr_mult`` (10), weight decay ``config.weight_decay``;
    - ``head_bias``: lr x ``head_bias_lr_mult`` (20), weight decay 0 unless
      ``head_bias_decay`` (the reference's ``decay_mult: 0``).
    """
    groups = model.param_groups()
    spec = [
        ("backbone", 1.0, config.weight_decay),
        ("head_weight", config.head_lr_mult, config.weight_decay),
        (
            "head_bias",
            config.head_bias_lr_mult,
            config.weight_decay if config.head_bias_decay else 0.0,
        ),
    ]
    param_groups = [
        {
            "params": groups[name],
            "name": name,
            "lr_mult": mult,
            "lr": config.lr * mult,
            "weight_decay": decay,
        }
        for name, mult, decay in spec
    ]
    return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum)


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

    Returns:
        The base (backbone) learning rate.
    """
    if config.iterations is None:
        raise ValueError("config.iterations is unset; call config.resolve(kind) first")
    base = poly_lr(config.lr, iteration, config.iterations, config.poly_power)
    for group in optimizer.param_groups:
        group["lr"] = base * group.get("lr_mult", 1.0)
    return base


def loss_targets(
    labels: torch.Tensor, logits_size: tuple[int, int], resolution: str
) -> torch.Tensor:
    """The labels the loss compares the logits with, at the loss's resolution.

    Both :func:`segmentation_loss` and :func:`forward_loss` (which counts the valid pixels
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


def forward_loss(
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
    """One training forward: normalise, run the model, loss over the global batch's valid pixels.

    Args:
        model: DeepLabV2, possibly wrapped in ``DistributedDataParallel``.
        images: ``(B, H, W, 3)`` uint8 crops of this process.
        labels: ``(B, H, W)`` uint8 labels (``config.ignore_index`` ignored).
        world_size: processes sharing the global batch; with more than one, the valid
            pixel count is all-reduced and the loss scaled so that DDP's gradient averaging
            yields the gradient of the mean over every valid pixel of the global batch.
            The count is taken on the labels the loss uses (shrunk to the logits' size
            with ``loss_resolution="logits"``).
        amp: bf16 autocast for the forward (the loss itself is float32).

    Returns:
        Scalar loss to call ``backward`` on.
    """
    inputs = normalize_batch(
        images, config.mean, config.std, device=device, channels_last=channels_last
    )
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(inputs)
    targets = loss_targets(
        labels.to(device, non_blocking=True).long(),
        (logits.shape[-2], logits.shape[-1]),
        config.loss_resolution,
    )
    valid = count_valid_pixels(targets, config.ignore_index)
    if world_size > 1:
        dist.all_reduce(valid)
    normalizer = valid.float() / world_size
    return segmentation_loss(
        logits,
        targets,
        ignore_index=config.ignore_index,
        resolution=config.loss_resolution,
        normalizer=normalizer,
    )
