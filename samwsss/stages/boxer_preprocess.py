"""Grounding DINO image preprocessing in torch, on the model's device.

Reproduces ``GroundingDinoImageProcessor`` (the paper's transform): resize so the short side
is ``shortest_edge`` (800) unless the long side would pass ``longest_edge`` (1333), bilinear
with antialiasing on the uint8 image, then ``x * rescale_factor`` and ImageNet mean/std.
Settings are read from the loaded processor, so a checkpoint with other settings is honoured.
Unlike the processor it does not pad: the boxer batches only images of the same resized
size (padding changes Grounding DINO's outputs, because the Swin backbone attends over it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD

# PIL resample codes used in processor configs -> torchvision interpolation modes.
_PIL_TO_TORCH = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}


def resized_size(height: int, width: int, shortest_edge: int, longest_edge: int) -> tuple[int, int]:
    """``(h, w)`` after the short-side/long-side resize, exactly as transformers computes it."""
    from transformers.image_transforms import get_size_with_aspect_ratio

    out_height, out_width = get_size_with_aspect_ratio((height, width), shortest_edge, longest_edge)
    return int(out_height), int(out_width)


@dataclass(frozen=True)
class PreprocessSettings:
    """Resize and normalisation settings of a Grounding DINO image processor."""

    shortest_edge: int = 800
    longest_edge: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    do_rescale: bool = True
    do_normalize: bool = True
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    @classmethod
    def from_image_processor(cls, image_processor: Any) -> PreprocessSettings:
        """Read the settings off a loaded ``GroundingDinoImageProcessor``.

        Raises:
            ValueError: the processor does not resize by shortest/longest edge.
        """
        size = image_processor.size
        shortest = _get(size, "shortest_edge")
        longest = _get(size, "longest_edge")
        if not shortest or not longest or not getattr(image_processor, "do_resize", True):
            raise ValueError(
                f"the Grounding DINO image processor must resize by shortest_edge/longest_edge "
                f"(the paper's 800/1333), got size={size!r}"
            )
        resample = getattr(image_processor, "resample", 2)
        if isinstance(resample, InterpolationMode):
            interpolation = resample
        else:
            interpolation = _PIL_TO_TORCH.get(int(resample), InterpolationMode.BILINEAR)
        return cls(
            shortest_edge=int(shortest),
            longest_edge=int(longest),
            image_mean=tuple(float(v) for v in image_processor.image_mean),  # type: ignore[arg-type]
            image_std=tuple(float(v) for v in image_processor.image_std),  # type: ignore[arg-type]
            rescale_factor=float(image_processor.rescale_factor),
            do_rescale=bool(image_processor.do_rescale),
            do_normalize=bool(image_processor.do_normalize),
            interpolation=interpolation,
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Resized ``(h, w)`` of an ``height`` x ``width`` image."""
        return resized_size(height, width, self.shortest_edge, self.longest_edge)


def _get(size: Any, key: str) -> Any:
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def preprocess_image(
    image: torch.Tensor, settings: PreprocessSettings, device: torch.device | str | None = None
) -> torch.Tensor:
    """Resize and normalise one image for Grounding DINO.

    Args:
        image: ``(H, W, 3)`` uint8 RGB tensor (any device).
        settings: the processor's settings.
        device: where to compute (default: the image's device). The uint8 image is moved
            first, so only ``H*W*3`` bytes cross to a GPU.

    Returns:
        ``(3, h, w)`` float32 normalised pixels, ``(h, w) = settings.output_size(H, W)``.
    """
    chw = image.to(device).permute(2, 0, 1)
    size = settings.output_size(int(chw.shape[1]), int(chw.shape[2]))
    resized = tvF.resize(chw, list(size), interpolation=settings.interpolation, antialias=True)
    pixels = resized.float()
    if settings.do_rescale:
        pixels = pixels * settings.rescale_factor
    if settings.do_normalize:
        mean = torch.tensor(settings.image_mean, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(settings.image_std, device=pixels.device).view(3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels


def normalize_resized(
    resized: np.ndarray, settings: PreprocessSettings, device: torch.device | str | None = None
) -> torch.Tensor:
    """Normalise an image already resized on the host (``image_resize="pil"``) as
    GroundingDINO's ``ToTensor`` + ``Normalize`` do: ``x / 255``, then mean/std.

    Args:
        resized: ``(h, w, 3)`` uint8 RGB (from :class:`~samwsss.stages.pil_resize.PilResize`).
        settings: the processor's settings (mean, std, rescale factor).
        device: where to compute; only the uint8 pixels cross to it.

    Returns:
        ``(3, h, w)`` float32 normalised pixels.
    """
    pixels = torch.from_numpy(resized).to(device).permute(2, 0, 1).float()
    if settings.do_rescale:
        pixels = pixels / round(1 / settings.rescale_factor)
    if settings.do_normalize:
        mean = torch.tensor(settings.image_mean, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(settings.image_std, device=pixels.device).view(3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels
