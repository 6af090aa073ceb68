"""``Detections``: the one carrier of an image's instances between stages.

The boxer creates it (boxes, box scores, classes, prompts), the masker adds masks and
mask scores, the merger and the writers consume it. It holds torch tensors on any device
and validates itself on construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

_BOX_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class Detections:
    """Instances found in one image.

    Attributes:
        image_size: ``(H, W)`` of the original image in pixels.
        boxes: ``(N, 4)`` float32, ``x1, y1, x2, y2`` in original-image pixels
            (0 <= x1 <= x2 <= W, 0 <= y1 <= y2 <= H).
        box_scores: ``(N,)`` float32 detector confidences in [0, 1].
        class_ids: ``(N,)`` int64 class indices ``1..C`` (0 is background, never a detection).
        prompts: ``N`` prompt texts each detection came from.
        masks: ``(N, H, W)`` bool masks at original resolution, or ``None`` before the masker.
        mask_scores: ``(N,)`` float32 mask quality (SAM's predicted IoU), or ``None``.
        prompt_boxes: ``(N, 4)`` float32 xyxy pixels SAM is prompted with when they differ
            from ``boxes``: the detector's boxes before clipping (they may pass the image
            border), as the survey authors prompt SAM; ``None``: SAM gets ``boxes``.
    """

    image_size: tuple[int, int]
    boxes: torch.Tensor
    box_scores: torch.Tensor
    class_ids: torch.Tensor
    prompts: tuple[str, ...]
    masks: torch.Tensor | None = None
    mask_scores: torch.Tensor | None = None
    prompt_boxes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        height, width = (int(v) for v in self.image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be positive (H, W), got {self.image_size}")
        object.__setattr__(self, "image_size", (height, width))
        boxes = self.boxes
        if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be an (N, 4) tensor, got {_describe(boxes)}")
        if not boxes.is_floating_point():
            raise ValueError(f"boxes must be floating point xyxy pixels, got {boxes.dtype}")
        count = boxes.shape[0]
        self._check_vector("box_scores", self.box_scores, count, floating=True)
        self._check_vector("class_ids", self.class_ids, count, floating=False)
        if len(self.prompts) != count:
            raise ValueError(f"prompts has {len(self.prompts)} entries for {count} boxes")
        if count:
            # every check in one device-to-host copy (one sync on the GPU)
            x1, y1, x2, y2 = boxes.detach().float().unbind(1)
            finite, ordered, low_x, low_y, high_x, high_y, low_class = torch.stack(
                [
                    torch.isfinite(boxes).all().float(),
                    ((x2 >= x1 - _BOX_TOLERANCE) & (y2 >= y1 - _BOX_TOLERANCE)).all().float(),
                    x1.min(),
                    y1.min(),
                    x2.max(),
                    y2.max(),
                    self.class_ids.min().to(x1.device, torch.float32),
                ]
            ).tolist()
            if not finite:
                raise ValueError("boxes contain NaN or infinite coordinates")
            if not ordered:
                raise ValueError("boxes must be xyxy with x1 <= x2 and y1 <= y2")
            if (
                min(low_x, low_y) < -_BOX_TOLERANCE
                or high_x > width + _BOX_TOLERANCE
                or high_y > height + _BOX_TOLERANCE
            ):
                raise ValueError(
                    f"boxes must lie inside the {width}x{height} image (xyxy pixels); "
                    f"got x in [{low_x:.1f}, {high_x:.1f}], y in [{low_y:.1f}, {high_y:.1f}]: "
                    "clip them first"
                )
            if low_class < 1:
                raise ValueError("class_ids must be >= 1 (0 is background)")
        if self.masks is not None:
            masks = self.masks
            if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool:
                raise ValueError(f"masks must be a bool tensor, got {_describe(masks)}")
            if tuple(masks.shape) != (count, height, width):
                raise ValueError(
                    f"masks must have shape (N, H, W) = {(count, height, width)}, "
                    f"got {tuple(masks.shape)}"
                )
        if self.mask_scores is not None:
            self._check_vector("mask_scores", self.mask_scores, count, floating=True)
        if self.prompt_boxes is not None:
            prompt = self.prompt_boxes
            if not isinstance(prompt, torch.Tensor) or tuple(prompt.shape) != (count, 4):
                raise ValueError(
                    f"prompt_boxes must be a ({count}, 4) tensor, got {_describe(prompt)}"
                )
            if not prompt.is_floating_point():
                raise ValueError(f"prompt_boxes must be floating point, got {prompt.dtype}")

    @property
    def sam_boxes(self) -> torch.Tensor:
        """``(N, 4)`` xyxy pixels to prompt SAM with: ``prompt_boxes`` if set, else ``boxes``."""
        return self.boxes if self.prompt_boxes is None else self.prompt_boxes

    @staticmethod
    def _check_vector(name: str, value: Any, count: int, floating: bool) -> None:
        if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.shape[0] != count:
            raise ValueError(f"{name} must be a ({count},) tensor, got {_describe(value)}")
        if floating != value.is_floating_point():
            kind = "floating point" if floating else "integer"
            raise ValueError(f"{name} must be {kind}, got {value.dtype}")

    # -- construction -----------------------------------------------------------------
    @classmethod
    def empty(
        cls,
        image_size: tuple[int, int],
        device: torch.device | str = "cpu",
        with_masks: bool = False,
    ) -> Detections:
        """No detections for an image of ``image_size`` (H, W)."""
        height, width = image_size
        return cls(
            image_size=(height, width),
            boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            box_scores=torch.zeros(0, dtype=torch.float32, device=device),
            class_ids=torch.zeros(0, dtype=torch.int64, device=device),
            prompts=(),
            masks=torch.zeros((0, height, width), dtype=torch.bool, device=device)
            if with_masks
            else None,
            mask_scores=torch.zeros(0, dtype=torch.float32, device=device) if with_masks else None,
        )

    @classmethod
    def cat(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate detections of the same image (same ``image_size``; masks all or none)."""
        if not parts:
            raise ValueError("Detections.cat needs at least one Detections")
        size = parts[0].image_size
        if any(p.image_size != size for p in parts):
            raise ValueError(
                f"cannot concatenate detections of different images: {[p.image_size for p in parts]}"
            )
        with_masks = [p.masks is not None for p in parts]
        if any(with_masks) and not all(with_masks):
            raise ValueError("cannot concatenate detections with and without masks")
        with_mask_scores = [p.mask_scores is not None for p in parts]
        with_prompt_boxes = any(p.prompt_boxes is not None for p in parts)
        return cls(
            image_size=size,
            boxes=torch.cat([p.boxes for p in parts]),
            box_scores=torch.cat([p.box_scores for p in parts]),
            class_ids=torch.cat([p.class_ids for p in parts]),
            prompts=tuple(prompt for p in parts for prompt in p.prompts),
            masks=torch.cat([p.masks for p in parts]) if all(with_masks) else None,  # type: ignore[misc]
            mask_scores=torch.cat([p.mask_scores for p in parts])  # type: ignore[misc]
            if all(with_mask_scores)
            else None,
            prompt_boxes=torch.cat([p.sam_boxes for p in parts]) if with_prompt_boxes else None,
        )

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def scores(self) -> torch.Tensor:
        """``(N,)`` combined confidence: box score x mask score (box score alone before SAM)."""
        if self.mask_scores is None:
            return self.box_scores
        return self.box_scores * self.mask_scores

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.boxes.device

    def __getitem__(self, index: torch.Tensor | slice | Sequence[int] | int) -> Detections:
        """Select detections by a bool mask ``(N,)``, integer indices, a slice or one int."""
        if isinstance(index, int):
            index = [index]
        if isinstance(index, slice):
            positions = list(range(len(self)))[index]
        else:
            key = torch.as_tensor(index, device="cpu")
            if key.dtype == torch.bool:
                if key.shape != (len(self),):
                    raise ValueError(
                        f"bool index must have shape ({len(self)},), got {tuple(key.shape)}"
                    )
                positions = key.nonzero().flatten().tolist()
            else:
                positions = key.flatten().tolist()
        take = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        return replace(
            self,
            boxes=self.boxes[take],
            box_scores=self.box_scores[take],
            class_ids=self.class_ids[take],
            prompts=tuple(self.prompts[i] for i in positions),
            masks=self.masks[take] if self.masks is not None else None,
            mask_scores=self.mask_scores[take] if self.mask_scores is not None else None,
            prompt_boxes=self.prompt_boxes[take] if self.prompt_boxes is not None else None,
        )

    def with_masks(self, masks: torch.Tensor, mask_scores: torch.Tensor) -> Detections:
        """A copy with ``masks`` ``(N, H, W)`` bool and ``mask_scores`` ``(N,)`` set."""
        return replace(self, masks=masks, mask_scores=mask_scores)

    def to(self, device: torch.device | str) -> Detections:
        """A copy with every tensor on ``device``."""
        return replace(
            self,
            boxes=self.boxes.to(device),
            box_scores=self.box_scores.to(device),
            class_ids=self.class_ids.to(device),
            masks=self.masks.to(device) if self.masks is not None else None,
            mask_scores=self.mask_scores.to(device) if self.mask_scores is not None else None,
            prompt_boxes=self.prompt_boxes.to(device) if self.prompt_boxes is not None else None,
        )

    def cpu(self) -> Detections:
        """A copy on the CPU."""
        return self.to("cpu")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__
