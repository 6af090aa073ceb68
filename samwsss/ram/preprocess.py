"""RAM input preprocessing: RGB uint8 images -> (B, 3, S, S) normalised float tensors.

Resize to S x S ignoring the aspect ratio (bilinear with antialiasing on uint8, within one
grey level of PIL bilinear), scale to [0, 1], subtract the ImageNet mean and divide by its
std. This is the fast default; the authors resize with ``image.resize((S, S))`` (Pillow's
bicubic) first, which ``RAMTagger(image_resize="pil")`` reproduces exactly
(:class:`samwsss.stages.pil_resize.PilResize`), then normalise as here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD


def _check_image(image: object, position: int) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"image {position} is a {type(image).__name__}: give (H, W, 3) uint8 RGB numpy "
            "arrays (samwsss.data.images.load_rgb reads files that way)"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image {position} has shape {image.shape} and dtype {image.dtype}: give (H, W, 3) "
            "uint8 RGB (convert grey or RGBA images to RGB first)"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {position} is empty (shape {image.shape})")
    return image


def resize_image(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) uint8, bilinear with antialiasing."""
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return TF.resize(chw, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> float32 normalised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def preprocess_images(
    images: Sequence[np.ndarray], size: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Resize and normalise RGB images for RAM.

    Args:
        images: (H, W, 3) uint8 RGB arrays, any sizes.
        size: model input side (384 for the official models).
        device: where the returned tensor lives (resizing runs on the CPU in uint8).

    Returns:
        (B, 3, size, size) float32 tensor on ``device``.

    Raises:
        ValueError: an image is not (H, W, 3) uint8, or the list is empty.
    """
    if len(images) == 0:
        raise ValueError("no images given: pass a non-empty list of (H, W, 3) uint8 arrays")
    resized = torch.stack(
        [resize_image(_check_image(image, i), size) for i, image in enumerate(images)]
    )
    return normalize(resized.to(device, non_blocking=True))
