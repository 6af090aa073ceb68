"""GroundingDinoBoxer on a tiny random Grounding DINO saved to disk (no downloads).

Random weights give arbitrary scores, so thresholds are set low to get boxes; what is
checked is the plumbing: batching exactness, coordinates, the threshold and class rules.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samwsss import registry
from samwsss.detections import Detections
from samwsss.stages.boxer import GroundingDinoBoxer, cxcywh_to_pixels
from samwsss.stages.boxer_preprocess import PreprocessSettings, preprocess_image, resized_size
from samwsss.testing.gdino import REAL_PROCESSOR_SETTINGS, build_tiny_grounding_dino

LOW = 0.05  # box threshold that keeps some of the random model's 20 queries


@pytest.fixture(scope="session")
def tiny_gdino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("tiny_gdino"))


@pytest.fixture(scope="session")
def small_gdino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a 128/213 resize (vs 800/1333): ~15x faster forwards."""
    return build_tiny_grounding_dino(
        tmp_path_factory.mktemp("small_gdino"), shortest_edge=128, longest_edge=213
    )


@pytest.fixture(scope="session")
def real_boxer(tiny_gdino_dir: Path) -> GroundingDinoBoxer:
    return GroundingDinoBoxer.from_pretrained(
        str(tiny_gdino_dir), box_threshold=LOW, text_threshold=0.0
    )


@pytest.fixture(scope="session")
def boxer(small_gdino_dir: Path) -> GroundingDinoBoxer:
    return GroundingDinoBoxer.from_pretrained(
        str(small_gdino_dir), box_threshold=LOW, text_threshold=0.0
    )


@pytest.fixture()
def fresh_boxer(boxer: GroundingDinoBoxer) -> GroundingDinoBoxer:
    """The session boxer's model with default-free settings tests may change."""
    return GroundingDinoBoxer(boxer.model, boxer.processor, box_threshold=LOW, text_threshold=0.0)


def _image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(base.repeat(4, 0).repeat(4, 1)[:height, :width])


def _assert_same(a: Detections, b: Detections, atol: float = 1e-4) -> None:
    assert a.image_size == b.image_size
    assert a.prompts == b.prompts
    assert torch.equal(a.class_ids, b.class_ids)
    torch.testing.assert_close(a.boxes, b.boxes, atol=atol, rtol=0)
    torch.testing.assert_close(a.box_scores, b.box_scores, atol=1e-5, rtol=0)


# -- the saved tiny model --------------------------------------------------------------
def test_saved_processor_has_the_real_checkpoint_settings(tiny_gdino_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_gdino_dir)
    image_processor = processor.image_processor
    assert image_processor.size.shortest_edge == 800
    assert image_processor.size.longest_edge == 1333
    assert list(image_processor.image_mean) == [0.485, 0.456, 0.406]
    assert list(image_processor.image_std) == [0.229, 0.224, 0.225]
    assert image_processor.rescale_factor == pytest.approx(1 / 255)
    assert int(image_processor.resample) == REAL_PROCESSOR_SETTINGS["resample"]
    settings = PreprocessSettings.from_image_processor(image_processor)
    assert settings == PreprocessSettings()  # the paper's defaults
    # the ids transformers' Grounding DINO hard-codes as phrase delimiters
    ids = processor.tokenizer("cat. dog?")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and 1012 in ids and 1029 in ids


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    first = build_tiny_grounding_dino(tmp_path / "a", seed=3)
    second = build_tiny_grounding_dino(tmp_path / "b", seed=3)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()


