"""The boxer on each Grounding DINO family: the original and MM-Grounding-DINO (also LLMDet).

Tiny random checkpoints are written with ``save_pretrained`` and loaded through the same
``from_pretrained`` path a download takes; nothing is downloaded. What is checked: each
family loads with its own transformers class, the batched per-class path equals
transformers' own one-at-a-time forward + ``post_process_grounded_object_detection``,
joint mode batches exactly, other architectures are refused by name, and the registry and
:func:`family_defaults` know the released names and their thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from samwsss import registry
from samwsss.detections import Detections
from samwsss.stages.boxer import GroundingDinoBoxer, family_defaults
from samwsss.stages.boxer_family import FAMILIES
from samwsss.testing.gdino import build_tiny_grounding_dino, build_tiny_mm_grounding_dino

LOW = 0.05  # keeps some queries of the untempered random Grounding DINO
MM_CLASS_BIAS = -1.0  # the tiny MM model's class-head bias (build_tiny_mm_grounding_dino)

MM_NAMES = {
    "mm-grounding-dino-tiny": "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det",
    "mm-grounding-dino-base": "openmmlab-community/mm_grounding_dino_base_o365v1_goldg_v3det",
    "mm-grounding-dino-large": "openmmlab-community/mm_grounding_dino_large_o365v2_oiv6_goldg",
    "llmdet-tiny": "iSEE-Laboratory/llmdet_tiny",
    "llmdet-base": "iSEE-Laboratory/llmdet_base",
    "llmdet-large": "iSEE-Laboratory/llmdet_large",
}


@pytest.fixture(scope="module")
def mm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mm_grounding_dino(tmp_path_factory.mktemp("tiny_mm_gdino"))


@pytest.fixture(scope="module")
def gd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_grounding_dino(
        tmp_path_factory.mktemp("tiny_gdino_128"), shortest_edge=128, longest_edge=213
    )


@pytest.fixture(scope="module")
def mm_boxer(mm_dir: Path) -> GroundingDinoBoxer:
    return GroundingDinoBoxer.from_pretrained(str(mm_dir))


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


def _direct(
    stage: GroundingDinoBoxer, image: np.ndarray, prompts: list[str], threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own path, one (image, prompt) at a time: the processor, one forward of
    the model, ``post_process_grounded_object_detection``; boxes clipped to the image."""
    processor, model = stage.processor, stage.model
    boxes, scores = [], []
    for prompt in prompts:
        caption = prompt.lower().strip()
        caption = caption if caption.endswith(".") else caption + "."
        inputs = processor(images=image, text=caption, return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs)
        post = processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=threshold,
            text_threshold=0.0,
            target_sizes=[image.shape[:2]],
        )[0]
        boxes.append(post["boxes"])
        scores.append(post["scores"])
    height, width = image.shape[:2]
    expected = torch.cat(boxes)
    expected[:, 0::2] = expected[:, 0::2].clamp(0, width)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, height)
    return expected, torch.cat(scores)


# the batch: two landscape images that share the 128x170 resize (one bucket), a portrait
# one, a square one and one without a query; captions of different token lengths
IMAGES = [
    _image(48, 64, 0),
    _image(70, 40, 1),
    _image(60, 80, 2),
    _image(50, 50, 3),
    _image(30, 90, 4),
]
QUERIES: list[list[tuple[int, str]]] = [
    [(1, "cat"), (2, "Wild Bird"), (4, "potted plant")],
    [(3, "person.")],
    [(2, "dog"), (1, "cat"), (4, "potted plant")],
    [],
    [(5, "dining table"), (3, "person")],
]


# -- loading ------------------------------------------------------------------------------
def test_tiny_mm_folder_is_an_mm_grounding_dino_checkpoint(mm_dir: Path) -> None:
    from transformers import AutoModelForZeroShotObjectDetection, MMGroundingDinoForObjectDetection

    config = json.loads((mm_dir / "config.json").read_text())
    assert config["model_type"] == "mm-grounding-dino"
    auto = AutoModelForZeroShotObjectDetection.from_pretrained(mm_dir)
    assert type(auto) is MMGroundingDinoForObjectDetection
    assert all(float(head.bias.detach()) == MM_CLASS_BIAS for head in auto.class_embed)
    again = build_tiny_mm_grounding_dino(mm_dir.parent / "again")
    assert (again / "model.safetensors").read_bytes() == (mm_dir / "model.safetensors").read_bytes()


