"""The pipeline's settings, read without loading torch: :class:`PipelineConfig`, and the
presets ``default``, ``paper`` and ``sam3``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from samwsss.checks import check_choice, check_count, check_optional_fraction
from samwsss.choices import (
    DTYPE_ALIASES,
    IMAGE_RESIZES,
    MERGE_RULES,
    MULTIMASK,
    PIPELINE_DTYPES,
    PRESENCE_TAGGER,
    PROMPT_MODES,
    TAG_MATCHES,
)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides a pipeline's outputs (models, thresholds, rules).

    Attributes:
        mapping: class mapping: ``"voc"``, ``"coco"`` or a YAML path.
        boxer: Grounding DINO registry name, hub id or local folder.
        masker: SAM registry name, hub id, local folder or official ``.pth`` file.
        segmenter: a text-prompted segmenter (``"sam3"``, ``"sam3-litetext-s0"``, a hub
            id or folder) that replaces boxer + masker, or ``None``.
        segment_threshold: the segmenter's instance score threshold, or ``None`` for the
            segmenter's own default.
        tagger: RAM registry name or checkpoint path, ``"grounding"`` (Grounding DINO on
            every class) or ``"sam3-presence"`` (the segmenter's presence score on every
            class) (zero-shot only).
        box_threshold: Grounding DINO box threshold (max sigmoid over prompt tokens), or
            ``None`` for the boxer family's default (0.3 for Grounding DINO, the paper's;
            0.4 for MM-Grounding-DINO / LLMDet; see ``stages.boxer.family_defaults``).
        text_threshold: Grounding DINO text threshold, or ``None`` for the family's
            default (0.25; MM-Grounding-DINO / LLMDet 0.3).
        prompt_mode: ``"per-class"`` (one prompt per image and class, the paper) or
            ``"joint"`` (all of an image's classes in one prompt).
        nms_iou: class-wise NMS IoU on boxes, or ``None`` (the paper: no NMS).
        multimask: ``"single"`` (the paper) or ``"best"`` of SAM's three masks.
        merge_rule: ``"score"``, ``"paper"`` (higher class index wins) or ``"area"``.
        uncertain_margin: close overlaps of different classes become 255, or ``None``.
        min_area: masks smaller than this many pixels are dropped.
        tag_match: ``"exact"`` whole-tag matching or ``"paper"`` substring matching.
        tag_threshold: a global RAM probability threshold, or ``None`` for per-tag ones.
        ram_vocabulary: local ``ram_tag_list.txt`` (default: fetched once and cached).
        ram_thresholds: local ``ram_tag_list_threshold.txt`` (default: fetched with the list).
        batch_size: images per GPU batch.
        clip_boxes: prompt SAM with Grounding DINO's boxes clipped to the image (``False``,
            the paper: as the detector gave them; the boxes written out are clipped either
            way).
        image_resize: ``"torch"`` (antialiased resize on the device) or ``"pil"`` (each
            model's original PIL resize and size rounding, as the authors' code).
        dtype: ``"auto"`` (bfloat16 autocast on CUDA, float32 elsewhere), or
            ``"float32"`` / ``"bfloat16"`` / ``"float16"`` for every stage.
    """

    mapping: str = "voc"
    boxer: str = "grounding-dino-tiny"
    masker: str = "sam-vit-huge"
    segmenter: str | None = None
    segment_threshold: float | None = None
    tagger: str = "ram-plus-swin-large-14m"
    box_threshold: float | None = None
    text_threshold: float | None = None
    prompt_mode: str = "per-class"
    nms_iou: float | None = None
    multimask: str = "single"
    merge_rule: str = "score"
    uncertain_margin: float | None = None
    min_area: int = 0
    tag_match: str = "exact"
    tag_threshold: float | None = None
    ram_vocabulary: str | None = None
    ram_thresholds: str | None = None
    batch_size: int = 8
    clip_boxes: bool = True
    image_resize: str = "torch"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        check_choice("prompt_mode", self.prompt_mode, PROMPT_MODES)
        check_choice("merge_rule", self.merge_rule, MERGE_RULES)
        check_choice("tag_match", self.tag_match, TAG_MATCHES)
        check_choice("multimask", self.multimask, MULTIMASK)
        check_optional_fraction("box_threshold", self.box_threshold)
        check_optional_fraction("text_threshold", self.text_threshold)
        check_optional_fraction("tag_threshold", self.tag_threshold)
        check_optional_fraction("segment_threshold", self.segment_threshold)
        if self.tagger == PRESENCE_TAGGER and self.segmenter is None:
            raise ValueError(
                f"tagger {PRESENCE_TAGGER!r} reads a segmenter's presence scores: set "
                "segmenter (e.g. 'sam3', or the preset 'sam3'), or choose another tagger"
            )
        check_optional_fraction("nms_iou", self.nms_iou, include_low=False)
        check_optional_fraction("uncertain_margin", self.uncertain_margin)
        check_count("batch_size", self.batch_size)
        check_count("min_area", self.min_area, minimum=0)
        check_choice("image_resize", self.image_resize, IMAGE_RESIZES)
        if not isinstance(self.clip_boxes, bool):
            raise ValueError(f"clip_boxes must be True or False, got {self.clip_boxes!r}")
        dtype = DTYPE_ALIASES.get(str(self.dtype).lower(), str(self.dtype).lower())
        check_choice("dtype", dtype, PIPELINE_DTYPES)
        object.__setattr__(self, "dtype", dtype)  # one spelling in run identities

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with ``changes`` applied (unknown names rejected)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown pipeline setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-safe)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, PipelineConfig] = {  # names: samwsss.choices.PRESET_NAMES
    "default": PipelineConfig(),
    # The survey authors' protocol: Grounding DINO Swin-T per-class prompts at 0.3/0.25,
    # SAM ViT-H single mask, max-class-index merge, substring tag matching, RAM Swin-L 14M;
    # unclipped boxes into SAM, each model's PIL resize, float32 (their scripts' choices).
    "paper": PipelineConfig(
        boxer="grounding-dino-tiny",
        masker="sam-vit-huge",
        tagger="ram-swin-large-14m",
        box_threshold=0.3,
        text_threshold=0.25,
        prompt_mode="per-class",
        nms_iou=None,
        multimask="single",
        merge_rule="paper",
        uncertain_margin=None,
        min_area=0,
        tag_match="paper",
        tag_threshold=None,
        clip_boxes=False,
        image_resize="pil",
        dtype="float32",
    ),
    # SAM 3 segments each class prompt directly (boxer + masker in one model) and its
    # presence score tags the zero-shot route: no Grounding DINO, SAM 1 or RAM weights.
    "sam3": PipelineConfig(
        segmenter="sam3",
        tagger=PRESENCE_TAGGER,
        merge_rule="score",
    ),
}


def preset(name: str, **overrides: Any) -> PipelineConfig:
    """A named preset (``"default"``, ``"paper"`` or ``"sam3"``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