# -- preprocessing -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((480, 640), (800, 1066)),
        ((640, 480), (1066, 800)),
        ((500, 2000), (333, 1333)),
        ((800, 800), (800, 800)),
    ],
)
def test_resized_size_follows_short_800_long_1333(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resized_size(*size, 800, 1333) == expected


@pytest.mark.parametrize("size", [(48, 64), (70, 40), (1100, 1500), (300, 1400)])
def test_torch_preprocessing_matches_the_processor(
    real_boxer: GroundingDinoBoxer, boxer: GroundingDinoBoxer, size: tuple[int, int]
) -> None:
    image = _image(*size, seed=size[0])
    for stage in (real_boxer, boxer):
        processor = stage.processor.image_processor
        expected = processor(images=image, return_tensors="pt")["pixel_values"][0]
        got = preprocess_image(torch.from_numpy(image), stage.preprocess_settings)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert boxer.preprocess_settings.output_size(
        *size
    ) != real_boxer.preprocess_settings.output_size(*size)


# -- batching ----------------------------------------------------------------------------
def test_batched_equals_one_at_a_time(fresh_boxer: GroundingDinoBoxer) -> None:
    # 48x64 and 60x80 share the resized size 800x1066 (one bucket, two images, text of
    # different lengths padded together); 70x40 is portrait; one image has no query.
    images = [_image(48, 64, 0), _image(70, 40, 1), _image(60, 80, 2), _image(50, 50, 3)]
    queries = [
        [(1, "cat"), (2, "Wild Bird")],
        [(3, "person.")],
        [(2, "dog"), (1, "cat"), (4, "potted plant")],
        [],
    ]
    fresh_boxer.max_batch_rows = 4  # forces a chunk holding rows of two images
    batched = fresh_boxer(images, queries)
    assert [len(d) for d in batched][3] == 0
    assert sum(len(d) for d in batched) > 0
    for image, image_queries, result in zip(images, queries, batched, strict=True):
        singles = [fresh_boxer([image], [[query]])[0] for query in image_queries]
        expected = Detections.cat(singles) if singles else Detections.empty(image.shape[:2])
        _assert_same(result, expected)
    fresh_boxer.share_backbone = False
    for a, b in zip(batched, fresh_boxer(images, queries), strict=True):
        _assert_same(a, b, atol=1e-5)


def test_torch_and_numpy_images_give_the_same_result(fresh_boxer: GroundingDinoBoxer) -> None:
    image = _image(40, 52, 5)
    from_numpy = fresh_boxer([image], [[(1, "cat")]])[0]
    from_torch = fresh_boxer([torch.from_numpy(image)], [[(1, "cat")]])[0]
    _assert_same(from_numpy, from_torch, atol=1e-6)


def test_no_queries_and_no_images(fresh_boxer: GroundingDinoBoxer) -> None:
    assert fresh_boxer([], []) == []
    results = fresh_boxer([_image(20, 30, 0), _image(10, 10, 1)], [[], []])
    assert [(len(d), d.image_size) for d in results] == [(0, (20, 30)), (0, (10, 10))]


# -- against transformers' own path --------------------------------------------------------
@pytest.mark.parametrize("size", ["small", "real"])
def test_per_class_equals_a_direct_processor_forward(
    fresh_boxer: GroundingDinoBoxer, real_boxer: GroundingDinoBoxer, size: str
) -> None:
    if size == "real":  # the 800/1333 resize: one image, one prompt (slow on CPU)
        stage = real_boxer
        images, queries = [_image(45, 90, 7)], [[(1, "Cat")]]
    else:
        stage = fresh_boxer
        images = [_image(45, 90, 7), _image(90, 45, 8)]
        queries = [[(1, "Cat"), (5, "wild bird")], [(2, "dog")]]
    processor, model = stage.processor, stage.model
    results = stage(images, queries)
    for image, image_queries, result in zip(images, queries, results, strict=True):
        boxes, scores = [], []
        for _, prompt in image_queries:
            caption = prompt.lower().strip() + "."
            inputs = processor(images=image, text=caption, return_tensors="pt")
            with torch.inference_mode():
                outputs = model(**inputs)
            post = processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=LOW,
                text_threshold=0.0,
                target_sizes=[image.shape[:2]],
            )[0]
            boxes.append(post["boxes"])
            scores.append(post["scores"])
        height, width = image.shape[:2]
        expected = torch.cat(boxes)
        expected[:, 0::2] = expected[:, 0::2].clamp(0, width)
        expected[:, 1::2] = expected[:, 1::2].clamp(0, height)
        torch.testing.assert_close(result.boxes, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(result.box_scores, torch.cat(scores), atol=1e-5, rtol=0)


def test_boxes_are_original_pixels_from_raw_pred_boxes(fresh_boxer: GroundingDinoBoxer) -> None:
    processor, model = fresh_boxer.processor, fresh_boxer.model
    clipped_somewhere = False
    for height, width in [(37, 101), (120, 33)]:
        image = _image(height, width, height)
        inputs = processor(images=image, text="cat.", return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs)
        probs = outputs.logits[0].sigmoid()
        keep = probs.max(dim=1).values > LOW
        cx, cy, w, h = outputs.pred_boxes[0][keep].unbind(1)
        manual = torch.stack(
            [
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            ],
            1,
        )
        clipped = manual.clone()
        clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
        clipped_somewhere |= bool((clipped != manual).any())
        result = fresh_boxer([image], [[(1, "cat")]])[0]
        assert result.image_size == (height, width)
        torch.testing.assert_close(result.boxes, clipped, atol=1e-4, rtol=0)
        assert (
            float(result.boxes[:, 0::2].max()) <= width
            and float(result.boxes[:, 1::2].max()) <= height
        )
        assert float(result.boxes.min()) >= 0
    assert clipped_somewhere, "the random model should predict some box over the border"


def test_cxcywh_to_pixels_by_hand() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.4, 0.4]])
    got = cxcywh_to_pixels(boxes, height=100, width=200)
    expected = torch.tensor([[50.0, 25.0, 150.0, 75.0], [140.0, 0.0, 200.0, 30.0]])
    torch.testing.assert_close(got, expected)


