"""The released models each stage kind loads by name, as registry cards, importable
without torch.

Each table is declared here once: the stage modules register their loaders with these
cards (``registry.register(kind, loader, MODELS)``), and the weights preflight
(:mod:`samwsss.weights`) reads them through :func:`samwsss.registry.released` to tell
where a named model's weights are without importing torch, torchvision or transformers.
Importing this module registers the cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from samwsss import registry
from samwsss.registry import ModelCard
from samwsss.stages.boxer_family import GROUNDING_DINO, MM_GROUNDING_DINO, BoxerFamily

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
    ModelCard("boxer", name, weights, description, defaults=family.defaults)
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
MASKER_MODELS = tuple(
    ModelCard("masker", name, weights, description)
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
#: The released SAM 3 weights the segmenter loads by name.
SEGMENTER_MODELS = (
    ModelCard(
        "segmenter",
        "sam3",
        "facebook/sam3",
        "SAM 3 (ViT-H/14 + CLIP-L text): text prompt -> every instance's box and mask",
        gated=True,
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-s0",
        "vil-uob/sam3-litetext-s0",
        "SAM 3 LiteText S0: SAM 3 with the smallest MobileCLIP-style text encoder",
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-s1",
        "vil-uob/sam3-litetext-s1",
        "SAM 3 LiteText S1: SAM 3 with a small MobileCLIP-style text encoder",
    ),
    ModelCard(
        "segmenter",
        "sam3-litetext-l",
        "vil-uob/sam3-litetext-l",
        "SAM 3 LiteText L: SAM 3 with the large MobileCLIP-style text encoder",
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
    ),
    ModelCard(
        "tagger",
        "ram-swin-large-14m",
        OFFICIAL_RAM_WEIGHTS["ram-swin-large-14m"].url,
        "RAM Swin-L 14M (the survey's RAM-14M): 4,585 tags with per-tag thresholds",
        defaults={"variant": "ram"},
    ),
)

#: Kind -> its released models (what :func:`samwsss.registry.released` looks in).
RELEASED: dict[str, tuple[ModelCard, ...]] = {
    "boxer": BOXER_MODELS,
    "masker": MASKER_MODELS,
    "segmenter": SEGMENTER_MODELS,
    "tagger": TAGGER_MODELS,
}

for _cards in RELEASED.values():
    registry.register_cards(_cards)
