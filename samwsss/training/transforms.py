"""Training augmentation and input normalisation for DeepLabV2.

Augmentation (the reference recipe): random scale in ``[scale_min, scale_max]`` (image
bilinear, label nearest), pad to the crop size (image with the mean pixel, label with the
ignore value), random ``crop_size`` x ``crop_size`` crop, random horizontal flip.

Every random draw comes from a ``numpy.random.Generator`` that the caller passes in, so a
sample's augmentation is a pure function of its seed (see :mod:`samwsss.training.data`):
worker processes, worker counts and resumed runs all see the same crops.

Images stay uint8 through augmentation and the DataLoader (4x less to copy); they become
normalised float on the device in :func:`normalize_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from samwsss.imagenet import IMAGENET_MEAN


@dataclass(frozen=True)
class TrainAugmentation:
    """Random scale, pad, crop and flip of an (image, label) pair.

    Args:
        crop_size: side of the square output crop in pixels.
        scale_min, scale_max: range of the uniform random rescaling factor.
        flip: random horizontal flip with probability 0.5.
        ignore_index: label value for padded pixels.
        mean: RGB mean in [0, 1]; padded image pixels get ``round(255 * mean)`` so that
            they normalise to ~0.
    """

    crop_size: int = 321
    scale_min: float = 0.5
    scale_max: float = 1.5
    flip: bool = True
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one pair.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            label: ``(H, W)`` uint8 class indices (255 = ignore).
            rng: source of every random draw (scale, crop offset, flip, in that order).

        Returns:
            ``(crop, crop, 3)`` uint8 image and ``(crop, crop)`` uint8 label.

        Raises:
            ValueError: if the image and label sizes differ or the arrays have wrong shapes.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"label size {label.shape} differs from image size {image.shape[:2]}; "
                "masks must have the size of their image"
            )
        scale = float(rng.uniform(self.scale_min, self.scale_max))
        height, width = label.shape
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        if (new_h, new_w) != (height, width):
            image = np.asarray(
                Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
            )
            label = np.asarray(
                Image.fromarray(label).resize((new_w, new_h), Image.Resampling.NEAREST)
            )
        size = self.crop_size
        pad_h, pad_w = max(size - new_h, 0), max(size - new_w, 0)
        if pad_h or pad_w:
            fill = np.round(np.asarray(self.mean) * 255.0).astype(np.uint8)
            padded = np.empty((new_h + pad_h, new_w + pad_w, 3), dtype=np.uint8)
            padded[:] = fill
            padded[:new_h, :new_w] = image
            image = padded
            padded_label = np.full((new_h + pad_h, new_w + pad_w), self.ignore_index, np.uint8)
            padded_label[:new_h, :new_w] = label
            label = padded_label
        top = int(rng.integers(0, image.shape[0] - size + 1))
        left = int(rng.integers(0, image.shape[1] - size + 1))
        image = image[top : top + size, left : left + size]
        label = label[top : top + size, left : left + size]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            label = label[:, ::-1]
        return image.copy(), label.copy()  # contiguous, writable (torch.from_numpy needs it)


def normalize_batch(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` or ``(B, 3, H, W)`` -> normalised float32 ``(B, 3, H, W)``.

    Args:
        images: uint8 RGB batch (channels last as from the DataLoader, or channels first).
        mean, std: per-channel statistics for values in [0, 1].
        device: move the uint8 batch there first (cheaper than moving floats).
        channels_last: return a ``torch.channels_last`` tensor (faster convs on CUDA).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be a uint8 4-D batch, got {images.dtype} {tuple(images.shape)}"
        )
    if device is not None:
        images = images.to(device, non_blocking=True)
    if images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    out = (images.float() / 255.0 - mean_t) / std_t
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=memory_format)
