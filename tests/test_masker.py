"""SamMasker on a tiny random transformers SAM saved to disk (no downloads).

Random weights give arbitrary masks, so what is checked is the plumbing against the
transformers reference (SamProcessor + SamModel + post_process_masks): exactness of the
batched path, original-resolution masks, one encoder pass per image, box chunking, the
multimask rule and input validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samwsss import registry
from samwsss.detections import Detections
from samwsss.stages.masker import SamMasker
from samwsss.testing.sam import build_tiny_sam
from tests.sam_fixtures import (
    assert_same_masks,
    make_detections,
    random_boxes,
    random_image,
    single_torch_thread,
)

SIZES = [(200, 300), (97, 140), (300, 180), (256, 256), (60, 40)]
COUNTS = [2, 0, 3, 1, 4]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam(tmp_path_factory.mktemp("tiny_sam"))


@pytest.fixture(scope="module")
def masker(sam_dir: Path) -> SamMasker:
    return SamMasker.from_pretrained(sam_dir, device="cpu", max_images_per_batch=4)


@pytest.fixture(scope="module")
def reference(sam_dir: Path):
    from transformers import SamModel, SamProcessor

    return SamModel.from_pretrained(sam_dir).eval(), SamProcessor.from_pretrained(sam_dir)


def batch(sizes=SIZES, counts=COUNTS, seed=0):
    images = [random_image(size, seed + i) for i, size in enumerate(sizes)]
    dets = [
        make_detections(size, random_boxes(size, count, seed + 100 + i))
        for i, (size, count) in enumerate(zip(sizes, counts, strict=True))
    ]
    return images, dets


def direct_call(reference, image: np.ndarray, boxes: torch.Tensor, multimask_output: bool):
    """The transformers recipe: processor -> model -> post_process_masks."""
    model, processor = reference
    inputs = processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, multimask_output=multimask_output)
    masks = processor.post_process_masks(
        output.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0]
    return masks, output.iou_scores[0]


def test_encoder_batch_default_depends_on_device(masker: SamMasker) -> None:
    assert SamMasker(masker.backend).max_images_per_batch == 1  # CPU: no gain, only memory
    assert SamMasker(masker.backend, max_images_per_batch=3).max_images_per_batch == 3


def test_loads_local_directory_as_transformers_sam(masker: SamMasker) -> None:
    assert type(masker.model).__name__ == "SamModel"
    assert masker.backend.family == "sam"
    assert masker.backend.geometry.mode == "longest"
    assert masker.backend.geometry.pad_size == (256, 256)
    assert masker.device == torch.device("cpu")
    assert masker.compute_dtype == torch.float32


def test_registry_names_and_weights_override(sam_dir: Path) -> None:
    models = registry.list_models("masker")
    expected = {
        "sam-vit-huge": "facebook/sam-vit-huge",
        "sam-vit-large": "facebook/sam-vit-large",
        "sam-vit-base": "facebook/sam-vit-base",
        "sam-hq-vit-huge": "syscv-community/sam-hq-vit-huge",
        "sam2-hiera-large": "facebook/sam2.1-hiera-large",
    }
    for name, weights in expected.items():
        assert models[name].weights == weights
    assert models["sam-vit-huge-official"].weights.endswith("/sam_vit_h_4b8939.pth")
    built = registry.create(
        "masker", "sam-vit-base", weights=str(sam_dir), device="cpu", multimask="best"
    )
    assert isinstance(built, SamMasker) and built.multimask == "best"


@pytest.mark.parametrize(
    "size", [(200, 300), (97, 140), (300, 180), (256, 256), (1000, 333), (31, 17)]
)
def test_preprocessing_matches_processor(masker: SamMasker, reference, size) -> None:
    _, processor = reference
    image = random_image(size, 7)
    expected = processor(images=image, return_tensors="pt")
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    pixel_values, resized = masker.backend.preprocess([tensor])
    assert resized == [tuple(expected["reshaped_input_sizes"][0].tolist())]
    torch.testing.assert_close(pixel_values, expected["pixel_values"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("multimask", ["single", "best"])
def test_equals_direct_transformers_call(sam_dir: Path, reference, multimask: str) -> None:
    masker = SamMasker.from_pretrained(
        sam_dir, multimask=multimask, device="cpu", max_images_per_batch=4
    )
    images, dets = batch()
    results = masker(images, dets)
    for image, det, result in zip(images, dets, results, strict=True):
        if len(det) == 0:
            continue
        masks, scores = direct_call(reference, image, det.boxes, multimask == "best")
        best = scores.argmax(dim=1)
        rows = torch.arange(len(det))
        assert_same_masks(result.masks, masks[rows, best])
        torch.testing.assert_close(result.mask_scores, scores[rows, best], rtol=0, atol=1e-5)


def test_best_is_the_highest_predicted_iou_of_three(sam_dir: Path, reference) -> None:
    masker = SamMasker.from_pretrained(sam_dir, multimask="best", device="cpu")
    size = (200, 300)
    image = random_image(size, 3)
    det = make_detections(size, random_boxes(size, 6, 3))
    result = masker([image], [det])[0]
    masks, scores = direct_call(reference, image, det.boxes, multimask_output=True)
    assert scores.shape == (6, 3)
    torch.testing.assert_close(result.mask_scores, scores.max(dim=1).values, rtol=0, atol=1e-5)
    assert (scores.argmax(dim=1) != 0).any()  # the choice is not always the first output
    for i in range(6):
        choice = int(scores[i].argmax())
        assert_same_masks(result.masks[i], masks[i, choice])


def test_batched_equals_one_at_a_time(masker: SamMasker) -> None:
    images, dets = batch()
    batched = SamMasker(masker.backend, max_images_per_batch=8)(images, dets)
    for image, det, together in zip(images, dets, batched, strict=True):
        alone = masker([image], [det])[0]
        assert_same_masks(together.masks, alone.masks)
        torch.testing.assert_close(together.mask_scores, alone.mask_scores, rtol=0, atol=1e-5)


def test_masks_at_original_resolution_and_fields_kept(masker: SamMasker) -> None:
    images, dets = batch()
    results = masker(images, dets)
    assert len(results) == len(dets)
    for det, result, (height, width) in zip(dets, results, SIZES, strict=True):
        assert result.masks.shape == (len(det), height, width)
        assert result.masks.dtype == torch.bool
        assert result.mask_scores.shape == (len(det),)
        assert result.mask_scores.dtype == torch.float32
        assert torch.equal(result.boxes, det.boxes)
        assert torch.equal(result.class_ids, det.class_ids)
        assert result.prompts == det.prompts
    nonempty = torch.cat([r.masks.flatten() for r in results if len(r)])
    assert 0 < nonempty.float().mean() < 1  # the random model gives non-trivial masks


def test_each_image_embedded_once(masker: SamMasker) -> None:
    sizes = [(120, 90), (80, 100), (64, 64), (90, 120), (100, 50)]
    counts = [12, 1, 0, 7, 3]
    images, dets = batch(sizes, counts, seed=11)
    seen: list[int] = []
    hook = masker.backend.image_encoder.register_forward_hook(
        lambda module, args, output: seen.append(int(args[0].shape[0]))
    )
    try:
        SamMasker(masker.backend, max_images_per_batch=2, max_boxes_per_chunk=5)(images, dets)
    finally:
        hook.remove()
    assert seen == [2, 2]  # four images with boxes, two per encoder batch; the empty one skipped


def test_chunked_boxes_equal_unchunked(masker: SamMasker) -> None:
    sizes = [(150, 200), (180, 120)]
    images, dets = batch(sizes, [23, 9], seed=5)
    decoder_batches: list[int] = []
    hook = masker.model.mask_decoder.register_forward_hook(
        lambda module, args, kwargs, output: decoder_batches.append(
            int(kwargs["image_embeddings"].shape[0])
        ),
        with_kwargs=True,
    )
    try:
        chunked = SamMasker(masker.backend, max_boxes_per_chunk=4)(images, dets)
    finally:
        hook.remove()
    assert max(decoder_batches) <= 4 and sum(decoder_batches) == 32
    whole = SamMasker(masker.backend, max_boxes_per_chunk=1000)(images, dets)
    for a, b in zip(chunked, whole, strict=True):
        assert_same_masks(a.masks, b.masks)
        torch.testing.assert_close(a.mask_scores, b.mask_scores, rtol=0, atol=1e-5)


def test_no_boxes_anywhere_skips_the_model(masker: SamMasker) -> None:
    images = [random_image((40, 70), 1), random_image((33, 20), 2)]
    dets = [Detections.empty((40, 70)), Detections.empty((33, 20))]
    seen: list[int] = []
    hook = masker.backend.image_encoder.register_forward_hook(lambda *args: seen.append(1))
    try:
        results = masker(images, dets)
    finally:
        hook.remove()
    assert seen == []
    assert [tuple(r.masks.shape) for r in results] == [(0, 40, 70), (0, 33, 20)]
    assert all(r.mask_scores.shape == (0,) for r in results)
    assert masker([], []) == []


def test_torch_tensor_images_accepted(masker: SamMasker) -> None:
    images, dets = batch(SIZES[:2], COUNTS[:2])
    from_numpy = masker(images, dets)
    from_tensor = masker([torch.from_numpy(image) for image in images], dets)
    for a, b in zip(from_numpy, from_tensor, strict=True):
        assert_same_masks(a.masks, b.masks)


def test_bfloat16_autocast_runs_close_to_float32(sam_dir: Path) -> None:
    images, dets = batch(SIZES[:1], [3])
    full = SamMasker.from_pretrained(sam_dir, device="cpu")(images, dets)[0]
    half = SamMasker.from_pretrained(sam_dir, device="cpu", dtype="bf16")
    assert half.compute_dtype == torch.bfloat16
    result = half(images, dets)[0]
    assert result.masks.shape == full.masks.shape
    agreement = (result.masks == full.masks).float().mean()
    assert agreement > 0.9
    torch.testing.assert_close(result.mask_scores, full.mask_scores, rtol=0, atol=0.05)


# -- validation -------------------------------------------------------------------------
def test_mismatched_lengths_raise(masker: SamMasker) -> None:
    images, dets = batch(SIZES[:2], COUNTS[:2])
    with pytest.raises(ValueError, match="2 images but 1 detections"):
        masker(images, dets[:1])


def test_bad_images_raise(masker: SamMasker) -> None:
    det = make_detections((20, 30), random_boxes((20, 30), 1, 0))
    with pytest.raises(ValueError, match=r"images\[0\].*uint8"):
        masker([np.zeros((20, 30, 3), dtype=np.float32)], [det])
    with pytest.raises(ValueError, match=r"images\[0\].*\(H, W, 3\)"):
        masker([np.zeros((20, 30), dtype=np.uint8)], [det])
    with pytest.raises(ValueError, match="numpy array"):
        masker(["image.jpg"], [det])
    with pytest.raises(ValueError, match="wrap it in a list"):
        masker(np.zeros((20, 30, 3), dtype=np.uint8), [det])


def test_size_mismatch_raises(masker: SamMasker) -> None:
    det = make_detections((20, 30), random_boxes((20, 30), 1, 0))
    with pytest.raises(ValueError, match=r"image_size is \(20, 30\) but images\[0\] is 30x20"):
        masker([np.zeros((30, 20, 3), dtype=np.uint8)], [det])


def test_non_detections_raise(masker: SamMasker) -> None:
    with pytest.raises(
        ValueError, match=r"detections\[0\] must be a samwsss.detections.Detections"
    ):
        masker([np.zeros((20, 30, 3), dtype=np.uint8)], [{"boxes": []}])


def test_bad_options_raise(sam_dir: Path, masker: SamMasker) -> None:
    with pytest.raises(ValueError, match="multimask must be one of single, best; got"):
        SamMasker.from_pretrained(sam_dir, multimask="all")
    with pytest.raises(ValueError, match="max_boxes_per_chunk must be an integer >= 1"):
        SamMasker(masker.backend, max_boxes_per_chunk=0)
    with pytest.raises(ValueError, match="max_images_per_batch must be an integer >= 1"):
        SamMasker(masker.backend, max_images_per_batch=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype must be"):
        SamMasker(masker.backend, dtype="int8")
    with pytest.raises(ValueError, match="model_type='vit_h' only applies to official"):
        SamMasker.from_pretrained(sam_dir, model_type="vit_h")


def test_bad_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without config.json"):
        SamMasker.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        SamMasker.from_pretrained(tmp_path / "missing.pth")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="'bert' model"):
        SamMasker.from_pretrained(tmp_path)


def test_upscaling_in_pieces_under_a_pixel_budget_gives_the_same_masks(
    monkeypatch: pytest.MonkeyPatch, tiny_masker_for_budget
) -> None:
    import samwsss.stages.masker as masker_module
    from tests.sam_fixtures import make_detections, random_boxes, random_image

    masker = tiny_masker_for_budget
    image = random_image((90, 70), seed=3)
    det = make_detections((90, 70), random_boxes((90, 70), 5, seed=4))
    whole = masker([image], [det])[0]
    monkeypatch.setattr(masker_module, "UPSCALE_BUDGET_PIXELS", 2 * 90 * 70)  # two masks at a time
    pieces = masker([image], [det])[0]
    assert torch.equal(whole.masks, pieces.masks)
    torch.testing.assert_close(whole.mask_scores, pieces.mask_scores)


@pytest.fixture(scope="module")
def tiny_masker_for_budget(tmp_path_factory: pytest.TempPathFactory):
    from samwsss.stages.masker import SamMasker
    from samwsss.testing.sam import build_tiny_sam

    return SamMasker.from_pretrained(
        build_tiny_sam(tmp_path_factory.mktemp("sam_budget")), device="cpu"
    )