# -- decoding rules on crafted outputs ------------------------------------------------------
class _CraftedModel(torch.nn.Module):
    """Stands in for Grounding DINO: returns logits/boxes from ``table[caption_ids]``."""

    def __init__(self, table: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.table = table
        self.config = SimpleNamespace(max_text_len=32)
        self.calls = 0

    def forward(self, pixel_values, input_ids, token_type_ids, attention_mask, pixel_mask):
        self.calls += 1
        logits, boxes = [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            real = tuple(i for i, m in zip(ids, mask, strict=True) if m)
            row_logits, row_boxes = self.table[real]
            full = torch.full((row_logits.shape[0], 32), float("-inf"))
            full[:, : row_logits.shape[1]] = row_logits
            logits.append(full)
            boxes.append(row_boxes)
        return SimpleNamespace(logits=torch.stack(logits), pred_boxes=torch.stack(boxes))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p))) if p > 0 else -30.0


def _crafted_boxer(
    boxer: GroundingDinoBoxer, caption: str, probs: list[list[float]], **kwargs
) -> GroundingDinoBoxer:
    ids = tuple(boxer.tokenizer(caption)["input_ids"])
    logits = torch.tensor([[_logit(p) for p in row] for row in probs])
    assert logits.shape[1] == len(ids), (caption, ids)
    boxes = kwargs.pop("boxes", None)
    if boxes is None:
        boxes = torch.tensor([[0.1 + 0.1 * i, 0.5, 0.1, 0.1] for i in range(len(probs))])
    model = _CraftedModel({ids: (logits, boxes)})
    return GroundingDinoBoxer(model, boxer.processor, **kwargs)


def test_threshold_rule_is_strict_max_over_all_real_tokens(boxer: GroundingDinoBoxer) -> None:
    # tokens: [CLS] cat . [SEP]
    probs = [
        [0.1, 0.5, 0.1, 0.1],  # max exactly at the threshold: dropped (strict >)
        [0.1, 0.51, 0.1, 0.1],  # kept, score 0.51
        [0.1, 0.1, 0.9, 0.1],  # max on "." : kept (the paper's max over all tokens)
        [0.7, 0.1, 0.1, 0.1],  # max on [CLS]: kept
        [0.2, 0.2, 0.2, 0.2],  # dropped
    ]
    crafted = _crafted_boxer(boxer, "cat.", probs, box_threshold=0.5, text_threshold=0.95)
    result = crafted([_image(10, 20, 0)], [[(7, "cat")]])[0]
    torch.testing.assert_close(result.box_scores, torch.tensor([0.51, 0.9, 0.7]), atol=1e-6, rtol=0)
    assert result.class_ids.tolist() == [7, 7, 7]  # text_threshold changes nothing per class
    assert result.prompts == ("cat.",) * 3
    torch.testing.assert_close(
        result.boxes[:, 0], torch.tensor([0.15, 0.25, 0.35]) * 20, atol=1e-5, rtol=0
    )


