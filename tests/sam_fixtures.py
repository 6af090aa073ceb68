"""Inputs and checks for the masker tests: seeded images, boxes, detections, mask comparison.

The tiny random SAM models themselves are written by :mod:`samwsss.testing.sam`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from tests.torch_fixtures import one_torch_thread as single_torch_thread  # noqa: F401

if TYPE_CHECKING:
    from samwsss.detections import Detections


def random_image(size: tuple[int, int], seed: int) -> np.ndarray:
    """A seeded random ``(H, W, 3)`` uint8 RGB image of ``size`` ``(H, W)``."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def random_boxes(size: tuple[int, int], count: int, seed: int) -> torch.Tensor:
    """``(count, 4)`` float32 xyxy boxes inside an image of ``size`` ``(H, W)``, >= 2 px wide."""
    height, width = size
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, width, (count, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (count, 2)), axis=1)
    x[:, 1] = np.minimum(np.maximum(x[:, 1], x[:, 0] + 2), width)
    y[:, 1] = np.minimum(np.maximum(y[:, 1], y[:, 0] + 2), height)
    return torch.tensor(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1), dtype=torch.float32)


def make_detections(
    size: tuple[int, int], boxes: torch.Tensor, classes: list[int] | None = None
) -> Detections:
    """Boxer-style :class:`~samwsss.detections.Detections` (no masks) for ``boxes``."""
    from samwsss.detections import Detections

    count = len(boxes)
    classes = classes if classes is not None else [1 + i % 3 for i in range(count)]
    return Detections(
        image_size=size,
        boxes=boxes,
        box_scores=torch.linspace(0.9, 0.5, count),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        prompts=tuple(f"class {c}" for c in classes),
    )


def assert_same_masks(
    actual: torch.Tensor, expected: torch.Tensor, max_fraction: float = 1e-4
) -> None:
    """Bool masks of equal shape that differ in at most ``max_fraction`` of their pixels.

    Batched and single-image runs can differ by ~1e-7 in a logit (BLAS blocking depends
    on the batch size); a random model has pixels whose logit is that close to the
    threshold 0, so a handful of pixels may flip. Anything more is a real difference.
    """
    assert actual.dtype == torch.bool and expected.dtype == torch.bool
    assert actual.shape == expected.shape, f"{tuple(actual.shape)} != {tuple(expected.shape)}"
    if actual.numel() == 0:
        return
    differing = int((actual != expected).sum())
    assert differing <= max_fraction * actual.numel(), (
        f"{differing} of {actual.numel()} mask pixels differ"
    )
