"""Merger: an image's instance masks -> one semantic label map.

Rules for pixels covered by several masks:

- ``paper``: the survey authors' formula ``label = max(label, mask * class_id)`` — the
  highest class index wins, scores are ignored.
- ``score`` (default): the mask with the highest score wins, score = box score x SAM's
  predicted IoU (``Detections.scores``); ties go to the earlier detection.
- ``area``: the smallest mask wins, so small objects lying on large ones survive.

Optionally, pixels where masks of two *different* classes overlap with scores closer than
``uncertain_margin`` become 255 (ignored in training and evaluation). Pure tensor code: it
runs wherever the masks are (CPU or GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from samwsss.checks import check_choice, check_count, check_optional_fraction
from samwsss.choices import MERGE_RULES
from samwsss.classes import IGNORE_INDEX
from samwsss.detections import Detections


class MaskMerger:
    """Merge instance masks into a semantic label map.

    Args:
        rule: ``"score"`` (default), ``"paper"`` or ``"area"`` (see the module docstring).
        uncertain_margin: if set (e.g. ``0.1``), pixels covered by masks of two different
            classes whose best scores differ by less than this become 255.
        min_area: masks with fewer pixels than this are dropped before merging.
    """

    def __init__(
        self, rule: str = "score", uncertain_margin: float | None = None, min_area: int = 0
    ) -> None:
        self.rule = check_choice("merge rule", rule, MERGE_RULES)
        self.uncertain_margin = check_optional_fraction("uncertain_margin", uncertain_margin)
        self.min_area = check_count("min_area (pixels)", min_area, minimum=0)

    def __repr__(self) -> str:
        return (
            f"MaskMerger(rule={self.rule!r}, uncertain_margin={self.uncertain_margin}, "
            f"min_area={self.min_area})"
        )

    def __call__(self, detections: Sequence[Detections]) -> list[torch.Tensor]:
        """Merge each image's detections.

        Args:
            detections: one :class:`Detections` with masks per image.

        Returns:
            One ``(H, W)`` uint8 label map per image on the masks' device: 0 background,
            class ids ``1..C``, 255 uncertain (only with ``uncertain_margin``).

        Raises:
            ValueError: ``detections`` is one :class:`Detections` rather than a list of them.
        """
        if isinstance(detections, Detections):
            raise ValueError(
                "pass a list with one Detections per image, e.g. merger([detections]), or "
                "call merger.merge(detections) for one image"
            )
        return [self.merge(item) for item in detections]

    def merge(self, detections: Detections) -> torch.Tensor:
        """Merge one image's detections into an ``(H, W)`` uint8 label map."""
        if not isinstance(detections, Detections):
            raise ValueError(f"expected a Detections, got {type(detections).__name__}")
        if detections.masks is None:
            raise ValueError("detections have no masks: run the masker before merging")
        height, width = detections.image_size
        masks = detections.masks
        class_ids = detections.class_ids
        if len(class_ids) and int(class_ids.max()) > 254:
            raise ValueError("class ids above 254 do not fit a uint8 label map with 255 = ignore")
        scores = detections.scores.float()
        if self.min_area and len(detections):
            keep = masks.flatten(1).sum(1) >= self.min_area
            masks, class_ids, scores = masks[keep], class_ids[keep], scores[keep]
        if masks.shape[0] == 0:
            return torch.zeros((height, width), dtype=torch.uint8, device=masks.device)
        if self.rule == "paper":
            priority = class_ids.to(torch.float32)
        elif self.rule == "score":
            priority = scores
        else:  # area: smaller masks get higher priority
            priority = -masks.flatten(1).sum(1).to(torch.float32)
        label = _paint_by_priority(masks, class_ids, priority)
        if self.uncertain_margin is not None:
            label = self._mark_uncertain(label, masks, class_ids, scores)
        return label

    def _mark_uncertain(
        self,
        label: torch.Tensor,
        masks: torch.Tensor,
        class_ids: torch.Tensor,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        if torch.unique(class_ids).numel() < 2:
            return label
        # integer codes: score quantised to 16 bits in the high bits, class in the low 8
        levels = 65535
        quantised = (scores.float().clamp(0, 1) * levels).round().to(torch.int32) + 1
        codes = (quantised << 8) | class_ids.to(torch.int32)
        coded = masks.to(torch.int32) * codes[:, None, None]
        best = coded.amax(0)
        best_class = best & 0xFF
        other = coded * (class_ids.to(torch.int32)[:, None, None] != best_class[None])
        runner_up = other.amax(0)
        gap = ((best >> 8) - (runner_up >> 8)).float() / levels
        margin = 0.0 if self.uncertain_margin is None else self.uncertain_margin
        contested = (runner_up > 0) & (gap < margin)
        return torch.where(contested, torch.full_like(label, IGNORE_INDEX), label)


def _paint_by_priority(
    masks: torch.Tensor, class_ids: torch.Tensor, priority: torch.Tensor
) -> torch.Tensor:
    """Each pixel takes the class of the highest-priority mask covering it.

    Ties go to the earlier detection. Implemented as one integer max over codes
    ``rank << 8 | class`` (the authors' ``max(label, mask * class)`` with the rank in the high
    bits), which is much faster than an argmax over float score maps and needs no gather.

    Args:
        masks: ``(N, H, W)`` bool.
        class_ids: ``(N,)`` int64 classes ``1..254``.
        priority: ``(N,)`` float, higher wins.

    Returns:
        ``(H, W)`` uint8 label map, 0 where no mask covers the pixel.
    """
    count = masks.shape[0]
    device = masks.device
    reversed_order = torch.arange(count - 1, -1, -1, device=device)
    # ascending priority; among equal priorities the earliest detection ends up last (wins)
    order = reversed_order[torch.argsort(priority[reversed_order], stable=True)]
    code_dtype = torch.int16 if count < 128 else torch.int32
    rank = torch.empty(count, dtype=torch.int64, device=device)
    rank[order] = torch.arange(1, count + 1, device=device)
    codes = ((rank << 8) | class_ids).to(code_dtype)
    top = (masks.to(code_dtype) * codes[:, None, None]).amax(0)
    return (top & 0xFF).to(torch.uint8)
