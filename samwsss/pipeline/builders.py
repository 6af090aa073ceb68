"""Build the stages a :class:`PipelineConfig` names, through :func:`samwsss.registry.create`."""

from __future__ import annotations

from typing import Any

from samwsss.choices import GROUNDING_TAGGER, PRESENCE_TAGGER
from samwsss.mapping import ClassMapping
from samwsss.pipeline.batching import boxer_rows
from samwsss.pipeline.config import PipelineConfig
from samwsss.ram.vocabulary import vocabulary_weights
from samwsss.registry import create
from samwsss.stages.contracts import Boxer, Masker, Tagger, TextSegmenter
from samwsss.weights import Weights, locate


def loaded_models(config: PipelineConfig, *, with_tagger: bool) -> list[tuple[str, str]]:
    """``(kind, name or path)`` of every stage with weights of its own that
    :meth:`~samwsss.pipeline.pipeline.Pipeline.from_config` builds from ``config``, in
    loading order: the segmenter, or the boxer and the masker; then, with ``with_tagger``,
    a RAM tagger (the ``grounding`` and ``sam3-presence`` taggers reuse the boxer or the
    segmenter). Nothing is loaded."""
    models = (
        [("segmenter", str(config.segmenter))]
        if config.segmenter is not None
        else [("boxer", config.boxer), ("masker", config.masker)]
    )
    if with_tagger and config.tagger not in (GROUNDING_TAGGER, PRESENCE_TAGGER):
        models.append(("tagger", config.tagger))
    return models


def build_boxer(config: PipelineConfig) -> Boxer:
    """The boxer ``config.boxer`` with the config's thresholds and modes.

    These options are Grounding DINO's: each goes to the loader only if it names it (see
    :func:`samwsss.registry.create`), so another registered boxer gets the ones it takes.
    """
    thresholds = {  # None: the boxer family's default (stages.boxer.family_defaults)
        name: value
        for name, value in (
            ("box_threshold", config.box_threshold),
            ("text_threshold", config.text_threshold),
        )
        if value is not None
    }
    boxer: Boxer = create(
        "boxer",
        config.boxer,
        optional={
            **thresholds,
            "prompt_mode": config.prompt_mode,
            "nms_iou": config.nms_iou,
            "max_batch_rows": boxer_rows(config.batch_size),
            "dtype": config.dtype,
            "image_resize": config.image_resize,
            "clip_boxes": config.clip_boxes,
        },
    )
    return boxer


def build_masker(config: PipelineConfig) -> Masker:
    """SAM masker from ``config.masker`` (transformers or official checkpoint)."""
    masker: Masker = create(
        "masker",
        config.masker,
        multimask=config.multimask,
        device="cpu",
        dtype=config.dtype,
        image_resize=config.image_resize,
    )
    return masker


def build_segmenter(config: PipelineConfig) -> TextSegmenter:
    """The text-prompted segmenter ``config.segmenter`` (SAM 3), which replaces boxer and
    masker; its score threshold is the config's ``segment_threshold`` when set."""
    options: dict[str, Any] = {
        "dtype": config.dtype,
        "max_batch_rows": boxer_rows(config.batch_size),
    }
    if config.segment_threshold is not None:
        options["score_threshold"] = config.segment_threshold
    segmenter: TextSegmenter = create("segmenter", str(config.segmenter), **options)
    return segmenter


def build_tagger(config: PipelineConfig, mapping: ClassMapping, boxer: Boxer) -> Tagger:
    """The zero-shot tagger: RAM/RAM++ (``config.tagger`` name or checkpoint path, with the
    mapping's per-tag thresholds), or ``"grounding"``, which reuses ``boxer`` on every class
    of the mapping with joint captions (a few forwards per image instead of one per class),
    or ``"sam3-presence"``, which reuses the segmenter passed as ``boxer``."""
    tagger: Tagger
    if config.tagger == PRESENCE_TAGGER:
        threshold: dict[str, Any] = (
            {} if config.tag_threshold is None else {"threshold": config.tag_threshold}
        )
        tagger = create("tagger", PRESENCE_TAGGER, segmenter=boxer, mapping=mapping, **threshold)
    elif config.tagger == GROUNDING_TAGGER:
        tagger = create(
            "tagger",
            GROUNDING_TAGGER,
            boxer=boxer,
            mapping=mapping,
            threshold=config.tag_threshold,
            prompt_mode="joint",
        )
    else:
        tagger = create(
            "tagger",
            config.tagger,
            vocabulary=config.ram_vocabulary,
            thresholds=config.ram_thresholds,
            threshold=config.tag_threshold,
            mapping=mapping,
            dtype=config.dtype,
            image_resize=config.image_resize,
        )
    return tagger


def run_weights(config: PipelineConfig, *, with_tagger: bool) -> list[Weights]:
    """The weights of every model :meth:`~samwsss.pipeline.pipeline.Pipeline.from_config`
    loads for ``config`` (with the tagger when ``with_tagger``), and the RAM vocabulary
    files a RAM tagger reads when ``config`` gives no local ones.

    Raises:
        ValueError: see :func:`samwsss.weights.locate`.
    """
    found = [locate(kind, name) for kind, name in loaded_models(config, with_tagger=with_tagger)]
    weights = [entry for entry in found if entry is not None]
    if any(entry.kind == "tagger" for entry in weights):
        weights += vocabulary_weights(config.ram_vocabulary, config.ram_thresholds)
    return weights
