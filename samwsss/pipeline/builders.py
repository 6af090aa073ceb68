"""Build the stages a :class:`PipelineConfig` names (registry names, hub ids or local paths)."""

from __future__ import annotations

from typing import Any

from samwsss.mapping import ClassMapping
from samwsss.pipeline.config import PipelineConfig


def build_boxer(config: PipelineConfig) -> Any:
    """Grounding DINO boxer from ``config.boxer`` with the config's thresholds and modes."""
    from samwsss.stages.boxer import GroundingDinoBoxer

    return GroundingDinoBoxer.from_pretrained(
        config.boxer,
        box_threshold=config.box_threshold,
        text_threshold=config.text_threshold,
        prompt_mode=config.prompt_mode,
        nms_iou=config.nms_iou,
        # every (image, class) caption row of a batch in as few forwards as memory allows
        max_batch_rows=max(8, 4 * config.batch_size),
    )


def build_masker(config: PipelineConfig) -> Any:
    """SAM masker from ``config.masker`` (transformers or official checkpoint)."""
    from samwsss.stages.masker import SamMasker

    return SamMasker.from_pretrained(config.masker, multimask=config.multimask, device="cpu")


def build_tagger(config: PipelineConfig, mapping: ClassMapping, boxer: Any) -> Any:
    """The zero-shot tagger: RAM/RAM++ (``config.tagger`` name or checkpoint path), or
    ``"grounding"``, which reuses ``boxer`` on every class of the mapping."""
    if config.tagger == "grounding":
        from samwsss.stages.grounding_tagger import GroundingTagger

        # joint captions: a few forwards per image for all classes instead of one per class
        return GroundingTagger(boxer, mapping, threshold=config.tag_threshold, prompt_mode="joint")
    from samwsss.ram.tagger import RAMTagger
    from samwsss.ram.thresholds import mapping_tag_thresholds

    tagger = RAMTagger.from_pretrained(
        config.tagger,
        vocabulary=config.ram_vocabulary,
        thresholds=config.ram_thresholds,
        threshold=config.tag_threshold,
    )
    overrides = mapping_tag_thresholds(mapping, tagger.vocabulary)
    if overrides:
        tagger.set_thresholds(config.tag_threshold, overrides)
    return tagger
