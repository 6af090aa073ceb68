"""Inference helpers every architecture shares: resizing logits, and the sliding window.

:func:`arch_logits` turns normalised pixels into float32 logits of a chosen size through an
architecture (or, without one, a network returning strided logits, as DeepLabV2 does);
:func:`window_probabilities` averages softmax probabilities over overlapping square windows,
for networks that take one input size only (EoMT) and for ``predict``'s sliding window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from samwsss.segnets.arch import SegmentationArch


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize ``(B, C, h, w)`` logits to ``size = (H, W)`` (align_corners=False)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def arch_logits(
    model: nn.Module,
    arch: SegmentationArch | None,
    inputs: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Float32 ``(B, C, *size)`` logits of normalised ``inputs``.

    Without an architecture the model's own (strided) output is resized; an architecture's
    ``logits_at(model, pixels, size)`` (DeepLabV2's) resizes once, straight to ``size``;
    otherwise ``arch.logits`` (at the input size) is resized to ``size``.
    """
    if arch is None:
        return upsample_logits(model(inputs).float(), size)
    logits_at = getattr(arch, "logits_at", None)
    if callable(logits_at):
        result: torch.Tensor = logits_at(model, inputs, size)
        return result.float()
    return upsample_logits(arch.logits(model, inputs).float(), size)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows covering ``0..length`` (the last one flush with the end)."""
    starts = list(range(0, max(length - window, 0) + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def window_probabilities(
    model: nn.Module,
    arch: SegmentationArch | None,
    inputs: torch.Tensor,
    window: int,
    stride: int,
) -> torch.Tensor:
    """Softmax probabilities of ``inputs`` averaged over overlapping square windows.

    The input is padded with zeros (the mean pixel after normalisation) to at least
    ``window`` on each side; the padding is cut off the result.
    """
    height, width = int(inputs.shape[-2]), int(inputs.shape[-1])
    padded_h, padded_w = max(height, window), max(width, window)
    if (padded_h, padded_w) != (height, width):
        inputs = F.pad(inputs, (0, padded_w - width, 0, padded_h - height))
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, padded_h, padded_w), device=inputs.device)
    for top in window_starts(padded_h, window, stride):
        for left in window_starts(padded_w, window, stride):
            crop = inputs[..., top : top + window, left : left + window]
            probs = arch_logits(model, arch, crop, (window, window)).softmax(dim=1)
            if total is None:
                total = torch.zeros(
                    (inputs.shape[0], probs.shape[1], padded_h, padded_w), device=inputs.device
                )
            total[..., top : top + window, left : left + window] += probs
            count[..., top : top + window, left : left + window] += 1
    assert total is not None  # at least one window
    return (total / count)[..., :height, :width]