def test_mm_folder_loads_through_create_and_from_pretrained(
    mm_dir: Path, mm_boxer: GroundingDinoBoxer
) -> None:
    from transformers import AutoModelForZeroShotObjectDetection, MMGroundingDinoForObjectDetection

    created = registry.create("boxer", str(mm_dir))
    for stage in (created, mm_boxer):
        assert type(stage.model) is MMGroundingDinoForObjectDetection
        assert stage.family is FAMILIES["mm-grounding-dino"]
        assert (stage.box_threshold, stage.text_threshold) == (0.4, 0.3)  # family defaults
        assert stage.share_backbone  # the trick is exact for MM too (checked below)
        assert stage.source.weights == str(mm_dir)
        assert "family='mm-grounding-dino'" in repr(stage)
    # the per-layer class-head biases and everything else load as the auto class loads them
    auto = AutoModelForZeroShotObjectDetection.from_pretrained(mm_dir).state_dict()
    for key, value in created.model.state_dict().items():
        assert torch.equal(value, auto[key]), key
    explicit = registry.create("boxer", str(mm_dir), box_threshold=0.2, text_threshold=0.1)
    assert (explicit.box_threshold, explicit.text_threshold) == (0.2, 0.1)


def test_mm_checkpoint_in_the_original_class_would_score_differently(
    mm_dir: Path, mm_boxer: GroundingDinoBoxer
) -> None:
    """Why the class is chosen by model_type: the original class drops the class-head bias
    and the 1/sqrt(d) scale, so the same weights give other scores."""
    from transformers import GroundingDinoForObjectDetection

    wrong = GroundingDinoForObjectDetection.from_pretrained(mm_dir).eval()
    inputs = mm_boxer.processor(images=_image(48, 64, 0), text="cat.", return_tensors="pt")
    with torch.inference_mode():
        right_scores = mm_boxer.model(**inputs).logits.sigmoid().amax(-1)
        wrong_scores = wrong(**inputs).logits.sigmoid().amax(-1)
    assert not torch.allclose(right_scores, wrong_scores, atol=1e-2)


