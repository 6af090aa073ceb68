"""Merger: an image's instance masks -> one semantic label map.

Rules for pixels covered by several masks:

- ``paper``: the survey authors' formula ``label = max(label, mask * class_id)`` — the
  highest class index wins, scores are ignored.
- ``score`` (default): the mask with the highest score wins, score = box score x SAM's
  predicted IoU (``Detections.scores``); ties go to the earlier detection.
- ``area``: the smallest mask wins, so small objects lying on large ones survive.

Optionally, pixels where masks of two *different* classes overlap with scores closer than
``uncertain_margin`` become 255 (ignored in training and evaluation). Pure tensor code: it
runs wherever the masks are (CPU or GPU), over row bands of at most
:data:`MERGE_BUDGET_PIXELS` mask pixels, so its temporaries stay small beside the masks
on any image size (each rule is per pixel: the bands change no label).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from samwsss.checks import check_choice, check_count, check_optional_fraction
from samwsss.choices import MERGE_RULES
from samwsss.classes import IGNORE_INDEX
from samwsss.detections import Detections

#: At most this many mask pixels (masks x image pixels) are merged at once; each costs
#: up to ~10 bytes of integer temporaries (40 MiB), whatever the image size. A VOC-sized
#: image with up to 22 masks is one band; bands this small also merge faster than one
#: pass over a large stack (measured 8x on 64 masks of 12 megapixels on a CPU).
MERGE_BUDGET_PIXELS = 2**22


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
        """Merge one image's detections into an ``(H, W)`` uint8 label map.

        Row bands of the image are merged one at a time, each with at most
        :data:`MERGE_BUDGET_PIXELS` mask pixels (masks x band pixels), so the integer
        temporaries stay bounded on any image size; every rule is per pixel, so the bands
        give exactly the labels of one pass over the whole image.
        """
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
        areas = (
            mask_areas(masks)
            if len(detections) and (self.min_area or self.rule == "area")
            else None
        )
        keep: torch.Tensor | None = None  # (K,) indices of the masks kept, None = all
        if self.min_area and areas is not None:
            keep = (areas >= self.min_area).nonzero().flatten()
            class_ids, scores, areas = class_ids[keep], scores[keep], areas[keep]
        count = len(class_ids)
        if count == 0:
            return torch.zeros((height, width), dtype=torch.uint8, device=masks.device)
        if self.rule == "paper":
            priority = class_ids.to(torch.float32)
        elif self.rule == "score":
            priority = scores
        else:  # area: smaller masks get higher priority
            assert areas is not None
            priority = -areas.to(torch.float32)
        codes = _priority_codes(class_ids, priority)
        uncertain = (
            _uncertainty_codes(class_ids, scores)
            if self.uncertain_margin is not None and torch.unique(class_ids).numel() >= 2
            else None
        )
        label = torch.empty((height, width), dtype=torch.uint8, device=masks.device)
        for rows in _row_bands(count, height, width):
            band = masks[:, rows] if keep is None else masks[:, rows].index_select(0, keep)
            label[rows] = _paint(band, codes)
            if uncertain is not None:
                label[rows] = self._mark_uncertain(label[rows], band, class_ids, uncertain)
        return label

    def _mark_uncertain(
        self,
        label: torch.Tensor,
        masks: torch.Tensor,
        class_ids: torch.Tensor,
        codes: torch.Tensor,
    ) -> torch.Tensor:
        """``label`` ``(h, W)`` uint8 with 255 where two different classes' best masks over a
        pixel have scores closer than the margin.

        Args:
            label: the painted labels of a band.
            masks: ``(K, h, W)`` bool, the band of the masks merged.
            class_ids: ``(K,)`` int64.
            codes: ``(K,)`` int32 from :func:`_uncertainty_codes`.
        """
        coded = masks.to(torch.int32)
        coded.mul_(codes[:, None, None])
        best = coded.amax(0)
        best_class = best & 0xFF
        # zero the masks of the best class: what is left is the best other class
        coded.masked_fill_(class_ids.to(torch.int32)[:, None, None] == best_class[None], 0)
        runner_up = coded.amax(0)
        gap = ((best >> 8) - (runner_up >> 8)).float() / _SCORE_LEVELS
        margin = 0.0 if self.uncertain_margin is None else self.uncertain_margin
        contested = (runner_up > 0) & (gap < margin)
        return torch.where(contested, torch.full_like(label, IGNORE_INDEX), label)


#: Scores are quantised to this many levels (16 bits) for the uncertainty codes.
_SCORE_LEVELS = 65535


def mask_areas(masks: torch.Tensor) -> torch.Tensor:
    """Pixels of each mask: ``(N, H, W)`` bool -> ``(N,)`` int64.

    torch sums bool through an int64 copy of its input (8 bytes per mask pixel for the
    whole stack): on the CPU each mask is counted with ``count_nonzero`` (no copy, ~20x
    faster), elsewhere the stack is summed row band by row band.
    """
    if masks.device.type == "cpu":
        counts = [int(torch.count_nonzero(mask)) for mask in masks]
        return torch.tensor(counts, dtype=torch.int64).reshape(len(counts))
    return _banded_areas(masks)


def _banded_areas(masks: torch.Tensor) -> torch.Tensor:
    """:func:`mask_areas` as a sum over row bands (bounded int64 temporaries, any device)."""
    count, height, width = masks.shape
    areas = torch.zeros(count, dtype=torch.int64, device=masks.device)
    for rows in _row_bands(count, height, width):
        areas += masks[:, rows].sum((1, 2))
    return areas


def _row_bands(count: int, height: int, width: int) -> list[slice]:
    """Row slices covering ``height`` rows with at most :data:`MERGE_BUDGET_PIXELS` mask
    pixels (``count`` masks x rows x ``width``) per band, at least one row each; one band
    when the whole stack fits."""
    rows = max(1, MERGE_BUDGET_PIXELS // max(1, count * width))
    return [slice(start, min(start + rows, height)) for start in range(0, height, rows)]


def _priority_codes(class_ids: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """Codes ``rank << 8 | class`` whose maximum over a pixel names the winning mask.

    Args:
        class_ids: ``(N,)`` int64 classes ``1..254``.
        priority: ``(N,)`` float, higher wins; ties go to the earlier detection.

    Returns:
        ``(N,)`` int16 codes (int32 from 128 masks on), ranks ``1..N`` by ascending priority.
    """
    count = class_ids.shape[0]
    device = class_ids.device
    reversed_order = torch.arange(count - 1, -1, -1, device=device)
    # ascending priority; among equal priorities the earliest detection ends up last (wins)
    order = reversed_order[torch.argsort(priority[reversed_order], stable=True)]
    code_dtype = torch.int16 if count < 128 else torch.int32
    rank = torch.empty(count, dtype=torch.int64, device=device)
    rank[order] = torch.arange(1, count + 1, device=device)
    return ((rank << 8) | class_ids).to(code_dtype)


def _paint(masks: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each pixel takes the class of the highest-priority mask covering it.

    One integer max over codes ``rank << 8 | class`` (the authors' ``max(label, mask *
    class)`` with the rank in the high bits), which is much faster than an argmax over
    float score maps and needs no gather.

    Args:
        masks: ``(N, h, W)`` bool (a band of the image's masks).
        codes: ``(N,)`` from :func:`_priority_codes`.

    Returns:
        ``(h, W)`` uint8 label map, 0 where no mask covers the pixel.
    """
    coded = masks.to(codes.dtype)
    coded.mul_(codes[:, None, None])
    return (coded.amax(0) & 0xFF).to(torch.uint8)


def _uncertainty_codes(class_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``(N,)`` int32 codes: the score quantised to 16 bits (+1) in the high bits, the class
    in the low 8."""
    quantised = (scores.float().clamp(0, 1) * _SCORE_LEVELS).round().to(torch.int32) + 1
    return (quantised << 8) | class_ids.to(torch.int32)
