"""EoMT (Encoder-only Mask Transformer) on a DINOv2 ViT, trained with our mask loss.

Built as transformers' ``EomtForUniversalSegmentation`` with ``num_labels = C``. The ViT is
initialised from a self-supervised DINOv2 checkpoint (``facebook/dinov2-large``: a
``Dinov2Model``, not gated) by renaming its weights (``encoder.layer.i`` ->
``layers.i``, ``attention.o_proj`` -> ``attention.out_proj``), folding the [CLS] position
embedding into the [CLS] token (EoMT adds no position to it) and resizing the patch
position embeddings bicubically to the training grid (``image_size / patch_size``). The
queries, the upscaling block, the mask head and the class head are new.

The loss is :func:`samwsss.segnets.mask_loss.mask_classification_loss` on the predictions
of every masked block and of the final output (recorded by wrapping the model's
``predict`` during the forward), so 255 pixels take no part. EoMT's masked-attention
annealing is not used: ``attn_mask_probs`` stays 1, so masked attention runs in training
and inference alike (as Mask2Former's decoder).

The network takes inputs of exactly ``image_size`` x ``image_size`` (its position
embeddings are a fixed grid): training crops must have that size, and :meth:`logits` runs
a sliding window (stride 2/3 of the window, the image padded to at least one window)
over other sizes and averages the scores of overlapping windows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from samwsss.segnets.hf_arch import label_fields, unwrap_model
from samwsss.segnets.inference import window_probabilities
from samwsss.segnets.mask_loss import MaskClassificationArch

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: ``EomtConfig`` values of DINOv2-L (patch 14) for a random init.
DINOV2_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "mlp_ratio": 4,
    "patch_size": 14,
    "layerscale_value": 1e-5,
    "num_register_tokens": 0,
}
_DINOV2_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio")
_HEAD_PREFIXES = ("query.", "upscale_block.", "mask_head.", "class_predictor.", "criterion.")


def dinov2_to_eomt(
    state: Mapping[str, torch.Tensor], grid: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """EoMT ViT weights from a ``Dinov2Model`` state dict.

    Args:
        state: ``Dinov2Model.state_dict()``.
        grid: EoMT's patch grid ``(rows, cols)``.

    Returns:
        ``{eomt name: tensor}`` for the embeddings, the layers and the final norm.
    """
    from torch.nn import functional as F

    out: dict[str, torch.Tensor] = {}
    positions = state["embeddings.position_embeddings"]  # (1, 1 + n, D)
    out["embeddings.cls_token"] = state["embeddings.cls_token"] + positions[:, :1]
    patches = positions[0, 1:]
    side = math.isqrt(patches.shape[0])
    square = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if (side, side) != tuple(grid):
        square = F.interpolate(square.float(), size=grid, mode="bicubic", align_corners=False)
    out["embeddings.position_embeddings.weight"] = square[0].flatten(1).T.contiguous()
    for name, tensor in state.items():
        if name.startswith("embeddings.patch_embeddings."):
            out[name] = tensor
        elif name.startswith("encoder.layer."):
            renamed = "layers." + name[len("encoder.layer.") :]
            out[renamed.replace(".attention.o_proj.", ".attention.out_proj.")] = tensor
        elif name.startswith("layernorm."):
            out[name] = tensor
    return out


class EomtArch(MaskClassificationArch):
    """EoMT behind :class:`~samwsss.segnets.arch.SegmentationArch`.

    The ViT (embeddings, layers, final norm) trains at ``lr * backbone_lr_mult``, the
    queries and heads at ``lr``. Norms, queries, position embeddings and tokens take no
    weight decay.

    Args:
        image_size: the network's (and the training crops') square input side, a multiple
            of the patch size (518 = 37 x 14 for DINOv2).
        config: ``EomtConfig`` overrides (``num_queries``, ``num_blocks``, ...); default
            100 queries and 4 masked blocks.
        backbone: ViT values for a random init; default DINOv2-L's.
        drop_path_rate: stochastic depth of the ViT.
        num_points, oversample_ratio, importance_sample_ratio, no_object_weight: the mask
            loss's settings (:class:`~samwsss.segnets.mask_loss.MaskLossSettings`).
    """

    name = "eomt"
    backbone_type = "dinov2"
    backbone_label = "DINOv2"
    backbone_example = "facebook/dinov2-large"
    #: inference on other sizes runs a sliding window of ``image_size`` crops (the trainer
    #: and ``predict`` read this)
    fixed_input_size = True
    no_decay_names = ("position_embeddings", "cls_token", "register_tokens")

    def __init__(
        self,
        image_size: int = 518,
        config: Mapping[str, Any] | None = None,
        backbone: Mapping[str, Any] | None = None,
        drop_path_rate: float = 0.0,
        num_points: int | None = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        no_object_weight: float = 0.1,
    ) -> None:
        self.image_size = int(image_size)
        super().__init__(
            config={"num_queries": 100, **dict(config or {})},
            backbone=DINOV2_LARGE if backbone is None else backbone,
            drop_path_rate=drop_path_rate,
            num_points=num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
            no_object_weight=no_object_weight,
        )

    def model_classes(self) -> tuple[Any, Any]:
        """``EomtConfig`` and ``EomtForUniversalSegmentation``."""
        from transformers import EomtConfig, EomtForUniversalSegmentation

        return EomtConfig, EomtForUniversalSegmentation

    def is_backbone(self, parameter: str) -> bool:
        """The ViT's parameters (everything but the queries and the heads)."""
        return not parameter.startswith(_HEAD_PREFIXES)

    def _build_random(self, num_classes: int, vit: Mapping[str, Any] | None = None) -> Any:
        """A random EoMT on a ViT of ``vit``'s values (default: :attr:`backbone`'s).

        Raises:
            ValueError: ``image_size`` is not a multiple of the patch size.
        """
        from transformers import EomtConfig

        vit = self.backbone if vit is None else vit
        patch = int(vit["patch_size"])
        if self.image_size % patch:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of the patch size {patch}; "
                f"use e.g. {patch * max(1, round(self.image_size / patch))}"
            )
        config = EomtConfig(
            **{
                **vit,
                **self.config,
                "image_size": self.image_size,
                "drop_path_rate": self.drop_path_rate,
                **label_fields(num_classes),
                "no_object_weight": self.settings.no_object_weight,
            }
        )
        return self.new_model(config)

    def _build_from_backbone(self, num_classes: int, init: str, source: Any) -> nn.Module:
        """EoMT on the DINOv2 checkpoint ``init`` (``source``: its config): the ViT weights
        converted (see the module doc), the queries and heads new.

        Raises:
            ValueError: ``image_size`` is not a multiple of the patch size, or the weights
                do not fit.
        """
        import torch
        from transformers import Dinov2Model

        vit = {key: getattr(source, key) for key in _DINOV2_KEYS}
        vit.update(
            patch_size=int(source.patch_size),
            layer_norm_eps=float(source.layer_norm_eps),
            layerscale_value=float(source.layerscale_value),
            use_swiglu_ffn=bool(source.use_swiglu_ffn),
            hidden_act=str(source.hidden_act),
            num_register_tokens=0,
        )
        model = self._build_random(num_classes, vit)
        pretrained = Dinov2Model.from_pretrained(init, dtype=torch.float32)
        weights = dinov2_to_eomt(pretrained.state_dict(), model.grid_size)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        new = _HEAD_PREFIXES + ("attn_mask_probs", "embeddings.register_tokens")
        lacking = [name for name in missing if not name.startswith(new)]
        if unexpected or lacking:
            raise ValueError(
                f"init {init!r} does not fit EoMT: unexpected {unexpected[:5]}, missing "
                f"{lacking[:5]}; pass a Dinov2Model checkpoint"
            )
        logger.info("EoMT's ViT initialised from %s (queries and heads random)", init)
        return model

    def outputs(
        self, model: nn.Module, pixels: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(class_logits, mask_logits)`` of every masked block and of the output.

        Raises:
            ValueError: ``pixels`` is not ``image_size`` square.
        """
        inner = unwrap_model(model)
        side = int(inner.config.image_size)
        if tuple(pixels.shape[-2:]) != (side, side):
            raise ValueError(
                f"EoMT takes {side}x{side} inputs, got {tuple(pixels.shape[-2:])}; set the "
                f"training crop size to {side} (or build with image_size equal to the crop)"
            )
        recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = inner.predict

        def recording(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            masks, classes = original(hidden)
            recorded.append((classes, masks))
            return masks, classes

        inner.predict = recording
        try:
            model(pixel_values=pixels)
        finally:
            del inner.predict
        return recorded[::-1]  # the final output first

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 ``log`` semantic scores. The network takes exactly
        ``image_size`` squares: another input size runs ``predict``'s sliding window
        (:func:`samwsss.segnets.inference.window_probabilities`, stride 2/3) over it."""
        import torch

        side = int(unwrap_model(model).config.image_size)
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        if size == (side, side):
            return super().logits(model, pixels)
        probs = window_probabilities(model, self, pixels, side, max(1, side * 2 // 3))
        return torch.log(probs + 1e-8)
