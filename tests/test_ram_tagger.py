"""The RAMTagger stage on a tiny RAM++ written in the official checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samwsss import registry
from samwsss.mapping import parse_mapping
from samwsss.ram.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_images
from samwsss.ram.tagger import RAMTagger
from samwsss.ram.thresholds import mapping_tag_thresholds, resolve_thresholds
from samwsss.ram.types import TagResult
from samwsss.testing.ram import (
    TINY_TAGS,
    TINY_THRESHOLDS,
    official_state_dict,
    tiny_config,
    tiny_vocabulary,
    write_checkpoint,
)
from tests.ram_fixtures import reference_logits


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = official_state_dict(tiny_config("ram_plus"), seed=21)
    path = write_checkpoint(tmp_path_factory.mktemp("ram") / "tiny_ram_plus.pth", state)
    return path, state


@pytest.fixture(scope="module")
def tagger(checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> RAMTagger:
    return RAMTagger.from_pretrained(
        checkpoint[0], config=tiny_config("ram_plus"), vocabulary=tiny_vocabulary(), batch_size=16
    )


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    shapes = [(96, 160), (128, 128), (200, 90), (64, 64), (131, 257)]
    out = []
    for h, w in shapes:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
        noise = rng.integers(0, 60, size=(h, w, 3))
        out.append(((base + noise) % 256).astype(np.uint8))
    return out


def test_tags_follow_reference_probabilities(
    tagger: RAMTagger, checkpoint: tuple[Path, dict[str, torch.Tensor]], images: list[np.ndarray]
) -> None:
    results = tagger(images)
    assert len(results) == len(images) and all(isinstance(r, TagResult) for r in results)
    pixels = preprocess_images(images, 128)
    probabilities = torch.sigmoid(reference_logits(checkpoint[1], tagger.config, pixels)).numpy()
    for result, row in zip(results, probabilities, strict=True):
        on = [i for i in range(len(TINY_TAGS)) if row[i] > TINY_THRESHOLDS[i]]
        assert sorted(result.indices) == on
        assert result.tags == tuple(TINY_TAGS[i] for i in result.indices)
        assert list(result.probabilities) == sorted(result.probabilities, reverse=True)
        np.testing.assert_allclose(result.probabilities, row[list(result.indices)], atol=1e-5)
    kept = sum(len(r) for r in results)
    assert 0 < kept < len(images) * len(TINY_TAGS)  # the thresholds actually select
    assert tagger(images) == results  # deterministic


def test_batched_equals_one_at_a_time(tagger: RAMTagger, images: list[np.ndarray]) -> None:
    batched = tagger.probabilities(images)
    single = torch.cat([tagger.probabilities([image]) for image in images])
    torch.testing.assert_close(batched, single, atol=2e-5, rtol=1e-4)
    tagger.batch_size = 2  # split into chunks of 2, 2, 1
    try:
        torch.testing.assert_close(tagger.probabilities(images), batched, atol=2e-5, rtol=1e-4)
    finally:
        tagger.batch_size = 16
    assert [r.tags for r in tagger(images)] == [tagger([i])[0].tags for i in images]


def test_preprocessed_tensor_input(tagger: RAMTagger, images: list[np.ndarray]) -> None:
    pixels = tagger.preprocess(images)
    assert pixels.shape == (5, 3, 128, 128) and pixels.dtype == torch.float32
    assert tagger(pixels) == tagger(images)
    with pytest.raises(ValueError, match=r"\(B, 3, 128, 128\)"):
        tagger(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="float"):
        tagger(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))


def test_preprocessing_matches_pil_resize(images: list[np.ndarray]) -> None:
    image = images[4]
    pil = np.asarray(Image.fromarray(image).resize((128, 128), Image.BILINEAR), dtype=np.float32)
    expected = (pil / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    got = preprocess_images([image], 128)[0].permute(1, 2, 0).numpy()
    # torchvision's uint8 antialiased bilinear matches PIL within one grey level.
    assert np.abs(got - expected).max() <= 1.01 / 255.0 / min(IMAGENET_STD)
    assert np.abs(got - expected).mean() < 0.01


def test_invalid_images_are_rejected(tagger: RAMTagger, images: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match=r"image 1 has shape \(8, 8\)"):
        tagger([images[0], np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        tagger([images[0].astype(np.float32)])
    with pytest.raises(ValueError, match="wrap it in a list"):
        tagger(images[0])
    with pytest.raises(ValueError, match="no images"):
        tagger([])


def test_threshold_overrides(tagger: RAMTagger, images: list[np.ndarray]) -> None:
    probabilities = tagger.probabilities(images).numpy()
    try:
        tagger.set_thresholds(threshold=0.0)
        assert all(len(r) == len(TINY_TAGS) for r in tagger(images))
        tagger.set_thresholds(threshold=1.0)
        assert all(len(r) == 0 for r in tagger(images))
        global_value = float(np.median(probabilities))
        tagger.set_thresholds(threshold=global_value, tag_thresholds={5: 0.0, 0: 1.0})
        for result, row in zip(tagger(images), probabilities, strict=True):
            expected = {i for i in range(len(TINY_TAGS)) if row[i] > global_value}
            expected = (expected | {5}) - {0}
            assert set(result.indices) == expected
        np.testing.assert_allclose(tagger.thresholds[[0, 5, 1]], [1.0, 0.0, global_value])
    finally:
        tagger.set_thresholds()
    np.testing.assert_allclose(tagger.thresholds, TINY_THRESHOLDS)


def test_threshold_validation() -> None:
    official = np.array(TINY_THRESHOLDS)
    with pytest.raises(ValueError, match="outside"):
        resolve_thresholds(official, threshold=1.5)
    with pytest.raises(ValueError, match="tag index 7"):
        resolve_thresholds(official, tag_thresholds={7: 0.5})
    with pytest.raises(ValueError, match="tag indices"):
        resolve_thresholds(official, tag_thresholds={"cat": 0.5})  # type: ignore[dict-item]


def test_mapping_thresholds_become_tag_thresholds() -> None:
    mapping = parse_mapping(
        """
