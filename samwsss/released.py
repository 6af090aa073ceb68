"""The released models each stage kind loads by name, as registry cards, importable
without torch.

Each table is declared here once, as :class:`ModelCard` rows that name the loader that
builds them (a ``"module:attribute"`` string :mod:`samwsss.registry` imports on first use,
so reading the tables loads no torch, torchvision or transformers). The registry reads
:data:`CARDS`; the weights preflight (:mod:`samwsss.weights`) reads :data:`RELEASED` (the
models with weights of their own) to tell where a named model's weights are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from samwsss.choices import GROUNDING_TAGGER, PRESENCE_TAGGER

#: ``loader(name_or_path, **kwargs) -> stage``.
Loader = Callable[..., Any]


@dataclass(frozen=True)
class ModelCard:
    """A model users can name, and the loader that builds it.

    Attributes:
        kind: stage kind (``"boxer"``, ``"masker"``, ``"tagger"``, ``"segmenter"``).
        name: the registry name users type (``"grounding-dino-tiny"``).
        weights: where its weights are (hub id, URL or file name); recorded in manifests.
        description: one line for ``samwsss models``.
        defaults: keyword arguments the loader gets unless the caller gives them.
        loader: what builds this card, called as ``loader(name, **kwargs)``: a
            ``"module:attribute"`` string (``"samwsss.stages.boxer:GroundingDinoBoxer.
            from_pretrained"``, imported on first use) or a callable; ``None``: the
            kind's default loader (:data:`DEFAULT_LOADERS`).
        model_types: ``config.json`` ``model_type`` values this card's loader builds: a hub
            id or folder that is not a registered name goes to the loader of the card
            listing its type (else to the kind's default loader).
        gated: the hub repository is gated: downloading it needs an account that accepted
            its terms and a token (``hf auth login`` or ``HF_TOKEN``).
    """

    kind: str
    name: str
    weights: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    loader: str | Loader | None = None
    model_types: tuple[str, ...] = ()
    gated: bool = False


#: Stage kind -> the loader of whatever no card claims (paths and hub ids of unlisted
#: model types, checkpoint files): it names what it cannot load.
DEFAULT_LOADERS: dict[str, str] = {
    "boxer": "samwsss.stages.boxer:GroundingDinoBoxer.from_pretrained",
    "masker": "samwsss.stages.masker:SamMasker.from_pretrained",
    "tagger": "samwsss.ram.tagger:RAMTagger.from_pretrained",
    "segmenter": "samwsss.stages.segmenter_sam3:Sam3Segmenter.from_pretrained",
}


@dataclass(frozen=True)
class BoxerFamily:
    """How the boxer loads and runs one ``model_type`` of the Grounding DINO family
    (:mod:`samwsss.stages.boxer_family` documents the two families).

    Attributes:
        model_type: ``config.json`` ``model_type``.
        model_class: the transformers class that loads it (its name in ``transformers``).
        label: human name, for messages and ``repr``.
        box_threshold: default box threshold of this family.
        text_threshold: default text threshold of this family.
        share_backbone: whether the shared-backbone trick
            (:mod:`samwsss.stages.boxer_backbone`) is exact for this architecture.
    """

    model_type: str
    model_class: str
    label: str
    box_threshold: float
    text_threshold: float
    share_backbone: bool = True

    @property
    def defaults(self) -> dict[str, float]:
        """``{"box_threshold": ..., "text_threshold": ...}`` of this family."""
        return {"box_threshold": self.box_threshold, "text_threshold": self.text_threshold}

    def load_class(self) -> Any:
        """The transformers model class (imports transformers)."""
        import transformers

        return getattr(transformers, self.model_class)


GROUNDING_DINO = BoxerFamily(
    "grounding-dino", "GroundingDinoForObjectDetection", "Grounding DINO", 0.3, 0.25
)
MM_GROUNDING_DINO = BoxerFamily(
    "mm-grounding-dino",
    "MMGroundingDinoForObjectDetection",
    "MM-Grounding-DINO",
    0.4,
    0.3,
)

# -- boxer: Grounding DINO family ---------------------------------------------------------------
#: Released checkpoints by name: ``(name, hub id, family, description)``. The LLMDet
#: repositories were first published as ``rziga/llmdet_*`` (transformers' docs still link
#: there); their model cards now live under iSEE-Laboratory, the authors' organisation.
_BOXERS: tuple[tuple[str, str, BoxerFamily, str], ...] = (
    (
        "grounding-dino-tiny",
        "IDEA-Research/grounding-dino-tiny",
        GROUNDING_DINO,
        "Grounding DINO Swin-T (O365, GoldG, Cap4M): the paper's boxer",
    ),
    (
        "grounding-dino-base",
        "IDEA-Research/grounding-dino-base",
        GROUNDING_DINO,
        "Grounding DINO Swin-B: larger, more accurate boxer",
    ),
    (
        "mm-grounding-dino-tiny",
        "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det",
        MM_GROUNDING_DINO,
        "MM-Grounding-DINO Swin-T (O365, GoldG, V3Det): 50.6 COCO zero-shot AP",
    ),
    (
        "mm-grounding-dino-base",
        "openmmlab-community/mm_grounding_dino_base_o365v1_goldg_v3det",
        MM_GROUNDING_DINO,
        "MM-Grounding-DINO Swin-B (O365, GoldG, V3Det): 52.5 COCO zero-shot AP",
    ),
    (
        "mm-grounding-dino-large",
        "openmmlab-community/mm_grounding_dino_large_o365v2_oiv6_goldg",
        MM_GROUNDING_DINO,
        "MM-Grounding-DINO Swin-L (O365v2, OpenImagesV6, GoldG): 53.0 COCO zero-shot AP",
    ),
    (
        "llmdet-tiny",
        "iSEE-Laboratory/llmdet_tiny",
        MM_GROUNDING_DINO,
        "LLMDet Swin-T: MM-Grounding-DINO co-trained with an LLM (GroundingCap-1M)",
    ),
    (
        "llmdet-base",
        "iSEE-Laboratory/llmdet_base",
        MM_GROUNDING_DINO,
        "LLMDet Swin-B: MM-Grounding-DINO co-trained with an LLM (GroundingCap-1M)",
    ),
    (
        "llmdet-large",
        "iSEE-Laboratory/llmdet_large",
        MM_GROUNDING_DINO,
        "LLMDet Swin-L: MM-Grounding-DINO co-trained with an LLM (GroundingCap-1M)",
    ),
)

#: The released Grounding DINO family weights the boxer loads by name; each card's
#: ``defaults`` are its family's thresholds.
BOXER_MODELS = tuple(
    ModelCard(
        "boxer",
        name,
        weights,
        description,
        defaults=family.defaults,
        loader=DEFAULT_LOADERS["boxer"],
        model_types=(family.model_type,),
    )
    for name, weights, family, description in _BOXERS
)
#: Boxer registry name -> family.
BOXER_FAMILIES: dict[str, BoxerFamily] = {name: family for name, _, family, _ in _BOXERS}
DEFAULT_BOXER = "grounding-dino-tiny"

# -- masker: SAM ----------------------------------------------------------------------------------
#: Where Meta publishes the released segment-anything checkpoint files.
OFFICIAL_SAM_ROOT = "https://dl.fbaipublicfiles.com/segment_anything/"
#: Released segment-anything checkpoint file -> its model type.
OFFICIAL_SAM_CHECKPOINTS: dict[str, str] = {
    "sam_vit_h_4b8939.pth": "vit_h",
    "sam_vit_l_0b3195.pth": "vit_l",
    "sam_vit_b_01ec64.pth": "vit_b",
}
_META = "Meta's checkpoint (segment-anything)"

#: The released SAM weights the masker loads by name: transformers checkpoints on the
#: hub, and Meta's original files through segment-anything.
#: ``config.json`` ``model_type`` values of the transformers SAM checkpoints the masker loads.
MASKER_MODEL_TYPES = ("sam", "sam_hq", "sam2", "sam2_video")

MASKER_MODELS = tuple(
    ModelCard(
        "masker",
        name,
        weights,
        description,
        loader=DEFAULT_LOADERS["masker"],
        model_types=MASKER_MODEL_TYPES,
    )
    for name, weights, description in (
        ("sam-vit-huge", "facebook/sam-vit-huge", "SAM ViT-H (the paper's masker), transformers"),
        ("sam-vit-large", "facebook/sam-vit-large", "SAM ViT-L, transformers"),
        ("sam-vit-base", "facebook/sam-vit-base", "SAM ViT-B, transformers"),
        ("sam-hq-vit-huge", "syscv-community/sam-hq-vit-huge", "SAM-HQ ViT-H, transformers"),
        ("sam-hq-vit-large", "syscv-community/sam-hq-vit-large", "SAM-HQ ViT-L, transformers"),
        ("sam-hq-vit-base", "syscv-community/sam-hq-vit-base", "SAM-HQ ViT-B, transformers"),
        ("sam2-hiera-large", "facebook/sam2.1-hiera-large", "SAM 2.1 Hiera-L, transformers"),
        (
            "sam2-hiera-base-plus",
            "facebook/sam2.1-hiera-base-plus",
            "SAM 2.1 Hiera-B+, transformers",
        ),
        ("sam2-hiera-small", "facebook/sam2.1-hiera-small", "SAM 2.1 Hiera-S, transformers"),
        ("sam2-hiera-tiny", "facebook/sam2.1-hiera-tiny", "SAM 2.1 Hiera-T, transformers"),
        (
            "sam-vit-huge-official",
            OFFICIAL_SAM_ROOT + "sam_vit_h_4b8939.pth",
            "SAM ViT-H, " + _META,
        ),
        (
            "sam-vit-large-official",
            OFFICIAL_SAM_ROOT + "sam_vit_l_0b3195.pth",
            "SAM ViT-L, " + _META,
        ),
        (
            "sam-vit-base-official",
            OFFICIAL_SAM_ROOT + "sam_vit_b_01ec64.pth",
            "SAM ViT-B, " + _META,
        ),
    )
)


def official_sam_download(name_or_url: str) -> tuple[str, str] | None:
    """``(url, file name)`` of an official SAM checkpoint that is downloaded: an
    ``http(s)://`` URL, or a released file name (``sam_vit_h_4b8939.pth``, with no folder);
    ``None`` for anything else (a local path, a hub id)."""
    text = str(name_or_url)
    if text.startswith(("http://", "https://")):
        return text, text.rsplit("/", 1)[-1]
    path = PurePath(text)
    if path.name in OFFICIAL_SAM_CHECKPOINTS and path.parent == PurePath("."):
        return OFFICIAL_SAM_ROOT + path.name, path.name
    return None


# -- segmenter: SAM 3 ----------------------------------------------------------------------------
#: ``config.json`` ``model_type`` values the SAM 3 segmenter loads.
SEGMENTER_MODEL_TYPES = ("sam3", "sam3_video", "sam3_lite_text")

#: The released SAM 3 weights the segmenter loads by name.
SEGMENTER_MODELS = (
    ModelCard(
        "segmenter",
        "sam3",
        "facebook/sam3",
        "SAM 3 (ViT-H/14 + CLIP-L text): text prompt -> every instance's box and mask",
        gated=True,
        loader=DEFAULT_LOADERS["segmenter"],
        model_types=SEGMENTER_MODEL_TYPES,
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-s0",
        "vil-uob/sam3-litetext-s0",
        "SAM 3 LiteText S0: SAM 3 with the smallest MobileCLIP-style text encoder",
        loader=DEFAULT_LOADERS["segmenter"],
        model_types=SEGMENTER_MODEL_TYPES,
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-s1",
        "vil-uob/sam3-litetext-s1",
        "SAM 3 LiteText S1: SAM 3 with a small MobileCLIP-style text encoder",
        loader=DEFAULT_LOADERS["segmenter"],
        model_types=SEGMENTER_MODEL_TYPES,
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-l",
        "vil-uob/sam3-litetext-l",
        "SAM 3 LiteText L: SAM 3 with the large MobileCLIP-style text encoder",
        loader=DEFAULT_LOADERS["segmenter"],
        model_types=SEGMENTER_MODEL_TYPES,
    ),
)
DEFAULT_SEGMENTER = "sam3"


# -- tagger: RAM / RAM++ --------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficialWeights:
    """Where an official RAM checkpoint is published on the Hugging Face Hub."""

    name: str
    variant: str
    repo_id: str
    filename: str
    repo_type: str

    @property
    def url(self) -> str:
        """Browser/download URL of the file."""
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}/resolve/main/{self.filename}"


#: RAM registry name -> official weights.
OFFICIAL_RAM_WEIGHTS: dict[str, OfficialWeights] = {
    "ram-plus-swin-large-14m": OfficialWeights(
        "ram-plus-swin-large-14m",
        "ram_plus",
        "xinyu1205/recognize-anything-plus-model",
        "ram_plus_swin_large_14m.pth",
        "model",
    ),
    "ram-swin-large-14m": OfficialWeights(
        "ram-swin-large-14m",
        "ram",
        "xinyu1205/Recognize_Anything-Tag2Text",
        "ram_swin_large_14m.pth",
        "space",
    ),
}
#: Registry name of the default tagger.
DEFAULT_TAGGER = "ram-plus-swin-large-14m"

#: The official RAM / RAM++ weights, by registry name (downloaded on first use).
TAGGER_MODELS = (
    ModelCard(
        "tagger",
        "ram-plus-swin-large-14m",
        OFFICIAL_RAM_WEIGHTS["ram-plus-swin-large-14m"].url,
        "RAM++ Swin-L 14M: 4,585 tags with per-tag thresholds (default tagger)",
        defaults={"variant": "ram_plus"},
        loader=DEFAULT_LOADERS["tagger"],
    ),
    ModelCard(
        "tagger",
        "ram-swin-large-14m",
        OFFICIAL_RAM_WEIGHTS["ram-swin-large-14m"].url,
        "RAM Swin-L 14M (the survey's RAM-14M): 4,585 tags with per-tag thresholds",
        defaults={"variant": "ram"},
        loader=DEFAULT_LOADERS["tagger"],
    ),
)

#: Taggers that reuse another stage's model: no weights of their own, so they are not in
#: :data:`RELEASED`; their loaders take that stage as an argument.
REUSING_TAGGER_MODELS = (
    ModelCard(
        "tagger",
        GROUNDING_TAGGER,
        "(the pipeline's Grounding DINO)",
        "classes Grounding DINO detects when prompted with every class",
        loader="samwsss.stages.grounding_tagger:load_grounding_tagger",
    ),
    ModelCard(
        "tagger",
        PRESENCE_TAGGER,
        "(the pipeline's SAM 3 segmenter)",
        "classes whose SAM 3 presence probability passes a threshold",
        loader="samwsss.stages.presence_tagger:load_presence_tagger",
    ),
)

#: Kind -> its released models with weights of their own (what
#: :func:`samwsss.registry.released` and the weights preflight look in).
RELEASED: dict[str, tuple[ModelCard, ...]] = {
    "boxer": BOXER_MODELS,
    "masker": MASKER_MODELS,
    "segmenter": SEGMENTER_MODELS,
    "tagger": TAGGER_MODELS,
}

#: Kind -> every card the registry starts with.
CARDS: dict[str, tuple[ModelCard, ...]] = {
    **RELEASED,
    "tagger": TAGGER_MODELS + REUSING_TAGGER_MODELS,
}
