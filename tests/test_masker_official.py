"""The official-checkpoint backend: Meta's segment-anything ``Sam`` from a ``.pth`` state dict.

A tiny ``Sam`` built from ``segment_anything.modeling`` is saved like the released files
and loaded through ``SamMasker.from_pretrained(path)``; results are compared with the
package's own ``SamPredictor``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything")

from segment_anything import SamPredictor, sam_model_registry

from samwsss import registry
from samwsss.stages.masker import SamMasker
from samwsss.stages.masker_official import (
    RELEASED_SPECS,
    OfficialSamSpec,
    infer_model_type,
    load_official_state_dict,
    resolve_official_checkpoint,
)
from samwsss.stages.masker_transforms import resize_uint8
from samwsss.testing.sam import (
    TINY_OFFICIAL_SPEC,
    build_official_sam_module,
    build_tiny_official_sam,
)
from tests.sam_fixtures import (
    assert_same_masks,
    make_detections,
    random_boxes,
    random_image,
    single_torch_thread,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_official_sam(tmp_path_factory.mktemp("official") / "sam_tiny.pth")


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> SamPredictor:
    model = build_official_sam_module(TINY_OFFICIAL_SPEC)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return SamPredictor(model.eval())


def predictor_call(
    predictor: SamPredictor, image: np.ndarray, boxes: torch.Tensor, multimask: bool
):
    """SamPredictor on an image already resized the way the masker resizes it."""
    height, width = image.shape[:2]
    size = predictor.transform.get_preprocess_shape(
        height, width, predictor.model.image_encoder.img_size
    )
    resized = resize_uint8(torch.from_numpy(image).permute(2, 0, 1), size)
    predictor.set_torch_image(resized[None], (height, width))
    with torch.no_grad():
        masks, scores, _ = predictor.predict_torch(
            None,
            None,
            boxes=predictor.transform.apply_boxes_torch(boxes, (height, width)),
            multimask_output=multimask,
        )
    return masks, scores


def test_spec_read_off_the_state_dict(checkpoint: Path) -> None:
    spec = OfficialSamSpec.from_state_dict(load_official_state_dict(checkpoint))
    assert spec == OfficialSamSpec(**TINY_OFFICIAL_SPEC)  # type: ignore[arg-type]
    assert spec.released_type() is None


@pytest.mark.parametrize("model_type", ["vit_h", "vit_l", "vit_b"])
def test_released_specs_match_the_official_builders(model_type: str) -> None:
    with torch.device("meta"):
        state = sam_model_registry[model_type]().state_dict()
    assert OfficialSamSpec.from_state_dict(state) == RELEASED_SPECS[model_type]
    assert infer_model_type(state) == model_type


def test_loads_through_from_pretrained(checkpoint: Path) -> None:
    masker = SamMasker.from_pretrained(checkpoint, decoder_num_heads=8, device="cpu")
    assert masker.backend.family == "official"
    assert type(masker.model).__name__ == "Sam"
    assert masker.backend.geometry.pad_size == (256, 256)


@pytest.mark.parametrize("multimask", ["single", "best"])
def test_equals_sam_predictor(checkpoint: Path, predictor: SamPredictor, multimask: str) -> None:
    masker = SamMasker.from_pretrained(
        checkpoint, multimask=multimask, device="cpu", max_images_per_batch=4, decoder_num_heads=8
    )
    sizes = [(200, 300), (97, 140), (300, 180)]
    counts = [3, 0, 5]
    images = [random_image(size, i) for i, size in enumerate(sizes)]
    dets = [
        make_detections(s, random_boxes(s, c, 10 + i))
        for i, (s, c) in enumerate(zip(sizes, counts, strict=True))
    ]
    results = masker(images, dets)
    for image, det, result in zip(images, dets, results, strict=True):
        assert result.masks.shape == (len(det), *image.shape[:2])
        if len(det) == 0:
            continue
        masks, scores = predictor_call(predictor, image, det.boxes, multimask == "best")
        best = scores.argmax(dim=1)
        rows = torch.arange(len(det))
        assert_same_masks(result.masks, masks[rows, best])
        torch.testing.assert_close(result.mask_scores, scores[rows, best], rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(256, 192), (192, 256), (256, 256)])
def test_equals_set_image_when_no_resize_is_needed(
    checkpoint: Path, predictor: SamPredictor, size: tuple[int, int]
) -> None:
    masker = SamMasker.from_pretrained(checkpoint, decoder_num_heads=8, device="cpu")
    image = random_image(size, 4)
    det = make_detections(size, random_boxes(size, 4, 4))
    result = masker([image], [det])[0]
    predictor.set_image(image)
    with torch.no_grad():
        masks, scores, _ = predictor.predict_torch(
            None,
            None,
            boxes=predictor.transform.apply_boxes_torch(det.boxes, size),
            multimask_output=False,
        )
    assert_same_masks(result.masks, masks[:, 0])
    torch.testing.assert_close(result.mask_scores, scores[:, 0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(200, 300), (1000, 333), (97, 140)])
def test_torch_resize_is_within_one_level_of_the_pil_resize(predictor: SamPredictor, size) -> None:
    image = random_image(size, 9)
    pil = predictor.transform.apply_image(image)
    ours = (
        resize_uint8(torch.from_numpy(image).permute(2, 0, 1), pil.shape[:2])
        .permute(1, 2, 0)
        .numpy()
    )
    difference = np.abs(pil.astype(np.int16) - ours.astype(np.int16))
    assert difference.max() <= 1


def test_batched_equals_one_at_a_time(checkpoint: Path) -> None:
    masker = SamMasker.from_pretrained(
        checkpoint, device="cpu", max_boxes_per_chunk=3, max_images_per_batch=4, decoder_num_heads=8
    )
    sizes = [(120, 90), (64, 64), (90, 120)]
    images = [random_image(size, 20 + i) for i, size in enumerate(sizes)]
    dets = [
        make_detections(s, random_boxes(s, c, 30 + i))
        for i, (s, c) in enumerate(zip(sizes, [4, 0, 7], strict=True))
    ]
    together = masker(images, dets)
    for image, det, result in zip(images, dets, together, strict=True):
        alone = masker([image], [det])[0]
        assert_same_masks(result.masks, alone.masks)
        torch.testing.assert_close(result.mask_scores, alone.mask_scores, rtol=0, atol=1e-5)


def test_model_type_contradicting_the_weights_raises(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="model_type 'vit_h' does not match sam_tiny.pth"):
        SamMasker.from_pretrained(checkpoint, decoder_num_heads=8, model_type="vit_h")
    with pytest.raises(ValueError, match="unknown segment-anything model type 'vit_x'"):
        SamMasker.from_pretrained(checkpoint, decoder_num_heads=8, model_type="vit_x")


def test_not_a_sam_checkpoint_raises(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ValueError, match="not an official segment-anything SAM state dict"):
        SamMasker.from_pretrained(other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a SAM checkpoint: torch.load failed"):
        SamMasker.from_pretrained(garbage)


def test_missing_package_says_how_to_install(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    with pytest.raises(ImportError, match=r"pip install 'samwsss\[segment-anything\]'"):
        SamMasker.from_pretrained(checkpoint, decoder_num_heads=8)


def test_a_custom_size_needs_the_decoder_head_count(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="pass decoder_num_heads"):
        SamMasker.from_pretrained(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="only applies"):
        SamMasker.from_pretrained("facebook/sam-vit-base", decoder_num_heads=8)


def test_registered_official_names() -> None:
    models = registry.list_models("masker")
    assert models["sam-vit-huge-official"].weights == (
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    )
    assert models["sam-vit-large-official"].weights.endswith("sam_vit_l_0b3195.pth")
    assert models["sam-vit-base-official"].weights.endswith("sam_vit_b_01ec64.pth")


def test_released_names_download_once_into_the_torch_hub_cache(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads: list[str] = []

    def fake_download(url: str, destination: str, progress: bool = True) -> None:
        downloads.append(url)
        shutil.copy(checkpoint, destination)  # stands in for the released file

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.chdir(tmp_path)
    path = resolve_official_checkpoint("sam_vit_b_01ec64.pth")
    assert path == tmp_path / "hub" / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert downloads == ["https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"]
    masker = SamMasker.from_pretrained(
        "sam-vit-base-official", device="cpu", decoder_num_heads=8
    )  # cached now
    assert downloads == ["https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"]
    assert masker.backend.family == "official"


def test_transformers_options_rejected_for_official_checkpoints(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="apply to transformers checkpoints only"):
        SamMasker.from_pretrained(checkpoint, decoder_num_heads=8, revision="main")


@pytest.mark.parametrize("size", [(200, 300), (97, 140), (300, 181), (1000, 333)])
def test_pil_resize_with_unclipped_boxes_equals_set_image_bit_for_bit(
    checkpoint: Path, predictor: SamPredictor, size: tuple[int, int]
) -> None:
    """The paper preset's masker: SamPredictor.set_image (PIL bilinear) + predict_torch
    with the detector's boxes as they are, some past the image border."""
    from dataclasses import replace

    masker = SamMasker.from_pretrained(
        checkpoint, decoder_num_heads=8, device="cpu", image_resize="pil"
    )
    height, width = size
    image = random_image(size, 7)
    edges = torch.tensor(
        [
            [-5.5, -3.25, 0.4 * width, 0.5 * height],
            [0.6 * width, 0.3 * height, width + 7.5, height + 4],
        ]
    )  # past the border by a few pixels, as real Grounding DINO boxes often are
    overshoot = torch.cat([random_boxes(size, 3, 11), edges])
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    det = replace(
        make_detections(size, torch.minimum(overshoot.clamp(min=0), limit)),
        prompt_boxes=overshoot,
    )
    assert bool((overshoot < 0).any() | (overshoot > limit).any())
    result = masker([image], [det])[0]
    predictor.set_image(image)
    with torch.no_grad():
        masks, scores, _ = predictor.predict_torch(
            None,
            None,
            boxes=predictor.transform.apply_boxes_torch(overshoot, size),
            multimask_output=False,
        )
    assert torch.equal(result.masks, masks[:, 0]), int((result.masks != masks[:, 0]).sum())
    torch.testing.assert_close(result.mask_scores, scores[:, 0], rtol=0, atol=1e-6)
    clipped = masker([image], [replace(det, prompt_boxes=None)])[0]
    assert not torch.equal(clipped.masks, result.masks)  # the unclipped box reached SAM
