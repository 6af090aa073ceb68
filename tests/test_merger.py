"""Merger rules on hand-built overlapping masks, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samwsss.detections import Detections
from samwsss.stages.merger import MaskMerger


def _detections(
    masks: list[np.ndarray],
    classes: list[int],
    box_scores: list[float],
    mask_scores: list[float] | None = None,
) -> Detections:
    stack = torch.from_numpy(np.stack(masks)).bool()
    n, h, w = stack.shape
    boxes = []
    for m in stack:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Detections(
        image_size=(h, w),
        boxes=torch.tensor(boxes, dtype=torch.float32),
        box_scores=torch.tensor(box_scores, dtype=torch.float32),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        prompts=tuple(f"c{c}" for c in classes),
        masks=stack,
        mask_scores=torch.tensor(mask_scores if mask_scores else [1.0] * n, dtype=torch.float32),
    )


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def overlapping() -> Detections:
    # A large class-2 mask (score 0.9) and a small class-5 mask (score 0.6) inside it,
    # plus a class-3 mask (score 0.5) overlapping the large one on the right.
    h, w = 6, 8
    big = _rect(h, w, 0, 5, 0, 6)
    small = _rect(h, w, 1, 3, 1, 3)
    right = _rect(h, w, 2, 6, 4, 8)
    return _detections([big, small, right], [2, 5, 3], [0.9, 0.6, 0.5])


def test_paper_rule_is_the_authors_formula(overlapping: Detections) -> None:
    merged = MaskMerger("paper").merge(overlapping).numpy()
    expected = np.zeros((6, 8), dtype=np.uint8)
    for mask, cls in zip(overlapping.masks.numpy(), overlapping.class_ids.numpy(), strict=True):
        expected = np.maximum(expected, mask.astype(np.uint8) * cls)  # authors' loop
    np.testing.assert_array_equal(merged, expected)
    assert merged[1, 1] == 5 and merged[3, 4] == 3 and merged[0, 0] == 2 and merged[5, 0] == 0


def test_score_rule_highest_score_wins(overlapping: Detections) -> None:
    merged = MaskMerger("score").merge(overlapping).numpy()
    expected = np.zeros((6, 8), dtype=np.uint8)
    expected[0:5, 0:6] = 2  # big, score 0.9, beats everything it covers
    right = _rect(6, 8, 2, 6, 4, 8) & ~_rect(6, 8, 0, 5, 0, 6)
    expected[right] = 3
    np.testing.assert_array_equal(merged, expected)


def test_score_rule_uses_box_times_mask_score() -> None:
    a = _rect(4, 4, 0, 4, 0, 3)
    b = _rect(4, 4, 0, 4, 1, 4)
    # box scores favour class 1, but mask IoU flips it: 0.8*0.5=0.4 < 0.6*0.9=0.54
    det = _detections([a, b], [1, 2], [0.8, 0.6], [0.5, 0.9])
    merged = MaskMerger("score").merge(det).numpy()
    assert (merged[:, 1:3] == 2).all() and (merged[:, 0] == 1).all() and (merged[:, 3] == 2).all()


def test_area_rule_smallest_mask_wins(overlapping: Detections) -> None:
    merged = MaskMerger("area").merge(overlapping).numpy()
    expected = np.zeros((6, 8), dtype=np.uint8)
    expected[0:5, 0:6] = 2  # big: 30 px
    expected[2:6, 4:8] = 3  # right: 16 px < 30, wins the overlap
    expected[1:3, 1:3] = 5  # small: 4 px
    np.testing.assert_array_equal(merged, expected)


def test_uncertain_band_marks_close_overlaps_of_different_classes() -> None:
    a = _rect(4, 6, 0, 4, 0, 4)
    b = _rect(4, 6, 0, 4, 2, 6)
    c = _rect(4, 6, 0, 2, 0, 2)  # same class as a, fully inside a: never contested with a
    det = _detections([a, b, c], [1, 2, 1], [0.70, 0.65, 0.9])
    merged = MaskMerger("score", uncertain_margin=0.1).merge(det).numpy()
    expected = np.zeros((4, 6), dtype=np.uint8)
    expected[:, 0:2] = 1
    expected[:, 2:4] = 255  # |0.70 - 0.65| < 0.1 between different classes
    expected[:, 4:6] = 2
    np.testing.assert_array_equal(merged, expected)
    far = MaskMerger("score", uncertain_margin=0.01).merge(det).numpy()
    assert (far[:, 2:4] == 1).all()


def test_min_area_drops_small_masks(overlapping: Detections) -> None:
    merged = MaskMerger("area", min_area=5).merge(overlapping).numpy()
    assert merged[1, 1] == 2  # the 4-pixel class-5 mask was dropped


def test_empty_detections_give_background() -> None:
    det = Detections.empty((3, 5), with_masks=True)
    for rule in ("score", "paper", "area"):
        merged = MaskMerger(rule).merge(det)
        assert merged.dtype == torch.uint8 and merged.shape == (3, 5) and not merged.any()


def test_batch_call_equals_per_image(overlapping: Detections) -> None:
    merger = MaskMerger("score")
    other = _detections([_rect(3, 3, 0, 2, 0, 2)], [7], [0.4])
    out = merger([overlapping, other])
    assert torch.equal(out[0], merger.merge(overlapping)) and torch.equal(
        out[1], merger.merge(other)
    )


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(
        ValueError, match="merge rule must be one of score, paper, area; got 'largest'"
    ):
        MaskMerger("largest")
    with pytest.raises(ValueError, match="uncertain_margin"):
        MaskMerger(uncertain_margin=2.0)
    with pytest.raises(ValueError, match="one Detections per image"):
        MaskMerger()(Detections.empty((2, 2), with_masks=True))
    det = Detections.empty((2, 2))
    with pytest.raises(ValueError, match="run the masker"):
        MaskMerger().merge(det)
