"""Overlay drawing: a semantic mask and its boxes over the image, for people to look at."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from samwsss.classes import voc_palette
from samwsss.detections import Detections

_COLOURS = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    detections: Detections | None = None,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Blend ``mask`` (H, W) uint8 over ``image`` (H, W, 3) uint8 and outline the boxes.

    Returns:
        ``(H, W, 3)`` uint8 RGB; background pixels are left as they are.
    """
    from PIL import Image, ImageDraw

    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = _COLOURS[mask].astype(np.float32)
    blended = image.astype(np.float32)
    painted = mask > 0
    blended[painted] = (1 - alpha) * blended[painted] + alpha * colours[painted]
    canvas = Image.fromarray(blended.round().astype(np.uint8))
    if detections is not None and len(detections):
        draw = ImageDraw.Draw(canvas)
        boxes = detections.boxes.cpu().numpy()
        classes = detections.class_ids.cpu().numpy()
        scores = detections.scores.cpu().numpy()
        for (x1, y1, x2, y2), cls, score in zip(boxes, classes, scores, strict=True):
            colour = tuple(int(c) for c in _COLOURS[int(cls)])
            draw.rectangle([float(x1), float(y1), float(x2), float(y2)], outline=colour, width=2)
            name = class_names[int(cls)] if class_names else str(int(cls))
            draw.text((float(x1) + 3, float(y1) + 2), f"{name} {score:.2f}", fill=colour)
    return np.asarray(canvas)