def test_joint_mode_assigns_the_class_of_the_span_with_the_max(boxer: GroundingDinoBoxer) -> None:
    # tokens: [CLS] cat . wild bird . [SEP]  -> spans cat = [1, 2), wild bird = [3, 5)
    probs = [
        [0.0, 0.1, 0.0, 0.2, 0.8, 0.0, 0.0],  # "bird" -> class 3
        [0.0, 0.9, 0.0, 0.1, 0.1, 0.0, 0.0],  # "cat" -> class 1
        [0.0, 0.6, 0.0, 0.7, 0.1, 0.0, 0.0],  # phrase would read "cat wild": span max -> 3
        [0.0, 0.8, 0.0, 0.8, 0.0, 0.0, 0.0],  # tie -> the earlier prompt, class 1
        [0.0, 0.2, 0.9, 0.1, 0.1, 0.0, 0.0],  # max on ".": class tokens below text_threshold
        [0.0, 0.1, 0.0, 0.1, 0.1, 0.0, 0.0],  # below the box threshold
    ]
    crafted = _crafted_boxer(
        boxer, "cat. wild bird.", probs, box_threshold=0.3, text_threshold=0.25, prompt_mode="joint"
    )
    result = crafted([_image(10, 10, 0)], [[(1, "Cat"), (3, "wild bird")]])[0]
    assert result.class_ids.tolist() == [3, 1, 3, 1]
    assert result.prompts == ("wild bird.", "cat.", "wild bird.", "cat.")
    torch.testing.assert_close(
        result.box_scores, torch.tensor([0.8, 0.9, 0.7, 0.8]), atol=1e-6, rtol=0
    )
    assert crafted.model.calls == 1  # both prompts in one caption
    # a lower text threshold keeps the query that fired on "." (its cat span is 0.2)
    crafted.text_threshold = 0.15
    result = crafted([_image(10, 10, 0)], [[(1, "cat"), (3, "wild bird")]])[0]
    assert result.class_ids.tolist() == [3, 1, 3, 1, 1]
    assert float(result.box_scores[-1]) == pytest.approx(0.9)


def test_class_wise_nms(boxer: GroundingDinoBoxer) -> None:
    boxes = torch.tensor(
        [[0.5, 0.5, 0.4, 0.4], [0.51, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.4, 0.4]]
    )
    probs = [[0.1, 0.6, 0.1, 0.1], [0.1, 0.9, 0.1, 0.1], [0.1, 0.5, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]]
    crafted = _crafted_boxer(boxer, "cat.", probs, boxes=boxes, box_threshold=0.3)
    image = _image(100, 100, 0)
    # the same caption answers both queries, so classes 1 and 2 get identical boxes
    assert len(crafted([image], [[(1, "cat"), (2, "cat")]])[0]) == 6
    crafted.nms_iou = 0.5
    result = crafted([image], [[(1, "cat"), (2, "cat")]])[0]
    assert result.class_ids.tolist() == [1, 1, 2, 2]  # overlaps across classes survive
    torch.testing.assert_close(
        result.box_scores, torch.tensor([0.9, 0.5, 0.9, 0.5]), atol=1e-6, rtol=0
    )


