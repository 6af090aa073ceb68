"""The stage registry: cards that carry their loaders, any number of loaders per kind."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from samwsss import registry
from samwsss.pipeline import PipelineConfig
from samwsss.pipeline.builders import build_boxer
from samwsss.released import CARDS, DEFAULT_LOADERS, ModelCard


class FakeBoxer:
    """What :func:`load_fake_boxer` builds: the source and the options it was given."""

    def __init__(self, source: str, options: dict[str, Any]) -> None:
        self.source = source
        self.options = options


def load_fake_boxer(
    name_or_path: str, *, max_batch_rows: int = 1, score: float = 0.5, **extra: Any
) -> FakeBoxer:
    """A boxer loader that takes two options (and passes the rest on to a library)."""
    return FakeBoxer(name_or_path, {"max_batch_rows": max_batch_rows, "score": score, **extra})


@pytest.fixture()
def fake_boxer() -> Iterator[ModelCard]:
    """A second boxer registered beside Grounding DINO (removed afterwards)."""
    entry = ModelCard(
        "boxer",
        "fake-boxer",
        "someone/fake-boxer",
        "a boxer of another family",
        defaults={"score": 0.25},
        loader=load_fake_boxer,
        model_types=("fake-detector",),
    )
    registry.register_cards([entry])
    yield entry
    registry.unregister("boxer", "fake-boxer")


def test_a_second_boxer_gets_its_own_cards_and_model_type(
    fake_boxer: ModelCard, tmp_path: Path
) -> None:
    built = registry.create("boxer", "fake-boxer", max_batch_rows=4)
    assert isinstance(built, FakeBoxer)
    assert built.source == "fake-boxer"
    assert built.options == {"max_batch_rows": 4, "score": 0.25}
    assert "fake-boxer" in {row[1] for row in registry.model_table(["boxer"])}

    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "fake-detector"}))
    routed = registry.create("boxer", str(folder))
    assert isinstance(routed, FakeBoxer) and routed.source == str(folder)

    # Grounding DINO's names and model types still go to its loader
    for name in ("grounding-dino-tiny", "mm-grounding-dino-base", "llmdet-large"):
        assert registry.card("boxer", name).loader == DEFAULT_LOADERS["boxer"]  # type: ignore[union-attr]
    assert registry._route("boxer", str(folder)) is load_fake_boxer
    other = tmp_path / "gd"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "grounding-dino"}))
    assert registry._route("boxer", str(other)) == DEFAULT_LOADERS["boxer"]


def test_build_boxer_passes_grounding_dino_options_only_to_loaders_that_take_them(
    fake_boxer: ModelCard,
) -> None:
    config = PipelineConfig(boxer="fake-boxer", box_threshold=0.5, prompt_mode="joint")
    built = build_boxer(config)
    assert isinstance(built, FakeBoxer)
    # max_batch_rows is named by the loader; thresholds, prompt_mode, nms_iou, dtype,
    # image_resize and clip_boxes are Grounding DINO's and are not passed
    assert set(built.options) == {"max_batch_rows", "score"}
    assert built.options["score"] == 0.25


def test_grounding_dino_still_builds_beside_a_second_boxer(
    fake_boxer: ModelCard, tmp_path: Path
) -> None:
    from samwsss.stages.boxer import GroundingDinoBoxer
    from samwsss.testing.gdino import build_tiny_grounding_dino

    folder = build_tiny_grounding_dino(tmp_path / "gd")
    by_name = registry.create("boxer", "grounding-dino-tiny", weights=str(folder))
    by_folder = registry.create("boxer", str(folder), box_threshold=0.2)
    assert isinstance(by_name, GroundingDinoBoxer) and isinstance(by_folder, GroundingDinoBoxer)
    assert by_name.box_threshold == 0.3 and by_folder.box_threshold == 0.2
    config = PipelineConfig(boxer=str(folder), prompt_mode="joint", nms_iou=0.5)
    built = build_boxer(config)
    assert isinstance(built, GroundingDinoBoxer)
    assert built.prompt_mode == "joint" and built.nms_iou == 0.5


def test_every_card_names_a_loader_that_resolves() -> None:
    for cards in CARDS.values():
        for entry in cards:
            assert isinstance(entry.loader, str), entry.name
            assert callable(registry.resolve_loader(entry.loader)), entry.name
    with pytest.raises(ValueError, match="module:attribute"):
        registry.resolve_loader("samwsss.stages.boxer")


def test_card_model_types_match_the_stage_modules() -> None:
    from samwsss.stages import boxer_family, masker_hf, segmenter_sam3

    def types(kind: str) -> set[str]:
        return {kind_type for entry in CARDS[kind] for kind_type in entry.model_types}

    assert types("boxer") == set(boxer_family.FAMILIES)
    assert types("masker") == set(masker_hf.MODEL_TYPES)
    assert types("segmenter") == set(segmenter_sam3.ARCHITECTURES)


def test_register_keeps_the_other_loaders_of_the_kind() -> None:
    entry = ModelCard("boxer", "fake-boxer-2", "someone/fake-2", "another boxer")
    registry.register("boxer", load_fake_boxer, [entry])
    try:
        assert registry.card("boxer", "fake-boxer-2").loader is load_fake_boxer  # type: ignore[union-attr]
        assert registry.card("boxer", "grounding-dino-tiny").loader == DEFAULT_LOADERS["boxer"]  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="registered twice"):
            registry.register_cards([ModelCard("boxer", "fake-boxer-2", "x/y", "clash")])
        with pytest.raises(ValueError, match="needs the cards"):
            registry.register("boxer", load_fake_boxer, [])
    finally:
        registry.unregister("boxer", "fake-boxer-2")


def test_the_registry_and_its_table_load_no_torch() -> None:
    code = (
        "import sys; from samwsss import registry; registry.model_table(); "
        "registry.card('boxer', 'grounding-dino-tiny'); "
        "print(sorted(m for m in ('torch', 'transformers', 'samwsss.stages.boxer') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
