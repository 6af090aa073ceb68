"""Sam3Segmenter on tiny random SAM 3 / SAM 3 LiteText folders saved to disk (no downloads).

Random weights give arbitrary instances, so what is checked is the plumbing against the
transformers reference, one (image, prompt) at a time: ``Sam3Processor(images=, text=)`` +
``Sam3Model(**inputs)`` + ``processor.post_process_instance_segmentation``. The segmenter
batches rows, encodes each image once and each prompt once (cached), and must still give
the same boxes, scores and mask pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samwsss import registry
from samwsss.mapping import mapping_from_names
from samwsss.stages import segmenter_sam3
from samwsss.stages.contracts import ImageBatch, Tagger, TextSegmenter
from samwsss.stages.segmenter_sam3 import Sam3Segmenter, threshold_probabilities
from samwsss.testing.sam3 import build_tiny_sam3
from tests.sam_fixtures import assert_same_masks, random_image, single_torch_thread

SIZES = [(90, 130), (150, 70), (112, 112), (41, 200)]
QUERIES = [
    [(1, "cat"), (2, "wild bird"), (3, "dog")],
    [(2, "wild bird"), (4, "person")],
    [(1, "cat")],
    [(3, "dog"), (1, "cat"), (4, "person")],
]
THRESHOLD = 0.2  # random scores spread over ~0.1..0.4: some queries kept, some not


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"))


@pytest.fixture(scope="module")
def lite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3_lite"), lite_text=True)


@pytest.fixture(scope="module")
def reference(sam3_dir: Path) -> tuple[Any, Any]:
    from transformers import Sam3Model, Sam3Processor

    return Sam3Model.from_pretrained(sam3_dir).eval(), Sam3Processor.from_pretrained(sam3_dir)


def images(sizes: list[tuple[int, int]] = SIZES) -> list[np.ndarray]:
    return [random_image(size, 10 + i) for i, size in enumerate(sizes)]


def direct(
    reference: tuple[Any, Any], image: np.ndarray, prompt: str, threshold: float
) -> tuple[dict[str, torch.Tensor], float]:
    """The transformers recipe on one image and one prompt: results and presence prob."""
    model, processor = reference
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_instance_segmentation(
        outputs, threshold=threshold, mask_threshold=0.5, target_sizes=[image.shape[:2]]
    )[0]
    return result, float(outputs.presence_logits.sigmoid()[0, 0])


def clipped(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    return torch.minimum(boxes.float().clamp(min=0.0), limit)


def assert_matches_direct(
    reference: tuple[Any, Any],
    pictures: list[np.ndarray],
    queries: list[list[tuple[int, str]]],
    results: list[Any],
    threshold: float,
) -> int:
    """Each image's detections = the concatenated direct results of its queries; returns
    the number of instances compared."""
    total = 0
    for image, image_queries, det in zip(pictures, queries, results, strict=True):
        size = image.shape[:2]
        offset = 0
        for class_id, prompt in image_queries:
            expected, _ = direct(reference, image, prompt, threshold)
            count = len(expected["scores"])
            part = det[list(range(offset, offset + count))]
            assert part.prompts == (prompt,) * count
            assert part.class_ids.tolist() == [class_id] * count
            torch.testing.assert_close(part.box_scores, expected["scores"], rtol=0, atol=1e-5)
            torch.testing.assert_close(
                part.boxes, clipped(expected["boxes"], size), rtol=0, atol=1e-4
            )
            assert part.masks is not None
            assert torch.equal(part.masks, expected["masks"].bool())  # every pixel
            offset += count
            total += count
        assert offset == len(det)
    return total


def test_batched_rows_equal_direct_calls(sam3_dir: Path, reference: tuple[Any, Any]) -> None:
    segmenter = Sam3Segmenter.from_pretrained(
        sam3_dir,
        score_threshold=THRESHOLD,
        device="cpu",
        max_batch_rows=3,
        max_images_per_batch=2,  # rows of two images share forwards
    )
    pictures = images()
    results = segmenter(pictures, QUERIES)
    compared = assert_matches_direct(reference, pictures, QUERIES, results, THRESHOLD)
    rows = sum(len(q) for q in QUERIES)
    assert 0 < compared < rows * 20  # some queries kept, some dropped by the threshold
    for det, image in zip(results, pictures, strict=True):
        assert det.image_size == image.shape[:2]
        assert det.masks is not None and det.masks.dtype == torch.bool
        assert det.mask_scores is not None
        assert torch.equal(det.mask_scores, torch.ones(len(det)))
        torch.testing.assert_close(det.scores, det.box_scores)  # the merger's score
        assert det.boxes.dtype == torch.float32


def test_threshold_zero_keeps_every_query(sam3_dir: Path, reference: tuple[Any, Any]) -> None:
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, score_threshold=0.0, device="cpu")
    pictures = images(SIZES[:2])
    results = segmenter(pictures, QUERIES[:2])
    assert [len(d) for d in results] == [20 * len(q) for q in QUERIES[:2]]
    assert_matches_direct(reference, pictures, QUERIES[:2], results, 0.0)
    assert any(bool(d.masks.any()) for d in results if d.masks is not None)


def test_vision_once_per_image_and_text_cached(sam3_dir: Path) -> None:
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, score_threshold=0.0, device="cpu")
    pictures = images()
    first = segmenter(pictures, QUERIES)
    prompts = {p for q in QUERIES for _, p in q}
    assert segmenter.vision_encoder_calls == len(pictures)  # 9 rows, 4 vision passes
    assert segmenter.text_encoder_calls == len(prompts)  # 9 rows, 4 prompts
    again = segmenter(pictures, QUERIES)  # every prompt a cache hit
    assert segmenter.text_encoder_calls == len(prompts)
    fresh = Sam3Segmenter.from_pretrained(sam3_dir, score_threshold=0.0, device="cpu")
    cold = fresh(pictures, QUERIES)
    for a, b, c in zip(first, again, cold, strict=True):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.masks, b.masks)  # type: ignore[arg-type]
        assert torch.equal(a.box_scores, b.box_scores)
        torch.testing.assert_close(a.boxes, c.boxes, rtol=0, atol=1e-4)
        torch.testing.assert_close(a.box_scores, c.box_scores, rtol=0, atol=1e-6)
        assert_same_masks(a.masks, c.masks)  # type: ignore[arg-type]
    segmenter.clear_text_cache()
    segmenter(pictures[:1], QUERIES[:1])
    assert segmenter.text_encoder_calls == len(prompts) + len(QUERIES[0])


def test_row_and_image_bounds_do_not_change_results(sam3_dir: Path) -> None:
    pictures = images()
    outputs = []
    for rows, per_forward in ((1, 1), (8, 4), (2, 3)):
        segmenter = Sam3Segmenter.from_pretrained(
            sam3_dir,
            score_threshold=THRESHOLD,
            device="cpu",
            max_batch_rows=rows,
            max_images_per_batch=per_forward,
        )
        outputs.append(segmenter(pictures, QUERIES))
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other, strict=True):
            assert a.prompts == b.prompts
            torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=1e-4)
            torch.testing.assert_close(a.box_scores, b.box_scores, rtol=0, atol=1e-6)
            assert_same_masks(a.masks, b.masks)  # type: ignore[arg-type]


def test_masks_upscaled_in_pieces_equal_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    logits = torch.randn(5, 32, 32, generator=torch.Generator().manual_seed(0)) * 3
    whole = torch.empty((5, 70, 90), dtype=torch.bool)
    threshold_probabilities(logits, 0.5, whole)
    expected = (
        torch.nn.functional.interpolate(
            logits.sigmoid()[None], size=(70, 90), mode="bilinear", align_corners=False
        )[0]
        > 0.5
    )
    assert torch.equal(whole, expected)
    monkeypatch.setattr(segmenter_sam3, "UPSCALE_BUDGET_PIXELS", 70 * 90 * 2)
    pieces = torch.empty((5, 70, 90), dtype=torch.bool)
    threshold_probabilities(logits, 0.5, pieces)
    assert torch.equal(whole, pieces)


def test_lite_text_loads_and_runs(lite_dir: Path) -> None:
    from transformers import Sam3LiteTextModel, Sam3Processor

    segmenter = Sam3Segmenter.from_pretrained(lite_dir, score_threshold=0.0, device="cpu")
    assert type(segmenter.model).__name__ == "Sam3LiteTextModel"
    reference = (
        Sam3LiteTextModel.from_pretrained(lite_dir).eval(),
        Sam3Processor.from_pretrained(lite_dir),
    )
    pictures = images(SIZES[:2])
    results = segmenter(pictures, QUERIES[:2])
    assert assert_matches_direct(reference, pictures, QUERIES[:2], results, 0.0) > 0


def test_other_architectures_refused_by_name(tmp_path: Path, sam3_dir: Path) -> None:
    other = tmp_path / "sam2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "sam2"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'sam2' model, not SAM 3"):
        Sam3Segmenter.from_pretrained(other)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        Sam3Segmenter.from_pretrained(empty)
    with pytest.raises(ValueError, match="name_or_path"):
        Sam3Segmenter.from_pretrained("")


def test_registry_names_and_create(sam3_dir: Path) -> None:
    cards = registry.list_models("segmenter")
    assert cards["sam3"].weights == "facebook/sam3"
    for size in ("s0", "s1", "l"):
        assert cards[f"sam3-litetext-{size}"].weights == f"vil-uob/sam3-litetext-{size}"
    segmenter = registry.create("segmenter", str(sam3_dir), device="cpu", score_threshold=0.1)
    assert isinstance(segmenter, Sam3Segmenter)
    assert isinstance(segmenter, TextSegmenter)
    assert segmenter.source.weights == str(sam3_dir)
    assert segmenter.score_threshold == 0.1
    assert segmenter.compute_dtype == torch.float32


def test_defaults_are_the_documented_thresholds(sam3_dir: Path) -> None:
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, device="cpu")
    assert segmenter.score_threshold == 0.5 and segmenter.mask_threshold == 0.5
    assert segmenter.max_batch_rows == 8 and segmenter.max_images_per_batch == 1


def test_inputs_checked(sam3_dir: Path) -> None:
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, device="cpu")
    picture = images(SIZES[:1])
    with pytest.raises(ValueError, match="query lists"):
        segmenter(picture, [])
    with pytest.raises(ValueError, match="must be >= 1"):
        segmenter(picture, [[(0, "cat")]])
    with pytest.raises(ValueError, match="empty prompt"):
        segmenter(picture, [[(1, " . ")]])
    with pytest.raises(ValueError, match="uint8"):
        segmenter([picture[0].astype(np.float32)], [[(1, "cat")]])
    with pytest.raises(ValueError, match="tokens long"):
        segmenter(picture, [[(1, "a" * 40)]])
    with pytest.raises(ValueError, match="score_threshold"):
        Sam3Segmenter(segmenter.model, segmenter.processor, score_threshold=1.5)
    # an image without queries gets empty detections with (0, H, W) masks
    empty = segmenter(picture, [[]])[0]
    assert len(empty) == 0 and empty.masks is not None
    assert tuple(empty.masks.shape) == (0, *SIZES[0])
    # prompts are phrases: trailing period and extra spaces dropped
    det = Sam3Segmenter.from_pretrained(sam3_dir, device="cpu", score_threshold=0.0)(
        picture, [[(2, "  wild   bird. ")]]
    )[0]
    assert set(det.prompts) == {"wild bird"}


# -- presence tagger --------------------------------------------------------------------
NAMES = ["cat", "wild bird", "dog", "person", "potted plant"]


def test_presence_tagger_against_direct(sam3_dir: Path, reference: tuple[Any, Any]) -> None:
    from samwsss.stages.presence_tagger import Sam3PresenceTagger

    mapping = mapping_from_names(NAMES)
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, score_threshold=THRESHOLD, device="cpu")
    pictures = images(SIZES[:3])
    presence = np.array(
        [[direct(reference, image, name, THRESHOLD)[1] for name in NAMES] for image in pictures]
    )
    threshold = float(np.median(presence))  # some classes tagged, some not
    tagger = Sam3PresenceTagger(segmenter, mapping, threshold=threshold)
    assert isinstance(tagger, Tagger)
    results = tagger(pictures)
    tagged_somewhere = set()
    for image, row, result in zip(pictures, presence, results, strict=True):
        expected = [i for i in np.argsort(-row, kind="stable") if row[i] > threshold]
        assert list(result.indices) == expected
        assert result.class_ids == tuple(i + 1 for i in expected)
        assert result.tags == tuple(NAMES[i] for i in expected)
        np.testing.assert_allclose(result.probabilities, row[expected], atol=1e-5)
        tagged_somewhere.update(expected)
        # detections: the segmenter's own, for the tagged classes only
        queries = [[(i + 1, NAMES[i]) for i in range(len(NAMES))]]
        full = segmenter(ImageBatch([image]), queries)[0]
        keep = torch.tensor(
            [int(c) - 1 in expected for c in full.class_ids.tolist()], dtype=torch.bool
        )
        kept = full[keep]
        assert result.detections is not None
        assert result.detections.prompts == kept.prompts
        torch.testing.assert_close(result.detections.boxes, kept.boxes, rtol=0, atol=1e-4)
        assert_same_masks(result.detections.masks, kept.masks)  # type: ignore[arg-type]
    assert 0 < len(tagged_somewhere)


def test_presence_tagger_registry_card(sam3_dir: Path) -> None:
    from samwsss.stages.presence_tagger import DEFAULT_PRESENCE_THRESHOLD, Sam3PresenceTagger

    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, device="cpu")
    mapping = mapping_from_names(NAMES)
    assert "sam3-presence" in registry.list_models("tagger")
    tagger = registry.create("tagger", "sam3-presence", segmenter=segmenter, mapping=mapping)
    assert isinstance(tagger, Sam3PresenceTagger)
    assert tagger.threshold == DEFAULT_PRESENCE_THRESHOLD
    assert tagger.source.weights == f"sam3-presence({sam3_dir})"
    assert tagger.device == segmenter.device
    with pytest.raises(ValueError, match="threshold"):
        Sam3PresenceTagger(segmenter, mapping, threshold=2.0)


def test_pixels_equal_the_processor(sam3_dir: Path, reference: tuple[Any, Any]) -> None:
    _, processor = reference
    segmenter = Sam3Segmenter.from_pretrained(sam3_dir, device="cpu")
    for image in images():
        expected = processor(images=image, return_tensors="pt")["pixel_values"][0]
        actual = segmenter.image_settings.pixel_values(torch.from_numpy(image), torch.device("cpu"))
        assert torch.equal(actual, expected)