# -- per-class batching, against transformers' own path -------------------------------------
def test_mm_per_class_batched_equals_direct_transformers_calls(
    mm_boxer: GroundingDinoBoxer,
) -> None:
    stage = GroundingDinoBoxer(mm_boxer.model, mm_boxer.processor, max_batch_rows=4)
    batched = stage(IMAGES, QUERIES)
    assert len(batched[3]) == 0 and sum(len(d) for d in batched) > 0
    for image, image_queries, result in zip(IMAGES, QUERIES, batched, strict=True):
        # the boxer's own one-at-a-time calls
        singles = [stage([image], [[query]])[0] for query in image_queries]
        expected = Detections.cat(singles) if singles else Detections.empty(image.shape[:2])
        _assert_same(result, expected)
        if not image_queries:
            continue
        # transformers' model + processor post-processing
        boxes, scores = _direct(stage, image, [p for _, p in image_queries], stage.box_threshold)
        torch.testing.assert_close(result.boxes, boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(result.box_scores, scores, atol=1e-5, rtol=0)
        assert all(float(s) > 0.4 for s in result.box_scores)
    # the shared backbone changes nothing
    stage.share_backbone = False
    for a, b in zip(batched, stage(IMAGES, QUERIES), strict=True):
        _assert_same(a, b, atol=1e-5)


def test_mm_joint_mode_runs_and_batches_exactly(mm_boxer: GroundingDinoBoxer) -> None:
    stage = GroundingDinoBoxer(
        mm_boxer.model, mm_boxer.processor, prompt_mode="joint", max_batch_rows=3
    )
    names = ["aeroplane", "bicycle", "wild bird", "boat", "bottle", "bus", "car", "cat"]
    names += ["chair", "cow", "dining table", "dog", "horse", "motorbike", "person"]
    queries = [[(i + 1, name) for i, name in enumerate(names)], *QUERIES[1:]]
    batched = stage(IMAGES, queries)
    assert sum(len(d) for d in batched) > 0
    rows = stage._plan_rows([[(c, f"{n}.") for c, n in queries[0]]], "joint")
    assert len(rows) > 1  # the 15 names do not fit one 32-token caption
    for image, image_queries, result in zip(IMAGES, queries, batched, strict=True):
        _assert_same(result, stage([image], [image_queries])[0])
        valid = {cid: f"{name.lower().rstrip('.')}." for cid, name in image_queries}
        assert all(
            valid[int(c)] == p for c, p in zip(result.class_ids, result.prompts, strict=True)
        )


# -- the original Grounding DINO is unchanged -------------------------------------------------
def test_original_grounding_dino_gives_the_same_results_as_a_direct_call(gd_dir: Path) -> None:
    from transformers import GroundingDinoForObjectDetection

    created = registry.create("boxer", str(gd_dir), box_threshold=LOW, text_threshold=0.0)
    assert type(created.model) is GroundingDinoForObjectDetection
    assert created.family is FAMILIES["grounding-dino"]
    default = GroundingDinoBoxer.from_pretrained(str(gd_dir))
    assert (default.box_threshold, default.text_threshold) == (0.3, 0.25)  # the paper's
    stage = GroundingDinoBoxer(
        GroundingDinoForObjectDetection.from_pretrained(gd_dir),  # what the boxer loaded before
        created.processor,
        box_threshold=LOW,
        text_threshold=0.0,
        max_batch_rows=4,
    )
    images, queries = IMAGES[:3], QUERIES[:3]
    for ours, before in zip(created(images, queries), stage(images, queries), strict=True):
        _assert_same(ours, before, atol=0.0)
    for image, image_queries, result in zip(images, queries, created(images, queries), strict=True):
        boxes, scores = _direct(created, image, [p for _, p in image_queries], LOW)
        torch.testing.assert_close(result.boxes, boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(result.box_scores, scores, atol=1e-5, rtol=0)


# -- other architectures ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config_name", "model_type"), [("DetrConfig", "detr"), ("OwlViTConfig", "owlvit")]
)
def test_a_folder_of_another_architecture_is_refused_by_name(
    tmp_path: Path, config_name: str, model_type: str
) -> None:
    import transformers

    getattr(transformers, config_name)().save_pretrained(tmp_path)
    message = (
        f"holds a '{model_type}' model, not Grounding DINO.*'grounding-dino', 'mm-grounding-dino'"
    )
    with pytest.raises(ValueError, match=message):
        GroundingDinoBoxer.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match=message):
        registry.create("boxer", str(tmp_path))
    with pytest.raises(ValueError, match=message):
        family_defaults(tmp_path)


def test_a_hub_id_of_another_architecture_is_refused_before_its_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import transformers

    asked: list[tuple[str, dict[str, Any]]] = []

    def config_from(name: str, **kwargs: Any) -> Any:
        asked.append((name, kwargs))
        return transformers.OwlViTConfig()

    def must_not_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights or processor loaded for a refused architecture")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config_from)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", must_not_load)
    with pytest.raises(ValueError, match="'owlvit' model, not Grounding DINO"):
        GroundingDinoBoxer.from_pretrained(
            "google/owlvit-base-patch32", revision="main", dtype="auto"
        )
    # only the hub-location keywords reach AutoConfig
    assert asked == [("google/owlvit-base-patch32", {"revision": "main"})]


def test_a_model_of_another_architecture_is_refused_by_the_constructor(
    mm_boxer: GroundingDinoBoxer,
) -> None:
    class Other(torch.nn.Module):
        config = SimpleNamespace(model_type="owlv2", max_text_len=16)

    with pytest.raises(ValueError, match="'owlv2' model, not Grounding DINO"):
        GroundingDinoBoxer(Other(), mm_boxer.processor)


# -- registry and family defaults ---------------------------------------------------------------
def test_registry_lists_the_family_names_with_their_thresholds() -> None:
    cards = registry.list_models("boxer")
    for name, hub_id in MM_NAMES.items():
        assert cards[name].weights == hub_id
        assert dict(cards[name].defaults) == {"box_threshold": 0.4, "text_threshold": 0.3}
        assert family_defaults(name) == {"box_threshold": 0.4, "text_threshold": 0.3}
    for name in ("grounding-dino-tiny", "grounding-dino-base"):
        assert dict(cards[name].defaults) == {"box_threshold": 0.3, "text_threshold": 0.25}
        assert family_defaults(name) == {"box_threshold": 0.3, "text_threshold": 0.25}
    rows = {row[1] for row in registry.model_table(["boxer"])}
    assert set(MM_NAMES) <= rows