# -- joint mode on the real tiny model ---------------------------------------------------------
def test_joint_mode_packs_long_prompt_lists_and_batches_exactly(
    fresh_boxer: GroundingDinoBoxer,
) -> None:
    names = [
        "aeroplane",
        "bicycle",
        "wild bird",
        "boat",
        "bottle",
        "bus",
        "car",
        "cat",
        "chair",
        "cow",
        "dining table",
        "dog",
        "horse",
        "motorbike",
        "person",
        "potted plant",
    ]
    queries = [[(i + 1, name) for i, name in enumerate(names)], [(8, "cat"), (12, "dog")]]
    images = [_image(48, 64, 0), _image(60, 80, 1)]
    fresh_boxer.prompt_mode = "joint"
    batched = fresh_boxer(images, queries)
    for image, image_queries, result in zip(images, queries, batched, strict=True):
        _assert_same(result, fresh_boxer([image], [image_queries])[0])
        valid = {cid: f"{name}." for cid, name in image_queries}
        assert all(
            valid[int(c)] == p for c, p in zip(result.class_ids, result.prompts, strict=True)
        )
    assert len(batched[0]) + len(batched[1]) > 0
    fresh_boxer.prompt_mode = "per-class"
    overridden = fresh_boxer(images, queries, prompt_mode="joint")  # a per-call override
    for result, expected in zip(overridden, batched, strict=True):
        _assert_same(result, expected)
    with pytest.raises(ValueError, match="prompt_mode must be one of"):
        fresh_boxer(images, queries, prompt_mode="both")
    rows = fresh_boxer._plan_rows([[(c, f"{n}.") for c, n in queries[0]]], "joint")
    assert len(rows) > 1 and all(len(r.caption.input_ids) <= 32 for r in rows)
    assert [q for r in rows for q in r.queries] == list(range(len(names)))


# -- input checking ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("images", "queries", "message"),
    [
        ([np.zeros((10, 10, 3), np.float32)], [[(1, "cat")]], "dtype"),
        ([np.zeros((10, 10), np.uint8)], [[(1, "cat")]], r"\(H, W, 3\)"),
        ([np.zeros((3, 10, 10), np.uint8)], [[(1, "cat")]], r"\(H, W, 3\)"),
        ([np.zeros((10, 10, 4), np.uint8)], [[(1, "cat")]], r"\(H, W, 3\)"),
        (np.zeros((10, 10, 3), np.uint8), [[(1, "cat")]], "list"),
        (["image.jpg"], [[(1, "cat")]], "str"),
        ([np.zeros((10, 10, 3), np.uint8)] * 2, [[(1, "cat")]], "2 images but 1 query lists"),
        ([np.zeros((10, 10, 3), np.uint8)], [["cat"]], "pair"),
        ([np.zeros((10, 10, 3), np.uint8)], [[(0, "cat")]], ">= 1"),
        ([np.zeros((10, 10, 3), np.uint8)], [[("1", "cat")]], "integer"),
        ([np.zeros((10, 10, 3), np.uint8)], [[(1, "  ")]], "empty"),
        ([np.zeros((10, 10, 3), np.uint8)], [[(1, "..")]], "empty"),
        ([np.zeros((10, 10, 3), np.uint8)], [[(1, None)]], "string"),
    ],
)
def test_bad_input_raises_value_error(
    fresh_boxer: GroundingDinoBoxer, images, queries, message
) -> None:
    with pytest.raises(ValueError, match=message):
        fresh_boxer(images, queries)


