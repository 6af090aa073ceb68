"""A zero-shot tagger from SAM 3's presence head: is each class in the image at all?

SAM 3 decouples recognition from localisation: besides its per-instance scores, every
(image, prompt) forward gives one *presence* logit, the model's image-level belief that
the prompted concept appears anywhere in the image. :class:`Sam3PresenceTagger` prompts the
pipeline's :class:`~samwsss.stages.segmenter_sam3.Sam3Segmenter` with every class of the
mapping and tags a class when ``sigmoid(presence logit) > threshold``. The instances SAM 3
found for the tagged classes come back in ``TagResult.detections`` (masks included), so the
pipeline does not segment them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from samwsss.checks import check_fraction
from samwsss.choices import PRESENCE_TAGGER
from samwsss.mapping import ClassMapping
from samwsss.stages.contracts import ImageBatch, TagResult
from samwsss.stages.model_stage import SharedStage
from samwsss.stages.segmenter_sam3 import Sam3Segmenter

#: Registry name of the tagger (kind ``"tagger"``).
SAM3_PRESENCE_TAGGER = PRESENCE_TAGGER
#: Presence probability a class must pass. The presence head is a binary classifier
#: ("is the concept in the image?") trained with a sigmoid cross-entropy, so 0.5 is its
#: decision boundary; it also matches SAM 3's default instance threshold
#: (:data:`~samwsss.stages.segmenter_sam3.DEFAULT_SCORE_THRESHOLD`), under which no
#: instance of an absent class (presence <= 0.5) can pass, as ``score <= presence``.
DEFAULT_PRESENCE_THRESHOLD = 0.5


class Sam3PresenceTagger(SharedStage):
    """Tag images with the classes of ``mapping`` whose SAM 3 presence probability passes
    ``threshold``.

    Its vocabulary is the mapping's foreground classes: ``TagResult.indices`` are rows of
    that list (class id - 1), ``TagResult.class_ids`` the class ids, ``probabilities`` the
    presence probabilities (most probable first; ties in class order), ``tags`` the class
    names, and ``detections`` the segmenter's instances of the tagged classes (boxes, scores,
    masks; instances of untagged classes are dropped). A tagged class may have no instance
    above the segmenter's ``score_threshold``.

    Args:
        segmenter: the pipeline's SAM 3 segmenter (shared: weights loaded once, and its
            text cache means each class prompt is encoded once per run).
        mapping: the classes to look for (each class's prompt is used).
        threshold: presence probability a class must exceed (strictly);
            :data:`DEFAULT_PRESENCE_THRESHOLD`.
    """

    def __init__(
        self,
        segmenter: Sam3Segmenter,
        mapping: ClassMapping,
        threshold: float = DEFAULT_PRESENCE_THRESHOLD,
    ) -> None:
        self.threshold = check_fraction("threshold", threshold)
        self.segmenter = segmenter
        self.mapping = mapping

    stage_name = SAM3_PRESENCE_TAGGER

    @property
    def shared(self) -> Sam3Segmenter:
        """The pipeline's SAM 3 segmenter, whose weights this tagger runs."""
        return self.segmenter

    def tag(self, images: ImageBatch) -> list[TagResult]:
        """Tags, presence probabilities, class ids and the tagged classes' instances."""
        classes = self.mapping.classes[1:]
        queries = [[(entry.index, entry.prompt) for entry in classes] for _ in range(len(images))]
        detections, presence = self.segmenter.detect_with_presence(images, queries)
        results: list[TagResult] = []
        for det, probabilities in zip(detections, presence, strict=True):
            values = probabilities.tolist()
            present = [
                (entry.index, value)
                for entry, value in zip(classes, values, strict=True)
                if value > self.threshold
            ]
            ordered = sorted(present, key=lambda item: (-item[1], item[0]))
            tagged = {cls for cls, _ in ordered}
            keep = torch.tensor([c in tagged for c in det.class_ids.tolist()], dtype=torch.bool)
            results.append(
                TagResult(
                    tags=tuple(self.mapping.classes[cls].name for cls, _ in ordered),
                    indices=tuple(cls - 1 for cls, _ in ordered),
                    probabilities=tuple(value for _, value in ordered),
                    class_ids=tuple(cls for cls, _ in ordered),
                    detections=det[keep],
                )
            )
        return results

    def __call__(self, images: Sequence[Any]) -> list[TagResult]:
        """One :class:`TagResult` per ``(H, W, 3)`` uint8 image (see the class docstring)."""
        return self.tag(ImageBatch.of(images, self.device))


def load_presence_tagger(
    name: str, *, segmenter: Sam3Segmenter, mapping: ClassMapping, **kwargs: Any
) -> Sam3PresenceTagger:
    """Registry loader: a :class:`Sam3PresenceTagger` around the pipeline's ``segmenter``."""
    return Sam3PresenceTagger(segmenter, mapping, **kwargs)
