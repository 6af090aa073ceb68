"""Memory bounds of the masker and the merger change no bit of their results.

The masker upsamples and thresholds full-resolution logits a few masks at a time
(``masker.UPSCALE_BUDGET_PIXELS``) and the merger merges row bands of the image
(``merger.MERGE_BUDGET_PIXELS``). Here both budgets are forced down to a mask (a row) at a
time and to uneven pieces, and the results are compared bit for bit with one piece per
image, on the tiny transformers SAM, SAM 2 (the other upscaling geometry) and the official
segment-anything backend. The peak memory itself is measured by
``benchmarks/huge_image.py``, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import samwsss.stages.masker as masker_module
import samwsss.stages.merger as merger_module
from samwsss.detections import Detections
from samwsss.stages.masker import SamMasker
from samwsss.stages.merger import MaskMerger, mask_areas
from tests.sam_fixtures import make_detections, random_boxes, random_image, single_torch_thread

UNBOUNDED = 2**62
SIZES = [(120, 90), (75, 110), (50, 60)]
COUNTS = [7, 4, 0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


def _build_sam(directory: Path) -> Path:
    from samwsss.testing.sam import build_tiny_sam

    return build_tiny_sam(directory)


def _build_sam2(directory: Path) -> Path:
    from samwsss.testing.sam import build_tiny_sam2

    return build_tiny_sam2(directory)


def _build_official(directory: Path) -> Path:
    pytest.importorskip("segment_anything")
    from samwsss.testing.sam import build_tiny_official_sam

    return build_tiny_official_sam(directory / "sam_tiny.pth")


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "sam": _build_sam,
    "sam2": _build_sam2,
    "official": _build_official,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def masker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SamMasker:
    source = BUILDERS[request.param](tmp_path_factory.mktemp(f"budget_{request.param}"))
    # 5 boxes per decoder chunk: chunks straddle the two images with boxes (7 + 4)
    official = {"decoder_num_heads": 8} if request.param == "official" else {}
    return SamMasker.from_pretrained(
        source, device="cpu", max_boxes_per_chunk=5, max_images_per_batch=3, **official
    )


def _inputs() -> tuple[list[np.ndarray], list[Detections]]:
    images = [random_image(size, 10 + i) for i, size in enumerate(SIZES)]
    dets = [
        make_detections(size, random_boxes(size, count, 20 + i))
        for i, (size, count) in enumerate(zip(SIZES, COUNTS, strict=True))
    ]
    return images, dets


def _run(
    masker: SamMasker, monkeypatch: pytest.MonkeyPatch, budget: int
) -> tuple[list[Detections], list[int]]:
    """The masker's output with ``UPSCALE_BUDGET_PIXELS = budget`` and the number of masks
    in each upscaled piece, in call order."""
    pieces: list[int] = []
    upscale = masker_module.upscale_mask_logits

    def spy(low_res: torch.Tensor, *args: object) -> torch.Tensor:
        pieces.append(int(low_res.shape[0]))
        return upscale(low_res, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(masker_module, "UPSCALE_BUDGET_PIXELS", budget)
    monkeypatch.setattr(masker_module, "upscale_mask_logits", spy)
    images, dets = _inputs()
    try:
        return masker(images, dets), pieces
    finally:
        monkeypatch.undo()


def test_upscaling_pieces_give_the_same_mask_bits(
    masker: SamMasker, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, whole_pieces = _run(masker, monkeypatch, UNBOUNDED)
    # one piece per image within each decoder chunk of 5 boxes: [5 | 2, 3 | 1]
    assert whole_pieces == [5, 2, 3, 1]
    masks = [mask for det in whole if det.masks is not None for mask in det.masks]
    # distinct, non-trivial masks: a dropped, repeated or shifted box cannot go unnoticed
    assert len({mask.numpy().tobytes() for mask in masks}) == len(masks) == sum(COUNTS)
    assert all(0 < int(mask.sum()) < mask.numel() for mask in masks)

    one_at_a_time, pieces = _run(masker, monkeypatch, 1)
    assert pieces == [1] * sum(COUNTS)
    # three 120x90 masks, or three 75x110 ones, per piece: uneven splits of each run
    uneven, uneven_pieces = _run(masker, monkeypatch, 3 * 120 * 90)
    assert uneven_pieces == [3, 2, 2, 3, 1]
    for chunked in (one_at_a_time, uneven):
        for expected, actual in zip(whole, chunked, strict=True):
            assert actual.masks is not None and expected.masks is not None
            assert actual.mask_scores is not None and expected.mask_scores is not None
            assert actual.masks.dtype == torch.bool
            assert torch.equal(actual.masks, expected.masks)
            assert torch.equal(actual.mask_scores, expected.mask_scores)
            assert actual.masks.shape == (len(expected), *expected.image_size)


def test_merged_sam_masks_are_the_same_in_row_bands(
    masker: SamMasker, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, dets = _inputs()
    det = masker(images[:1], dets[:1])[0]
    merger = MaskMerger("score", uncertain_margin=0.2)
    whole = merger.merge(det)
    monkeypatch.setattr(merger_module, "MERGE_BUDGET_PIXELS", 1)
    assert torch.equal(merger.merge(det), whole)


# ----------------------------------------------------------------------------- merger
def _random_detections(count: int, size: tuple[int, int], seed: int) -> Detections:
    """Overlapping rectangles with speckle, 4 classes, scores with ties."""
    height, width = size
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, height, width), dtype=bool)
    boxes = []
    for i in range(count):
        y0, x0 = rng.integers(0, height - 4), rng.integers(0, width - 4)
        y1, x1 = rng.integers(y0 + 3, height + 1), rng.integers(x0 + 3, width + 1)
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.85
        masks[i, y0, x0] = True
        boxes.append([x0, y0, x1, y1])
    classes = rng.integers(1, 5, count)
    return Detections(
        image_size=size,
        boxes=torch.tensor(boxes, dtype=torch.float32),
        box_scores=torch.tensor(rng.integers(5, 10, count) / 10, dtype=torch.float32),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        prompts=tuple(f"class {c}" for c in classes),
        masks=torch.from_numpy(masks),
        mask_scores=torch.tensor(rng.integers(5, 10, count) / 10, dtype=torch.float32),
    )


@pytest.mark.parametrize("rule", ["score", "paper", "area"])
@pytest.mark.parametrize("margin", [None, 0.15])
@pytest.mark.parametrize("min_area", [0, 60])
def test_merging_in_row_bands_gives_the_same_labels(
    monkeypatch: pytest.MonkeyPatch, rule: str, margin: float | None, min_area: int
) -> None:
    det = _random_detections(13, (37, 29), seed=7)
    assert det.masks is not None
    areas = det.masks.flatten(1).sum(1)
    assert 0 < int((areas < 60).sum()) < len(det)  # min_area 60 drops some masks, not all
    merger = MaskMerger(rule, uncertain_margin=margin, min_area=min_area)
    monkeypatch.setattr(merger_module, "MERGE_BUDGET_PIXELS", UNBOUNDED)
    assert len(merger_module._row_bands(13, 37, 29)) == 1
    whole = merger.merge(det)
    assert len(torch.unique(whole)) >= 4  # several classes won somewhere
    if margin is not None:
        assert bool((whole == 255).any())
    kept = 13 if min_area == 0 else int((areas >= min_area).sum())
    if min_area:  # dropping small masks = merging the others
        assert torch.equal(MaskMerger(rule, margin).merge(det[areas >= min_area]), whole)
    for budget, bands in ((1, 37), (5 * kept * 29, 8)):  # a row per band; 7 x 5 rows + 2
        monkeypatch.setattr(merger_module, "MERGE_BUDGET_PIXELS", budget)
        assert len(merger_module._row_bands(kept, 37, 29)) == bands
        assert torch.equal(merger.merge(det), whole)


def test_mask_areas_count_every_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    det = _random_detections(9, (23, 31), seed=3)
    assert det.masks is not None
    expected = det.masks.flatten(1).sum(1)
    assert torch.equal(mask_areas(det.masks), expected)
    monkeypatch.setattr(merger_module, "MERGE_BUDGET_PIXELS", 9 * 31 * 4)  # 4 rows per band
    assert torch.equal(merger_module._banded_areas(det.masks), expected)
    assert mask_areas(det.masks[:0]).shape == (0,)
