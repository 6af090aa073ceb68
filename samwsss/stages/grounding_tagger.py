"""A zero-shot tagger that needs no extra weights: Grounding DINO prompted with every class.

A class is tagged when Grounding DINO finds at least one box for it above the box
threshold (optionally a stricter ``threshold``). Its boxes are kept, so the pipeline does
not run Grounding DINO a second time for the tagged classes. Useful without RAM weights,
and as a baseline to compare RAM against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samwsss.detections import Detections
from samwsss.mapping import ClassMapping
from samwsss.ram.types import TagResult
from samwsss.registry import register


class GroundingTagger:
    """Tag images with the classes of ``mapping`` that Grounding DINO detects.

    Args:
        boxer: a :class:`~samwsss.stages.boxer.GroundingDinoBoxer` (shared with the pipeline).
        mapping: the classes to look for (each class's prompt is used).
        threshold: minimum best box score for a class to count as present; ``None`` keeps
            every class with a box over the boxer's own ``box_threshold``.
        prompt_mode: ``"joint"`` (default: all classes packed into as few captions as fit the
            text length, e.g. 1-4 forwards per COCO image instead of 80) or ``"per-class"``
            (one forward per class, as the paper's text-input route prompts).
    """

    #: The tag results' ``indices`` are class ids of the mapping, not a tag vocabulary.
    yields_class_ids = True

    def __init__(
        self,
        boxer: Any,
        mapping: ClassMapping,
        threshold: float | None = None,
        prompt_mode: str = "joint",
    ) -> None:
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1) or None, got {threshold}")
        if prompt_mode not in ("joint", "per-class"):
            raise ValueError(f"prompt_mode must be 'joint' or 'per-class', got {prompt_mode!r}")
        self.prompt_mode = prompt_mode
        self.boxer = boxer
        self.mapping = mapping
        self.threshold = threshold
        self.model_id = f"grounding({getattr(boxer, 'checkpoint', type(boxer).__name__)})"

    def to(self, device: torch.device | str) -> GroundingTagger:
        """Move the shared boxer; returns ``self``."""
        self.boxer.to(device)
        return self

    def detect(self, images: Sequence[np.ndarray]) -> tuple[list[TagResult], list[Detections]]:
        """Tags and the detections of the tagged classes for each ``(H, W, 3)`` uint8 image."""
        queries = [
            [(entry.index, entry.prompt) for entry in self.mapping.classes[1:]] for _ in images
        ]
        detections = self.boxer(list(images), queries, prompt_mode=self.prompt_mode)
        tags: list[TagResult] = []
        kept: list[Detections] = []
        for det in detections:
            best: dict[int, float] = {}
            for cls, score in zip(det.class_ids.tolist(), det.box_scores.tolist()):
                best[cls] = max(score, best.get(cls, 0.0))
            present = {
                cls: score for cls, score in best.items()
                if self.threshold is None or score > self.threshold
            }
            ordered = sorted(present.items(), key=lambda item: (-item[1], item[0]))
            tags.append(
                TagResult(
                    tags=tuple(self.mapping.classes[cls].name for cls, _ in ordered),
                    indices=tuple(cls for cls, _ in ordered),
                    probabilities=tuple(score for _, score in ordered),
                )
            )
            keep = torch.tensor(
                [cls in present for cls in det.class_ids.tolist()], dtype=torch.bool
            )
            kept.append(det[keep])
        return tags, kept

    def __call__(self, images: Sequence[np.ndarray]) -> list[TagResult]:
        """One :class:`TagResult` per image: class names with their best box score."""
        return self.detect(images)[0]


@register("tagger", "grounding", weights="(the pipeline's Grounding DINO)",
          description="classes Grounding DINO detects when prompted with every class")
def build_grounding_tagger(boxer: Any, mapping: ClassMapping, **kwargs: Any) -> GroundingTagger:
    """Registry builder: a :class:`GroundingTagger` around ``boxer``."""
    return GroundingTagger(boxer, mapping, **kwargs)