def test_too_long_prompt_is_rejected(fresh_boxer: GroundingDinoBoxer) -> None:
    with pytest.raises(ValueError, match="max_text_len"):
        fresh_boxer([_image(10, 10, 0)], [[(1, " ".join(["cat"] * 40))]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_mode": "all"}, "prompt_mode"),
        ({"box_threshold": 1.5}, "box_threshold"),
        ({"text_threshold": -0.1}, "text_threshold"),
        ({"nms_iou": 0.0}, "nms_iou"),
        ({"dtype": "int8"}, "dtype"),
        ({"max_batch_rows": 0}, "max_batch_rows"),
    ],
)
def test_bad_settings_raise_value_error(boxer: GroundingDinoBoxer, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        GroundingDinoBoxer(boxer.model, boxer.processor, **kwargs)


def test_device_and_precision(real_boxer: GroundingDinoBoxer) -> None:
    boxer = real_boxer
    same = GroundingDinoBoxer(boxer.model, boxer.processor)
    assert same.to("cpu") is same and same.device == torch.device("cpu")
    assert same.compute_dtype == torch.float32
    assert (
        GroundingDinoBoxer(boxer.model, boxer.processor, dtype="fp16").compute_dtype
        == torch.float16
    )
    assert same.box_threshold == 0.3 and same.text_threshold == 0.25
    assert same.prompt_mode == "per-class" and same.preprocess_settings.shortest_edge == 800
    assert same.source.weights == "GroundingDinoForObjectDetection" and same.source.revision is None


# -- registry ---------------------------------------------------------------------------------
def test_registry_names_resolve_to_the_hub_ids(
    tiny_gdino_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    entries = registry.list_models("boxer")
    assert entries["grounding-dino-tiny"].weights == "IDEA-Research/grounding-dino-tiny"
    assert entries["grounding-dino-base"].weights == "IDEA-Research/grounding-dino-base"
    assert (
        registry.weights_of("boxer", "grounding-dino-base") == "IDEA-Research/grounding-dino-base"
    )
    assert registry.weights_of("boxer", str(tiny_gdino_dir)) == str(tiny_gdino_dir)

    requested = []
    real_processor = transformers.AutoProcessor.from_pretrained
    real_model = transformers.GroundingDinoForObjectDetection.from_pretrained

    def processor_from(name, **kwargs):
        requested.append(name)
        return real_processor(tiny_gdino_dir, **kwargs)

    def model_from(name, **kwargs):
        requested.append(name)
        return real_model(tiny_gdino_dir, **kwargs)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", processor_from)
    monkeypatch.setattr(transformers.GroundingDinoForObjectDetection, "from_pretrained", model_from)
    built = registry.create("boxer", "grounding-dino-tiny", box_threshold=0.4, prompt_mode="joint")
    assert isinstance(built, GroundingDinoBoxer)
    assert requested == ["IDEA-Research/grounding-dino-tiny"] * 2
    assert built.box_threshold == 0.4 and built.prompt_mode == "joint"
    assert built.checkpoint == "IDEA-Research/grounding-dino-tiny"
    assert built.source.weights == "IDEA-Research/grounding-dino-tiny"
    with pytest.raises(ValueError, match="grounding-dino-tiny"):
        registry.create("boxer", "grounding-dino-huge")
    local = registry.create("boxer", str(tiny_gdino_dir), box_threshold=0.2)
    assert local.checkpoint == str(tiny_gdino_dir) and local.box_threshold == 0.2


# -- GPU ----------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu_fp32_closely(tiny_gdino_dir: Path) -> None:
    cpu = GroundingDinoBoxer.from_pretrained(str(tiny_gdino_dir), box_threshold=0.0)
    gpu = GroundingDinoBoxer.from_pretrained(str(tiny_gdino_dir), box_threshold=0.0, device="cuda")
    assert gpu.compute_dtype == torch.bfloat16
    images = [_image(48, 64, 0), _image(60, 80, 1), _image(70, 40, 2)]
    queries = [[(1, "cat"), (2, "dog")], [(1, "cat")], [(3, "person")]]
    for a, b in zip(cpu(images, queries), gpu(images, queries), strict=True):
        assert b.device.type == "cuda" and len(a) == len(b)  # threshold 0 keeps every query
        torch.testing.assert_close(b.boxes.cpu(), a.boxes, atol=0.05 * max(a.image_size), rtol=0)


def test_sources_that_cannot_be_grounding_dino_are_rejected_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a registered name"):
        GroundingDinoBoxer.from_pretrained("grounding-dino-tinyy")
    with pytest.raises(ValueError, match="has no config.json"):
        GroundingDinoBoxer.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "sam"}')
    with pytest.raises(ValueError, match="holds a 'sam' model, not Grounding DINO"):
        GroundingDinoBoxer.from_pretrained(str(tmp_path))
