"""Pipeline (library API) on tiny random models: both routes, batching, inputs, presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samwsss.detections import Detections
from samwsss.pipeline import Pipeline, PipelineConfig, PipelineResult, preset
from samwsss.pipeline.batching import BatchPlan
from samwsss.stages.contracts import ImageBatch, ModelSource, Stage, Tagger, TagResult
from samwsss.stages.mapper import TagMapper
from samwsss.stages.merger import MaskMerger


@pytest.fixture(scope="module")
def config(tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path) -> PipelineConfig:
    return PipelineConfig(
        mapping="voc",
        boxer=str(tiny_gdino_small_dir),
        masker=str(tiny_sam_session_dir),
        tagger="grounding",
        box_threshold=0.2,
        text_threshold=0.0,
        batch_size=3,
    )


@pytest.fixture(scope="module")
def pipe(config: PipelineConfig) -> Pipeline:
    return Pipeline.from_config(config, device="cpu")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, size, dtype=np.uint8)
        for size in [(40, 64, 3), (72, 48, 3), (50, 50, 3), (33, 90, 3)]
    ]


def test_text_input_single_image_gives_mask_of_its_size(pipe: Pipeline) -> None:
    image = _images()[0]
    result = pipe.text_input(image, ["cat", "dog"])
    assert isinstance(result, PipelineResult)
    assert result.mask.shape == (40, 64) and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 8, 12}
    assert result.class_ids == (8, 12)
    det = result.detections
    assert det.masks is not None and det.masks.shape[1:] == (40, 64)
    assert set(det.class_ids.tolist()) <= {8, 12} and len(det) > 0
    assert det.device.type == "cpu"


def test_batched_equals_one_at_a_time(pipe: Pipeline) -> None:
    images = _images()
    labels = [["cat"], ["person", "dog"], [], ["tvmonitor"]]
    batched = pipe.text_input(images, labels)
    assert [r.mask.shape for r in batched] == [im.shape[:2] for im in images]
    for image, label, together in zip(images, labels, batched, strict=True):
        alone = pipe.text_input(image, label)
        np.testing.assert_array_equal(alone.mask, together.mask)
        torch.testing.assert_close(
            alone.detections.boxes, together.detections.boxes, atol=1e-3, rtol=1e-4
        )
    assert not batched[2].mask.any() and len(batched[2].detections) == 0


def test_inputs_paths_pil_arrays_and_indices_agree(pipe: Pipeline, tmp_path: Path) -> None:
    image = _images()[1]
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    from_array = pipe.text_input(image, ["dog"]).mask
    from_path = pipe.text_input(str(path), ["dog"]).mask
    from_pil = pipe.text_input(Image.fromarray(image), [12]).mask
    np.testing.assert_array_equal(from_array, from_path)
    np.testing.assert_array_equal(from_array, from_pil)


def test_zero_shot_with_grounding_tagger_reports_tags(pipe: Pipeline) -> None:
    results = pipe.zero_shot(_images()[:2])
    for result, image in zip(results, _images()[:2], strict=True):
        assert result.mask.shape == image.shape[:2]
        assert set(result.class_ids) == set(result.tag_sources)
        assert set(np.unique(result.mask)) - {0} <= set(result.class_ids)
        for cls, tags in result.tag_sources.items():
            assert tags == (pipe.mapping.classes[cls].name,)
            assert result.tags[tags[0]] > 0.2


class _FixedTagger:
    """A tagger that returns fixed tags (stands in for RAM in a routing test)."""

    source = ModelSource("fixed tags")
    device = torch.device("cpu")
    host_resize = None

    def __init__(self, tags: list[tuple[str, float]]) -> None:
        self.result = TagResult(
            tuple(t for t, _ in tags), tuple(range(len(tags))), tuple(p for _, p in tags)
        )

    def to(self, device: torch.device | str) -> _FixedTagger:
        return self

    def tag(self, images: ImageBatch) -> list[TagResult]:
        return [self.result for _ in range(len(images))]


def test_zero_shot_maps_tags_exactly_by_default(config: PipelineConfig) -> None:
    base = Pipeline.from_config(config, device="cpu", with_tagger=False)
    tagger = _FixedTagger([("bush", 0.9), ("tabby", 0.8), ("motorcycle", 0.7)])
    exact = Pipeline(base.mapping, base.boxer, base.masker, tagger=tagger)
    paper = Pipeline(
        base.mapping,
        base.boxer,
        base.masker,
        tagger=tagger,
        mapper=TagMapper(base.mapping, mode="paper"),
    )
    assert isinstance(tagger, Tagger) and isinstance(base.boxer, Stage)
    image = _images()[0]
    got = exact.zero_shot(image)
    assert got.class_ids == (8, 14)  # cat (tabby), motorbike (motorcycle); bush is no bus
    assert got.tag_sources == {8: ("tabby",), 14: ("motorcycle",)}
    assert got.tags == {"bush": 0.9, "tabby": 0.8, "motorcycle": 0.7}
    assert paper.zero_shot(image).class_ids == (6,)  # the authors' substring test: bus <- "bush"


def test_text_input_on_the_class_builds_the_default(
    monkeypatch: pytest.MonkeyPatch, pipe: Pipeline
) -> None:
    monkeypatch.setattr(Pipeline, "_default_instance", pipe)
    result = Pipeline.text_input(_images()[0], ["cat"])
    assert result.mask.shape == (40, 64)


def test_bad_input_is_rejected_with_a_fix(pipe: Pipeline) -> None:
    image = _images()[0]
    with pytest.raises(ValueError, match="unknown class 'kitten'.*valid names"):
        pipe.text_input(image, ["kitten"])
    with pytest.raises(ValueError, match="one list of class names per image: got 1 for 2"):
        pipe.text_input([image, image], [["cat"]])
    with pytest.raises(ValueError, match="one list of class names per image, e.g."):
        pipe.text_input([image, image], ["cat", "dog"])
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        Pipeline(pipe.mapping, pipe.boxer, pipe.masker).to("gpu")
    with pytest.raises(ValueError, match="uint8"):
        pipe.text_input(image.astype(np.float32), ["cat"])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        pipe.text_input(
            np.zeros((3, 20, 20), dtype=np.uint8).transpose(1, 2, 0)[:, :, :2].copy(), ["cat"]
        )
    no_tagger = Pipeline(pipe.mapping, pipe.boxer, pipe.masker)
    with pytest.raises(ValueError, match="no tagger"):
        no_tagger.zero_shot(image)


def test_oom_halves_the_batch(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = Pipeline.run_batch

    def flaky(
        self: Pipeline,
        images: list,
        class_ids: list | None,
        keep_masks: bool = True,
        prepared: list | None = None,
    ) -> list:
        calls.append(len(images))
        if len(images) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, images, class_ids, keep_masks, prepared)

    monkeypatch.setattr(Pipeline, "run_batch", flaky)
    monkeypatch.setattr(pipe, "plan", BatchPlan.for_device(3, "cpu"))
    results = pipe.text_input(_images()[:3], [["cat"], ["dog"], ["cat"]])
    assert len(results) == 3 and calls == [3, 1, 1, 1]
    assert pipe.batch_size == 1  # the smaller batch is kept for the next calls


def test_presets_paper_matches_the_authors_protocol() -> None:
    paper = preset("paper")
    assert (paper.boxer, paper.masker, paper.tagger) == (
        "grounding-dino-tiny",
        "sam-vit-huge",
        "ram-swin-large-14m",
    )
    assert (paper.box_threshold, paper.text_threshold, paper.prompt_mode) == (
        0.3,
        0.25,
        "per-class",
    )
    assert (paper.merge_rule, paper.tag_match, paper.multimask, paper.nms_iou) == (
        "paper",
        "paper",
        "single",
        None,
    )
    assert (paper.clip_boxes, paper.image_resize, paper.dtype) == (False, "pil", "float32")
    default = preset("default")
    assert (default.merge_rule, default.tag_match, default.tagger) == (
        "score",
        "exact",
        "ram-plus-swin-large-14m",
    )
    with pytest.raises(ValueError, match="unknown pipeline setting"):
        preset("default", box_thresh=0.2)
    with pytest.raises(ValueError, match="merge_rule must be one of"):
        preset("default", merge_rule="largest")


def test_paper_preset_merge_on_hand_built_overlap() -> None:
    paper = preset("paper")
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :, :3] = True  # class 15 (person), high score
    masks[1, :, 1:] = True  # class 8 (cat), low score
    det = Detections(
        image_size=(4, 4),
        boxes=torch.tensor([[0, 0, 3, 4], [1, 0, 4, 4]], dtype=torch.float32),
        box_scores=torch.tensor([0.9, 0.31]),
        class_ids=torch.tensor([15, 8]),
        prompts=("person", "cat"),
        masks=masks,
        mask_scores=torch.tensor([1.0, 1.0]),
    )
    by_index = MaskMerger(paper.merge_rule).merge(det).numpy()
    assert (by_index[:, 1:3] == 15).all()  # higher class index wins, scores ignored
    masks_swapped = det.with_masks(masks.flip(0), det.mask_scores)
    assert (MaskMerger(paper.merge_rule).merge(masks_swapped).numpy()[:, 1:3] == 15).all()
    by_score = MaskMerger(preset("default").merge_rule).merge(det).numpy()
    assert (by_score[:, 1:3] == 15).all() and (by_score[:, 3] == 8).all()


def test_masks_can_stay_on_the_device(pipe: Pipeline) -> None:
    image = _images()[0]
    full = pipe.run_arrays([image], [(8,)])[0]
    light = pipe.run_arrays([image], [(8,)], keep_masks=False)[0]
    assert light.detections.masks is None and full.detections.masks is not None
    np.testing.assert_array_equal(light.mask, full.mask)
    torch.testing.assert_close(light.detections.boxes, full.detections.boxes)