name: tiny
classes:
  - {index: 0, name: background}
  - {index: 1, name: cat, tags: [cat], threshold: 0.3}
  - {index: 2, name: dog, tags: [dog]}
  - {index: 3, name: person, tags: [Person, sky], threshold: 0.8}
"""
    )
    assert mapping_tag_thresholds(mapping, tiny_vocabulary()) == {0: 0.3, 3: 0.8, 6: 0.8}
    bad = parse_mapping(
        "classes:\n  - {index: 0, name: background}\n"
        "  - {index: 1, name: cat, tags: [kitten], threshold: 0.3}\n"
    )
    with pytest.raises(ValueError, match="'kitten' \\(cat\\)"):
        mapping_tag_thresholds(bad, tiny_vocabulary())


def test_tag_result_validation() -> None:
    result = TagResult.from_scores(np.array([0.2, 0.9, 0.9, 0.7]), 0.5, ["a", "b", "c", "d"])
    assert result.tags == ("b", "c", "d") and result.indices == (1, 2, 3)
    assert result.as_dict() == {"b": 0.9, "c": 0.9, "d": 0.7}
    assert "b" in result and len(result) == 3
    with pytest.raises(ValueError, match="one index and one probability"):
        TagResult(("a",), (0, 1), (0.5,))
    with pytest.raises(ValueError, match="sorted"):
        TagResult(("a", "b"), (0, 1), (0.1, 0.5))


def test_registry_builds_the_tagger(checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> None:
    entries = registry.list_models("tagger")
    assert {"ram-plus-swin-large-14m", "ram-swin-large-14m"} <= set(entries)
    assert entries["ram-plus-swin-large-14m"].weights.endswith("ram_plus_swin_large_14m.pth")
    built = registry.create(
        "tagger",
        "ram-plus-swin-large-14m",
        weights=checkpoint[0],
        config=tiny_config("ram_plus"),
        vocabulary=tiny_vocabulary(),
        threshold=0.5,
    )
    assert isinstance(built, RAMTagger) and built.to("cpu") is built
    assert built.device == torch.device("cpu")
    assert built.source.weights == str(checkpoint[0])
    np.testing.assert_allclose(built.thresholds, 0.5)
    by_path = registry.create(
        "tagger", str(checkpoint[0]), config=tiny_config("ram_plus"), vocabulary=tiny_vocabulary()
    )
    assert isinstance(by_path, RAMTagger)
    with pytest.raises(ValueError, match="ram_plus checkpoint"):
        registry.create(
            "tagger",
            "ram-swin-large-14m",
            weights=checkpoint[0],
            config=tiny_config("ram"),
            vocabulary=tiny_vocabulary(),
        )


def test_from_pretrained_errors(
    tmp_path: Path, checkpoint: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    with pytest.raises(ValueError, match="neither a registered name"):
        RAMTagger.from_pretrained(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="variant"):
        RAMTagger.from_pretrained("ram-swin-large-14m", variant="ram_plus")
    with pytest.raises(ValueError, match="outputs 7"):
        RAMTagger.from_pretrained(
            checkpoint[0],
            config=tiny_config("ram_plus"),
            vocabulary=tiny_vocabulary().__class__(TINY_TAGS[:3], TINY_THRESHOLDS[:3]),
        )
    replaced = RAMTagger.from_pretrained(
        checkpoint[0],
        config=tiny_config("ram_plus"),
        vocabulary=tiny_vocabulary(),
        thresholds=[0.1] * len(TINY_TAGS),
    )
    np.testing.assert_allclose(replaced.thresholds, 0.1)
