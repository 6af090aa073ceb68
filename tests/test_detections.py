"""The Detections carrier validates itself and supports empty, cat and indexing."""

from __future__ import annotations

import pytest
import torch

from samwsss.detections import Detections


def _make(n: int = 3, size: tuple[int, int] = (10, 20), masks: bool = False) -> Detections:
    g = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([size[1] / 2, size[0] / 2])
    boxes = torch.cat([xy, xy + torch.tensor([size[1] / 2, size[0] / 2])], 1)
    return Detections(
        image_size=size,
        boxes=boxes,
        box_scores=torch.rand(n, generator=g),
        class_ids=torch.arange(1, n + 1),
        prompts=tuple(f"p{i}" for i in range(n)),
        masks=torch.rand(n, *size, generator=g) > 0.5 if masks else None,
        mask_scores=torch.rand(n, generator=g) if masks else None,
    )


def test_scores_combine_box_and_mask() -> None:
    det = _make(masks=False)
    assert torch.equal(det.scores, det.box_scores)
    det = _make(masks=True)
    assert torch.allclose(det.scores, det.box_scores * det.mask_scores)


def test_indexing_and_cat() -> None:
    det = _make(4, masks=True)
    keep = torch.tensor([True, False, True, False])
    sub = det[keep]
    assert len(sub) == 2 and sub.prompts == ("p0", "p2")
    assert torch.equal(sub.masks, det.masks[keep]) and torch.equal(sub.boxes, det.boxes[keep])
    assert det[1:3].prompts == ("p1", "p2") and det[[3, 0]].class_ids.tolist() == [4, 1]
    both = Detections.cat([det, sub])
    assert len(both) == 6 and both.masks.shape == (6, 10, 20)
    assert len(det[torch.zeros(4, dtype=torch.bool)]) == 0


def test_empty() -> None:
    det = Detections.empty((5, 7), with_masks=True)
    assert len(det) == 0 and det.masks.shape == (0, 5, 7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"boxes": torch.zeros(3, 5)}, "boxes must be an"),
        ({"boxes": torch.tensor([[0, 0, 30, 5.0]] * 3)}, "inside the 20x10 image"),
        ({"boxes": torch.tensor([[5, 0, 1, 5.0]] * 3)}, "x1 <= x2"),
        ({"box_scores": torch.zeros(2)}, "box_scores must be a"),
        ({"class_ids": torch.zeros(3, dtype=torch.int64)}, "class_ids must be >= 1"),
        ({"class_ids": torch.ones(3)}, "class_ids must be integer"),
        ({"prompts": ("a",)}, "prompts has 1 entries"),
        ({"masks": torch.zeros(3, 10, 21, dtype=torch.bool)}, r"masks must have shape"),
        ({"masks": torch.zeros(3, 10, 20)}, "masks must be a bool"),
        ({"image_size": (0, 20)}, "image_size must be positive"),
    ],
)
def test_validation_names_the_problem(change: dict, message: str) -> None:
    det = _make(3)
    fields = {
        "image_size": det.image_size,
        "boxes": det.boxes,
        "box_scores": det.box_scores,
        "class_ids": det.class_ids,
        "prompts": det.prompts,
    }
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        Detections(**fields)


def test_cat_rejects_different_images() -> None:
    with pytest.raises(ValueError, match="different images"):
        Detections.cat([_make(2, (10, 20)), _make(2, (11, 20))])
