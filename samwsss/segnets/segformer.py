"""SegFormer: a MiT (Mix Transformer) encoder with the all-MLP decode head.

Built as transformers' ``SegformerForSemanticSegmentation``. The encoder is initialised
from a MiT checkpoint trained on ImageNet classification (``nvidia/mit-b5``, a
``SegformerForImageClassification`` / ``SegformerModel`` checkpoint); the decode head is
new (random). The decode head's logits come out at 1/4 of the input size.

Loss: cross-entropy of the logits upsampled (bilinear, ``align_corners=False``) to the
label size, summed over the pixels not labelled 255 and divided by the number of those
pixels in the global batch (all-reduced under DDP, see
:func:`samwsss.segnets.hf_arch.global_normalizers`). An ignored pixel contributes nothing:
neither to the sum nor to the normaliser, and the gradient of the loss with respect to the
upsampled logits there is exactly zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from samwsss.segnets.arch import IGNORE_INDEX
from samwsss.segnets.hf_arch import (
    HFSegmenterArch,
    check_num_classes,
    global_normalizers,
    init_config,
    is_random_init,
    label_fields,
    refuse_segmentation_init,
    segmentation_evidence,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: ``SegformerConfig`` values of MiT-B5 (used for a random init without a config).
MIT_B5 = {
    "depths": [3, 6, 40, 3],
    "hidden_sizes": [64, 128, 320, 512],
    "num_attention_heads": [1, 2, 5, 8],
    "sr_ratios": [8, 4, 2, 1],
    "decoder_hidden_size": 768,
}


def pixel_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    normalizer: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Cross-entropy over the valid pixels, divided by ``normalizer``.

    Args:
        logits: ``(B, C, h, w)`` logits (any float dtype; computed in float32), upsampled
            bilinearly to the labels' size when ``(h, w)`` differs.
        labels: ``(B, H, W)`` int64, :data:`IGNORE_INDEX` ignored.
        normalizer: divisor (default: the number of valid pixels; clamped to >= 1).

    Returns:
        Scalar float32 loss (0 when no pixel is valid).
    """
    from torch.nn import functional as F

    logits, labels = logits.float(), labels.long()
    size = (int(labels.shape[-2]), int(labels.shape[-1]))
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    if normalizer is None:
        normalizer = (labels != IGNORE_INDEX).sum().float()
    if isinstance(normalizer, float | int):
        return total / max(float(normalizer), 1.0)
    return total / normalizer.clamp(min=1).to(total.dtype)


class SegFormerArch(HFSegmenterArch):
    """SegFormer (MiT encoder + all-MLP head) behind :class:`SegmentationArch`.

    The encoder (``segformer.*``) trains at ``lr * backbone_lr_mult``, the decode head at
    ``lr``; norms take no weight decay (mmsegmentation's SegFormer ``paramwise_cfg``).

    Args:
        config: ``SegformerConfig`` keyword values for a random init (``init`` none);
            default MiT-B5's. With an ``init``, the encoder's config comes from it.
        drop_path_rate: stochastic depth of the encoder (0.1 as the SegFormer recipe).
    """

    name = "segformer"

    def __init__(
        self, config: Mapping[str, Any] | None = None, drop_path_rate: float = 0.1
    ) -> None:
        self.config = dict(MIT_B5 if config is None else config)
        self.drop_path_rate = float(drop_path_rate)

    def model_classes(self) -> tuple[Any, Any]:
        """``SegformerConfig`` and ``SegformerForSemanticSegmentation``."""
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        return SegformerConfig, SegformerForSemanticSegmentation

    def is_backbone(self, parameter: str) -> bool:
        """The MiT encoder's parameters."""
        return parameter.startswith("segformer.")

    def build(
        self, num_classes: int, init: str | None, *, allow_segmentation_init: bool = False
    ) -> nn.Module:
        """``SegformerForSemanticSegmentation`` with ``num_classes`` outputs.

        Args:
            init: a MiT checkpoint (hub id such as ``nvidia/mit-b5`` or a local folder of a
                ``segformer`` model): its encoder weights are loaded, the decode head is new.
                A segmentation checkpoint (``SegformerForSemanticSegmentation``) is refused
                unless ``allow_segmentation_init``; then its decode head is loaded too,
                except a classifier of another number of classes.

        Raises:
            ValueError: ``init`` is not a ``segformer`` model, or is segmentation-trained
                and not allowed.
        """
        import torch
        from transformers import SegformerConfig, SegformerModel

        num_classes = check_num_classes(num_classes)
        labels = label_fields(num_classes)
        if is_random_init(init):
            config = SegformerConfig(
                **{**self.config, "drop_path_rate": self.drop_path_rate}, **labels
            )
            return self.new_model(config)
        assert init is not None
        source = init_config(init)
        if source.model_type != "segformer":
            raise ValueError(
                f"init {init!r} is a {source.model_type!r} model; segformer needs a MiT/SegFormer "
                "checkpoint such as 'nvidia/mit-b5'"
            )
        refuse_segmentation_init(source, init, allow_segmentation_init)
        if segmentation_evidence(source) is not None:
            return self.load_whole(init, num_classes, drop_path_rate=self.drop_path_rate)
        config = SegformerConfig.from_dict(
            {
                **source.to_dict(),
                "drop_path_rate": self.drop_path_rate,
                "architectures": None,
                **labels,
            }
        )
        model = self.new_model(config)
        encoder = SegformerModel.from_pretrained(init, dtype=torch.float32)
        model.segformer.load_state_dict(encoder.state_dict())
        logger.info("SegFormer encoder initialised from %s (decode head random)", init)
        return model

    def loss(
        self, model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, world_size: int = 1
    ) -> torch.Tensor:
        """Mean cross-entropy over the valid pixels of the global batch (see the module doc)."""
        logits = model(pixel_values=pixels).logits
        valid = (labels != IGNORE_INDEX).sum().float()
        return pixel_cross_entropy(logits, labels, global_normalizers(valid, world_size))

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 logits, upsampled bilinearly to the input size."""
        from torch.nn import functional as F

        logits = model(pixel_values=pixels).logits.float()
        return F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
