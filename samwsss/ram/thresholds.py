"""Effective per-tag thresholds: official values, a global override, per-tag overrides.

Precedence, per tag: an entry of ``tag_thresholds`` (tag index -> threshold) wins; else the
global ``threshold`` when given; else the official per-tag value. A mapping file's per-class
``threshold`` becomes ``tag_thresholds`` for that class's curated tags through
:func:`mapping_tag_thresholds`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from samwsss.mapping import ClassMapping
from samwsss.ram.vocabulary import RAMVocabulary


def _check_threshold(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} {value} is outside [0, 1]: give a probability threshold")
    return value


def resolve_thresholds(
    official: np.ndarray | tuple[float, ...],
    threshold: float | None = None,
    tag_thresholds: Mapping[int, float] | None = None,
) -> np.ndarray:
    """The (T,) float32 thresholds to apply.

    Args:
        official: (T,) official per-tag thresholds.
        threshold: global override for every tag, or ``None``.
        tag_thresholds: ``{tag index: threshold}`` overrides (win over ``threshold``).

    Raises:
        ValueError: a threshold outside [0, 1] or a tag index outside ``0..T-1``.
    """
    result = np.array(official, dtype=np.float32).reshape(-1)
    if threshold is not None:
        result[:] = _check_threshold(threshold, "threshold")
    for index, value in (tag_thresholds or {}).items():
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"tag_thresholds keys must be tag indices (int), got {index!r}")
        if not 0 <= int(index) < result.shape[0]:
            raise ValueError(
                f"tag_thresholds has tag index {index}, outside 0..{result.shape[0] - 1}"
            )
        result[int(index)] = _check_threshold(value, f"tag_thresholds[{index}]")
    return result


def mapping_tag_thresholds(mapping: ClassMapping, vocabulary: RAMVocabulary) -> dict[int, float]:
    """``{tag index: threshold}`` for the curated tags of every class with a ``threshold``.

    Classes without a threshold keep the official per-tag values (they get no entry).

    Raises:
        ValueError: a tag of a thresholded class is not in the RAM vocabulary (the message
            lists them: fix the mapping file's ``tags``).
    """
    result: dict[int, float] = {}
    unknown: list[str] = []
    for entry in mapping.classes:
        if entry.threshold is None:
            continue
        for tag in entry.tags:
            index = vocabulary.index_of(tag)
            if index is None:
                unknown.append(f"{tag!r} ({entry.name})")
            else:
                result[index] = float(entry.threshold)
    if unknown:
        raise ValueError(
            f"mapping {mapping.name!r} ({mapping.source}) sets thresholds for tags that are not "
            f"RAM tags: {', '.join(unknown)}; correct them to tags of ram_tag_list.txt"
        )
    return result
