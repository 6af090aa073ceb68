"""Image and mask geometry shared by the SAM backends, in torch on any device.

SAM models see a fixed-size square input. Two layouts exist:

* ``"longest"`` (SAM, SAM-HQ, Meta's segment-anything): resize so the longest side equals
  the model side (``int(x + 0.5)`` rounding of the other side), normalise, then zero-pad at
  the bottom and right to ``pad_size``. Masks come back by upsampling the low-resolution
  logits to ``pad_size``, cropping the resized area and resizing to the original size.
* ``"square"`` (SAM 2): resize straight to ``pad_size`` (aspect ratio not kept), no
  padding; masks are upsampled straight to the original size.

These follow ``SamImageProcessor`` / ``Sam2ImageProcessor`` (torchvision backend:
antialiased bilinear resize of the uint8 image) and ``SamProcessor.post_process_masks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from samwsss.stages.contracts import check_image

ResizeMode = Literal["longest", "square"]


@dataclass(frozen=True)
class InputGeometry:
    """How a backend maps an image into its input square.

    Attributes:
        mode: ``"longest"`` (resize longest side, pad) or ``"square"`` (resize to square).
        longest_edge: target of the longest side (``"longest"`` mode).
        pad_size: ``(height, width)`` of the model input after padding / square resize.
    """

    mode: ResizeMode
    longest_edge: int
    pad_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.mode not in ("longest", "square"):
            raise ValueError(f"resize mode must be 'longest' or 'square', got {self.mode!r}")
        if self.mode == "longest" and (
            self.longest_edge > self.pad_size[0] or self.longest_edge > self.pad_size[1]
        ):
            raise ValueError(
                f"longest_edge {self.longest_edge} does not fit in pad_size {self.pad_size}"
            )

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` an ``height x width`` image has inside the model input (before padding)."""
        if self.mode == "square":
            return self.pad_size
        scale = self.longest_edge * 1.0 / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_uint8(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a ``(3, H, W)`` uint8 image to ``size`` ``(h, w)``.

    The same call the transformers SAM processors make (torchvision, uint8 in and out);
    runs on the image's device. Returns ``(3, h, w)`` uint8.
    """
    from torchvision.transforms.v2 import functional as tvF  # lazy: only needed to run

    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return tvF.resize(
        image[None], list(size), interpolation=tvF.InterpolationMode.BILINEAR, antialias=True
    )[0]


def pad_bottom_right(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad a ``(C, h, w)`` tensor at the bottom and right to ``size`` ``(H, W)``."""
    pad_h = size[0] - image.shape[-2]
    pad_w = size[1] - image.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad an image of size {tuple(image.shape[-2:])} to {size}")
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h))


def scale_boxes(
    boxes: torch.Tensor, original_size: tuple[int, int], resized_size: tuple[int, int]
) -> torch.Tensor:
    """Map ``(N, 4)`` xyxy boxes from original pixels to model-input pixels.

    ``x * (w / W)`` and ``y * (h / H)`` in the dtype of ``boxes``, like
    ``SamProcessor._normalize_coordinates`` and segment-anything's ``apply_boxes_torch``.
    """
    old_h, old_w = original_size
    new_h, new_w = resized_size
    scaled = boxes.clone()
    scaled[:, 0::2] = scaled[:, 0::2] * (new_w / old_w)
    scaled[:, 1::2] = scaled[:, 1::2] * (new_h / old_h)
    return scaled


def upscale_mask_logits(
    low_res: torch.Tensor,
    geometry: InputGeometry,
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """Low-resolution mask logits ``(N, h0, w0)`` -> logits ``(N, H, W)`` at original size.

    ``"longest"``: bilinear to ``pad_size``, crop ``resized_size``, bilinear to
    ``original_size`` (``post_process_masks`` of SAM). ``"square"``: bilinear straight to
    ``original_size`` (SAM 2). Computed in float32 whatever the input dtype.
    """
    logits = low_res.float()[:, None]
    if logits.shape[0] == 0:
        return logits.new_zeros((0, *original_size))
    if geometry.mode == "longest":
        logits = F.interpolate(logits, geometry.pad_size, mode="bilinear", align_corners=False)
        logits = logits[..., : resized_size[0], : resized_size[1]]
    logits = F.interpolate(logits, original_size, mode="bilinear", align_corners=False)
    return logits[:, 0]


def to_chw_uint8(image: object, device: torch.device, position: int = 0) -> torch.Tensor:
    """A ``(H, W, 3)`` uint8 numpy array or tensor -> ``(3, H, W)`` uint8 tensor on ``device``.

    Raises:
        ValueError: not an ``(H, W, 3)`` uint8 array (see
            :func:`samwsss.stages.contracts.check_image`).
    """
    return check_image(image, position).to(device, non_blocking=True).permute(2, 0, 1)


def stack_inputs(
    images: Sequence[torch.Tensor],
    geometry: InputGeometry,
    normalize: NormalizeFn,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Resize, normalise and pad ``(3, H, W)`` uint8 images into one model batch.

    Returns:
        ``pixel_values`` ``(B, 3, pad_h, pad_w)`` float32 and each image's resized
        ``(h, w)`` inside it.
    """
    batch = []
    resized_sizes = []
    for image in images:
        size = geometry.resized_size(int(image.shape[-2]), int(image.shape[-1]))
        resized = resize_uint8(image, size)
        resized_sizes.append(size)
        normalized = normalize(resized.to(torch.float32))
        if geometry.mode == "longest":
            normalized = pad_bottom_right(normalized, geometry.pad_size)
        batch.append(normalized)
    return torch.stack(batch), resized_sizes


class NormalizeFn:
    """``(x - mean) / std`` on ``(3, h, w)`` float32 pixels in 0..255 (or a rescale only).

    Built from a transformers image processor's ``image_mean``, ``image_std`` and
    ``rescale_factor`` exactly as its fused rescale-and-normalise does, or from
    segment-anything's ``pixel_mean`` / ``pixel_std`` (already in 0..255 units).
    """

    def __init__(
        self,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        rescale_factor: float | None = None,
    ) -> None:
        self.mean = None if mean is None else mean.reshape(-1, 1, 1).float()
        self.std = None if std is None else std.reshape(-1, 1, 1).float()
        self.rescale_factor = rescale_factor

    @classmethod
    def from_processor_values(
        cls,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        rescale_factor: float,
        do_rescale: bool = True,
        do_normalize: bool = True,
    ) -> NormalizeFn:
        """The transformers processor's rescale (``x * rescale_factor``) and normalisation."""
        if do_normalize and do_rescale:
            mean = torch.tensor(list(image_mean)) * (1.0 / rescale_factor)
            std = torch.tensor(list(image_std)) * (1.0 / rescale_factor)
            return cls(mean, std)
        if do_normalize:
            return cls(torch.tensor(list(image_mean)), torch.tensor(list(image_std)))
        return cls(None, None, rescale_factor if do_rescale else None)

    def to(self, device: torch.device) -> NormalizeFn:
        """The same normalisation with its constants on ``device``."""
        return NormalizeFn(
            None if self.mean is None else self.mean.to(device),
            None if self.std is None else self.std.to(device),
            self.rescale_factor,
        )

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.mean is not None and self.std is not None:
            mean = self.mean.to(pixels.device)
            std = self.std.to(pixels.device)
            return (pixels - mean) / std
        if self.rescale_factor is not None:
            return pixels * self.rescale_factor
        return pixels
