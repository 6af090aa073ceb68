"""Each model's original PIL resize (the ``image_resize="pil"`` setting), computed where it
is cheapest.

The survey authors' code resizes with Pillow before every model: Grounding DINO with
``T.RandomResize([800], max_size=1333)`` (a size rounded as in GroundingDINO's
``datasets/transforms.py``, then PIL bilinear), SAM with ``SamPredictor.set_image``
(``ResizeLongestSide``: long side 1024, ``int(x + 0.5)`` rounding, PIL bilinear) and RAM
with ``image.resize((384, 384))`` (Pillow's default filter, bicubic). A :class:`PilResize`
describes one of them; it is small and picklable, so a dataset run computes it in the
decode workers (in parallel, ahead of the models) and the stage finds the result in its
:class:`~samwsss.stages.contracts.ImageBatch`; a stage called directly computes it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BICUBIC",
    "BILINEAR",
    "PilResize",
    "grounding_dino_size",
    "longest_side_size",
]

BILINEAR = 2
"""``PIL.Image.Resampling.BILINEAR``."""
BICUBIC = 3
"""``PIL.Image.Resampling.BICUBIC``."""

_RULES = ("longest-side", "short-side", "square")


def grounding_dino_size(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` of GroundingDINO's ``RandomResize([size], max_size)``: the short side
    becomes ``size`` unless the long side would pass ``max_size``; then the short side
    becomes ``round(max_size * short / long)`` and the long side follows with ``int()``.

    A 1024 x 200 (H x W) image gives 1331 x 260 (transformers' processor: 1333 x 260).
    """
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > max_size:
        size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def longest_side_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` of segment-anything's ``ResizeLongestSide``: scale so the long side is
    ``long_side``, each side rounded with ``int(x + 0.5)``."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class PilResize:
    """One model's PIL resize of ``(H, W, 3)`` uint8 RGB images.

    Attributes:
        key: names the result in an :class:`ImageBatch` (one per model input).
        rule: ``"longest-side"`` (SAM), ``"short-side"`` (Grounding DINO, with
            ``max_size``) or ``"square"`` (RAM: ``size x size``, aspect ignored).
        size: the target side.
        max_size: the long-side limit of ``"short-side"``.
        resample: PIL filter code (:data:`BILINEAR`, :data:`BICUBIC`).
    """

    key: str
    rule: str
    size: int
    max_size: int = 0
    resample: int = BILINEAR

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ValueError(f"rule must be one of {', '.join(_RULES)}, got {self.rule!r}")
        if self.size < 1 or (self.rule == "short-side" and self.max_size < self.size):
            raise ValueError(f"bad sizes for {self.rule}: size {self.size}, max {self.max_size}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` an ``height x width`` image is resized to."""
        if self.rule == "longest-side":
            return longest_side_size(height, width, self.size)
        if self.rule == "short-side":
            return grounding_dino_size(height, width, self.size, self.max_size)
        return self.size, self.size

    def __call__(self, image: Any) -> np.ndarray:
        """Resize one ``(H, W, 3)`` uint8 image (numpy array or CPU tensor).

        Returns:
            ``(h, w, 3)`` uint8 array, ``(h, w) = output_size(H, W)``.
        """
        from PIL import Image

        array = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
        height, width = int(array.shape[0]), int(array.shape[1])
        out_height, out_width = self.output_size(height, width)
        picture = Image.fromarray(np.ascontiguousarray(array))
        return np.array(picture.resize((out_width, out_height), resample=self.resample))
