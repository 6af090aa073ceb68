"""Sizes of a RAM / RAM++ network (:class:`RAMConfig`) and the two official presets.

The official models are a Swin-L image encoder at 384x384 (patch 4, window 12, embed 192,
depths 2-2-18-2, heads 6-12-24-48, final width 1536), a 512-wide label space and a 2-layer
768-wide cross-attention-only tagging head over 4,585 tags. Every size is a field so that
tests can build tiny models with the same structure.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The two model families: RAM (one embedding per tag) and RAM++ (51 per tag, reweighted).
VARIANTS = ("ram", "ram_plus")


@dataclass(frozen=True)
class RAMConfig:
    """Architecture sizes of a RAM (``variant="ram"``) or RAM++ (``"ram_plus"``) model.

    Attributes:
        variant: ``"ram"`` or ``"ram_plus"``.
        num_tags: number of tags (rows of the vocabulary), 4,585 for the official models.
        descriptions_per_tag: RAM++ only: label embeddings per tag (51), reweighted per image.
        image_size: square input side in pixels (384).
        patch_size: Swin patch size (4).
        window_size: Swin attention window (12).
        embed_dim: Swin stage-0 width (192); stage ``i`` is ``embed_dim * 2**i`` wide.
        depths: Swin blocks per stage ((2, 2, 18, 2)).
        num_heads: Swin heads per stage ((6, 12, 24, 48)).
        swin_layer_norm_eps: LayerNorm epsilon inside Swin (1e-5, torch's default).
        label_dim: width of the label embeddings and of the projected image tokens (512).
        head_hidden_size: tagging-head width (768).
        head_num_layers: tagging-head layers (2).
        head_num_heads: tagging-head attention heads (4).
        head_intermediate_size: tagging-head feed-forward width (3072).
        head_layer_norm_eps: tagging-head LayerNorm epsilon (1e-12).
    """

    variant: str = "ram_plus"
    num_tags: int = 4585
    descriptions_per_tag: int = 51
    image_size: int = 384
    patch_size: int = 4
    window_size: int = 12
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    swin_layer_norm_eps: float = 1e-5
    label_dim: int = 512
    head_hidden_size: int = 768
    head_num_layers: int = 2
    head_num_heads: int = 4
    head_intermediate_size: int = 3072
    head_layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        if self.variant not in VARIANTS:
            raise ValueError(f"RAM variant {self.variant!r} unknown: use one of {VARIANTS}")
        for field_name in (
            "num_tags",
            "descriptions_per_tag",
            "image_size",
            "patch_size",
            "window_size",
            "embed_dim",
            "label_dim",
            "head_hidden_size",
            "head_num_layers",
            "head_num_heads",
            "head_intermediate_size",
        ):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"RAMConfig.{field_name} must be a positive integer, got {value!r}"
                )
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"RAMConfig.depths {self.depths} and num_heads {self.num_heads} must be non-empty "
                "and of equal length (one entry per Swin stage)"
            )
        if min(self.depths) < 1 or min(self.num_heads) < 1:
            raise ValueError("RAMConfig.depths and num_heads entries must be positive")
        for stage, heads in enumerate(self.num_heads):
            width = self.stage_width(stage)
            if width % heads:
                raise ValueError(
                    f"Swin stage {stage} width {width} is not divisible by its {heads} heads: "
                    "change embed_dim or num_heads"
                )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        for stage, side in enumerate(self.stage_resolutions):
            # The official Swin shrinks the window when a stage is smaller than it, which
            # would change the relative-position table's size: keep every stage a whole
            # number of windows, as the official 384/12 configuration is (8, 4, 2, 1).
            if side < self.window_size or side % self.window_size:
                raise ValueError(
                    f"Swin stage {stage} is {side}x{side} tokens, not a whole number of "
                    f"{self.window_size}x{self.window_size} windows: choose image_size, "
                    "patch_size and window_size so that image_size / patch_size / 2**stage is "
                    "a multiple of window_size for every stage"
                )
        if self.head_hidden_size % self.head_num_heads:
            raise ValueError(
                f"head_hidden_size {self.head_hidden_size} is not divisible by head_num_heads "
                f"{self.head_num_heads}"
            )

    @property
    def is_plus(self) -> bool:
        """True for RAM++ (multiple reweighted descriptions per tag)."""
        return self.variant == "ram_plus"

    @property
    def label_rows(self) -> int:
        """Rows of ``label_embed``: ``num_tags`` (RAM) or ``num_tags * descriptions_per_tag``."""
        return self.num_tags * (self.descriptions_per_tag if self.is_plus else 1)

    @property
    def num_stages(self) -> int:
        """Number of Swin stages."""
        return len(self.depths)

    def stage_width(self, stage: int) -> int:
        """Channel width of Swin stage ``stage``."""
        return self.embed_dim * 2**stage

    @property
    def vision_width(self) -> int:
        """Width of the final Swin tokens (1536 for Swin-L)."""
        return self.stage_width(self.num_stages - 1)

    @property
    def stage_resolutions(self) -> tuple[int, ...]:
        """Token-grid side of each Swin stage (96, 48, 24, 12 at 384)."""
        grid = self.image_size // self.patch_size
        return tuple(grid // 2**stage for stage in range(self.num_stages))

    @property
    def num_image_tokens(self) -> int:
        """Image tokens entering the head: the pooled token plus the final patch tokens."""
        return 1 + self.stage_resolutions[-1] ** 2


#: The official RAM++ Swin-L 14M model (``ram_plus_swin_large_14m.pth``).
RAM_PLUS_SWIN_LARGE = RAMConfig(variant="ram_plus")
#: The official RAM Swin-L 14M model (``ram_swin_large_14m.pth``), the survey's RAM-14M.
RAM_SWIN_LARGE = RAMConfig(variant="ram")


def default_config(variant: str, num_tags: int = 4585) -> RAMConfig:
    """The official Swin-L configuration of ``variant`` with ``num_tags`` tags."""
    if variant not in VARIANTS:
        raise ValueError(f"RAM variant {variant!r} unknown: use one of {VARIANTS}")
    return RAMConfig(variant=variant, num_tags=num_tags)