def test_family_defaults_of_folders_and_hub_ids(
    mm_dir: Path, gd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    assert family_defaults(mm_dir) == {"box_threshold": 0.4, "text_threshold": 0.3}
    assert family_defaults(str(gd_dir)) == {"box_threshold": 0.3, "text_threshold": 0.25}
    # a hub id: known only if its config.json is in the local cache (no network)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert family_defaults("someone/my-finetuned-mm-gdino") == {}
    snapshot = tmp_path / "models--someone--my-finetuned-mm-gdino" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "mm-grounding-dino"}')
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    assert family_defaults("someone/my-finetuned-mm-gdino") == {
        "box_threshold": 0.4,
        "text_threshold": 0.3,
    }
    with pytest.raises(ValueError, match="neither a registered name"):
        family_defaults("llmdet-huge")
    with pytest.raises(ValueError, match="has no config.json"):
        family_defaults(tmp_path)


def test_registered_mm_names_load_the_mm_class_with_the_card_thresholds(
    mm_dir: Path, gd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    requested: list[str] = []
    real_processor = transformers.AutoProcessor.from_pretrained
    real_mm = transformers.MMGroundingDinoForObjectDetection.from_pretrained
    real_gd = transformers.GroundingDinoForObjectDetection.from_pretrained
    target = {"dir": mm_dir}

    def processor_from(name: str, **kwargs: Any) -> Any:
        requested.append(name)
        return real_processor(target["dir"], **kwargs)

    def mm_from(name: str, **kwargs: Any) -> Any:
        requested.append(name)
        return real_mm(target["dir"], **kwargs)

    real_config = transformers.AutoConfig.from_pretrained

    def config_from(name: Any, **kwargs: Any) -> Any:
        assert str(name) not in MM_NAMES.values(), "a registered name needs no config lookup"
        return real_config(name, **kwargs)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", processor_from)
    monkeypatch.setattr(transformers.MMGroundingDinoForObjectDetection, "from_pretrained", mm_from)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config_from)
    built = registry.create("boxer", "llmdet-tiny")
    assert requested == ["iSEE-Laboratory/llmdet_tiny"] * 2
    assert type(built.model) is transformers.MMGroundingDinoForObjectDetection
    assert (built.box_threshold, built.text_threshold) == (0.4, 0.3)
    assert built.source.weights == "iSEE-Laboratory/llmdet_tiny"
    overridden = registry.create("boxer", "mm-grounding-dino-large", box_threshold=0.35)
    assert overridden.box_threshold == 0.35 and overridden.text_threshold == 0.3
    assert overridden.checkpoint == MM_NAMES["mm-grounding-dino-large"]
    # a name whose weights turn out to be of another family is refused, not half-loaded
    monkeypatch.setattr(
        transformers.MMGroundingDinoForObjectDetection,
        "from_pretrained",
        lambda name, **kwargs: real_gd(gd_dir, **kwargs),
    )
    with pytest.raises(ValueError, match="expected to hold a 'mm-grounding-dino' model"):
        registry.create("boxer", "mm-grounding-dino-tiny")


def test_a_pipeline_uses_the_family_thresholds_unless_the_config_sets_them(
    mm_dir: Path, gd_dir: Path, tiny_sam_session_dir: Path, tmp_path: Path
) -> None:
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.runs.runner import RunOptions, run_identity

    options = RunOptions(route="text-input", out=tmp_path / "run")
    expected = {str(mm_dir): (0.4, 0.3), str(gd_dir): (0.3, 0.25)}
    for boxer, thresholds in expected.items():
        pipe = Pipeline.from_preset(
            "default", device="cpu", boxer=boxer, masker=str(tiny_sam_session_dir)
        )
        assert (pipe.boxer.box_threshold, pipe.boxer.text_threshold) == thresholds
        identity = run_identity(pipe, options, {})["pipeline"]
        assert (identity["box_threshold"], identity["text_threshold"]) == thresholds
    chosen = Pipeline.from_preset(
        "default", device="cpu", boxer=str(mm_dir), masker=str(tiny_sam_session_dir),
        box_threshold=0.35,
    )  # fmt: skip
    assert (chosen.boxer.box_threshold, chosen.boxer.text_threshold) == (0.35, 0.3)
