"""SamMasker on tiny random SAM-HQ and SAM 2 models (transformers), no downloads.

Each is loaded from a ``save_pretrained`` folder (type read from ``config.json``) and
compared with the transformers recipe for that model (its processor, model and
``post_process_masks``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samwsss.stages.masker import SamMasker
from samwsss.testing.sam import build_tiny_sam2, build_tiny_sam_hq, tiny_sam2_config
from tests.sam_fixtures import (
    assert_same_masks,
    make_detections,
    random_boxes,
    random_image,
    single_torch_thread,
)

BUILDERS = {"sam_hq": build_tiny_sam_hq, "sam2": build_tiny_sam2}
MODEL_CLASSES = {"sam_hq": "SamHQModel", "sam2": "Sam2Model"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    family = request.param
    directory = BUILDERS[family](tmp_path_factory.mktemp(family))
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(directory).eval()
    processor = AutoProcessor.from_pretrained(directory)
    return family, directory, model, processor


def direct_call(model, processor, image: np.ndarray, boxes: torch.Tensor, multimask_output: bool):
    inputs = processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, multimask_output=multimask_output)
    if "reshaped_input_sizes" in inputs:
        masks = processor.post_process_masks(
            output.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]
    else:
        masks = processor.post_process_masks(output.pred_masks, inputs["original_sizes"])[0]
    return masks, output.iou_scores[0]


def scene():
    sizes = [(200, 300), (97, 140), (300, 180)]
    counts = [3, 0, 4]
    images = [random_image(size, 40 + i) for i, size in enumerate(sizes)]
    dets = [
        make_detections(s, random_boxes(s, c, 50 + i))
        for i, (s, c) in enumerate(zip(sizes, counts, strict=True))
    ]
    return images, dets


def test_type_detected_from_config(variant) -> None:
    family, directory, _, _ = variant
    masker = SamMasker.from_pretrained(directory, device="cpu")
    assert masker.backend.family == family
    assert type(masker.model).__name__ == MODEL_CLASSES[family]
    assert masker.backend.geometry.mode == ("square" if family == "sam2" else "longest")


@pytest.mark.parametrize("size", [(200, 300), (97, 140), (1000, 333)])
def test_preprocessing_matches_processor(variant, size) -> None:
    _, directory, _, processor = variant
    masker = SamMasker.from_pretrained(directory, device="cpu")
    image = random_image(size, 8)
    expected = processor(images=image, return_tensors="pt")["pixel_values"]
    pixel_values, _ = masker.backend.preprocess([torch.from_numpy(image).permute(2, 0, 1)])
    torch.testing.assert_close(pixel_values, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("multimask", ["single", "best"])
def test_equals_direct_call_and_batched_equals_single(variant, multimask: str) -> None:
    _, directory, model, processor = variant
    masker = SamMasker.from_pretrained(
        directory,
        device="cpu",
        multimask=multimask,
        max_boxes_per_chunk=2,
        max_images_per_batch=4,
    )
    images, dets = scene()
    results = masker(images, dets)
    for image, det, result in zip(images, dets, results, strict=True):
        assert result.masks.shape == (len(det), *image.shape[:2])
        alone = masker([image], [det])[0]
        assert_same_masks(alone.masks, result.masks)
        if len(det) == 0:
            continue
        masks, scores = direct_call(model, processor, image, det.boxes, multimask == "best")
        best = scores.argmax(dim=1)
        rows = torch.arange(len(det))
        assert_same_masks(result.masks, masks[rows, best])
        torch.testing.assert_close(result.mask_scores, scores[rows, best], rtol=0, atol=1e-5)


def test_sam2_hub_layout_with_video_config(tmp_path: Path) -> None:
    """SAM 2.1 hub repositories carry a ``sam2_video`` config; the image model loads from it."""
    from transformers import Sam2VideoConfig

    directory = build_tiny_sam2(tmp_path / "sam2")
    config = tiny_sam2_config()
    video = Sam2VideoConfig(
        vision_config=config.vision_config,
        prompt_encoder_config=config.prompt_encoder_config.to_dict(),
        mask_decoder_config=config.mask_decoder_config.to_dict(),
    )
    video.save_pretrained(tmp_path / "video")
    (directory / "config.json").write_text((tmp_path / "video" / "config.json").read_text())
    assert json.loads((directory / "config.json").read_text())["model_type"] == "sam2_video"

    masker = SamMasker.from_pretrained(directory, device="cpu")
    assert masker.backend.family == "sam2"
    reference = SamMasker.from_pretrained(build_tiny_sam2(tmp_path / "plain"), device="cpu")
    images, dets = scene()
    for a, b in zip(masker(images, dets), reference(images, dets), strict=True):
        assert_same_masks(a.masks, b.masks)
