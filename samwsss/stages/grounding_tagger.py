"""A zero-shot tagger that needs no extra weights: Grounding DINO prompted with every class.

A class is tagged when Grounding DINO finds at least one box for it above the box
threshold (optionally a stricter ``threshold``). Its boxes are kept in the
:class:`TagResult`, so the pipeline does not run Grounding DINO a second time for the
tagged classes. Useful without RAM weights, and as a baseline to compare RAM against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from samwsss.checks import check_choice, check_optional_fraction
from samwsss.choices import GROUNDING_TAGGER, PROMPT_MODES
from samwsss.mapping import ClassMapping
from samwsss.stages.contracts import Boxer, ImageBatch, TagResult
from samwsss.stages.model_stage import SharedStage


class GroundingTagger(SharedStage):
    """Tag images with the classes of ``mapping`` that Grounding DINO detects.

    Its vocabulary is the mapping's foreground classes: ``TagResult.indices`` are rows of
    that list (class id - 1), ``TagResult.class_ids`` the class ids, and
    ``TagResult.detections`` the boxes of the tagged classes.

    Args:
        boxer: the pipeline's boxer (shared: its weights are loaded once).
        mapping: the classes to look for (each class's prompt is used).
        threshold: minimum best box score for a class to count as present; ``None`` keeps
            every class with a box over the boxer's own ``box_threshold``.
        prompt_mode: ``"joint"`` (default: all classes packed into as few captions as fit the
            text length, e.g. 1-4 forwards per COCO image instead of 80) or ``"per-class"``
            (one forward per class, as the paper's text-input route prompts).
    """

    def __init__(
        self,
        boxer: Boxer,
        mapping: ClassMapping,
        threshold: float | None = None,
        prompt_mode: str = "joint",
    ) -> None:
        self.threshold = check_optional_fraction("threshold", threshold)
        self.prompt_mode = check_choice("prompt_mode", prompt_mode, PROMPT_MODES)
        self.boxer = boxer
        self.mapping = mapping

    stage_name = GROUNDING_TAGGER

    @property
    def shared(self) -> Boxer:
        """The pipeline's boxer, whose weights this tagger runs."""
        return self.boxer

    def tag(self, images: ImageBatch) -> list[TagResult]:
        """Tags, class ids and the detections of the tagged classes for each image."""
        queries = [
            [(entry.index, entry.prompt) for entry in self.mapping.classes[1:]]
            for _ in range(len(images))
        ]
        detections = self.boxer.detect(images, queries, prompt_mode=self.prompt_mode)
        results: list[TagResult] = []
        for det in detections:
            best: dict[int, float] = {}
            for cls, score in zip(det.class_ids.tolist(), det.box_scores.tolist(), strict=True):
                best[cls] = max(score, best.get(cls, 0.0))
            present = {
                cls: score
                for cls, score in best.items()
                if self.threshold is None or score > self.threshold
            }
            ordered = sorted(present.items(), key=lambda item: (-item[1], item[0]))
            keep = torch.tensor(
                [cls in present for cls in det.class_ids.tolist()], dtype=torch.bool
            )
            results.append(
                TagResult(
                    tags=tuple(self.mapping.classes[cls].name for cls, _ in ordered),
                    indices=tuple(cls - 1 for cls, _ in ordered),
                    probabilities=tuple(score for _, score in ordered),
                    class_ids=tuple(cls for cls, _ in ordered),
                    detections=det[keep],
                )
            )
        return results

    def __call__(self, images: Sequence[Any]) -> list[TagResult]:
        """One :class:`TagResult` per ``(H, W, 3)`` uint8 image (see the class docstring)."""
        return self.tag(ImageBatch.of(images, self.device))


def load_grounding_tagger(
    name: str, *, boxer: Boxer, mapping: ClassMapping, **kwargs: Any
) -> GroundingTagger:
    """Registry loader: a :class:`GroundingTagger` around the pipeline's ``boxer``."""
    return GroundingTagger(boxer, mapping, **kwargs)
