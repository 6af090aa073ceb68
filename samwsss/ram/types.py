"""What a tagger returns for one image: :class:`TagResult`.

Shared by every tagger stage (RAM / RAM++ here, the Grounding DINO class tagger elsewhere):
a tagger has a vocabulary (RAM's 4,585 tags, or a mapping's class names), scores every
entry of it per image, and keeps the entries whose score passes their threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TagResult:
    """The tags kept for one image, most probable first.

    Attributes:
        tags: tag texts as the tagger's vocabulary writes them.
        indices: each tag's row in the tagger's vocabulary (0-based).
        probabilities: each tag's score in [0, 1] (RAM: sigmoid of the logit; Grounding DINO:
            best box score), non-increasing.
    """

    tags: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    probabilities: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))
        if not len(self.tags) == len(self.indices) == len(self.probabilities):
            raise ValueError(
                f"TagResult needs one index and one probability per tag, got {len(self.tags)} "
                f"tags, {len(self.indices)} indices and {len(self.probabilities)} probabilities"
            )
        if any(a < b for a, b in zip(self.probabilities, self.probabilities[1:])):
            raise ValueError("TagResult probabilities must be sorted from most to least probable")

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, tag: object) -> bool:
        return tag in self.tags

    def as_dict(self) -> dict[str, float]:
        """``{tag: probability}`` in order (for JSON output)."""
        return dict(zip(self.tags, self.probabilities))

    @classmethod
    def from_scores(
        cls,
        scores: np.ndarray,
        thresholds: np.ndarray | float,
        names: Sequence[str],
    ) -> TagResult:
        """Keep the entries with ``score > threshold`` (strictly), sorted by score.

        Args:
            scores: (T,) float scores of every vocabulary entry.
            thresholds: (T,) per-entry thresholds or one float for all.
            names: the T vocabulary texts.

        Ties in score keep vocabulary order.
        """
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), scores.shape)
        if len(names) != scores.shape[0]:
            raise ValueError(f"{scores.shape[0]} scores but {len(names)} vocabulary entries")
        kept = np.flatnonzero(scores > limits)
        order = kept[np.argsort(-scores[kept], kind="stable")]
        return cls(
            tags=tuple(names[i] for i in order),
            indices=tuple(int(i) for i in order),
            probabilities=tuple(float(scores[i]) for i in order),
        )
