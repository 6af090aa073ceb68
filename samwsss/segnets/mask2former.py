"""Mask2Former on a Swin backbone, trained with our ignore-exact mask loss.

Built as transformers' ``Mask2FormerForUniversalSegmentation`` with ``num_labels = C``
(the semantic classes, background included; the class head has ``C + 1`` outputs, the last
"no object"). The Swin backbone is initialised from an image-classification checkpoint
(``microsoft/swin-large-patch4-window12-384-in22k``: ``SwinForImageClassification``
weights, loaded through ``SwinBackbone.from_pretrained``); the pixel decoder, the
transformer decoder and the per-stage output norms are new. The backbone gets stochastic
depth 0.3 as Mask2Former's Swin configs.

The model is never called with ``mask_labels``/``class_labels``: the loss is
:func:`samwsss.segnets.mask_loss.mask_classification_loss` on the final and auxiliary
outputs, in which 255 pixels take no part (see that module). :meth:`Mask2FormerArch.logits`
returns ``log`` of Mask2Former's semantic scores (see
:func:`~samwsss.segnets.mask_loss.semantic_log_scores`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from samwsss.segnets.hf_arch import label_fields
from samwsss.segnets.mask_loss import MaskClassificationArch

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: ``SwinConfig`` values of Swin-L (window 12, 384 pretraining) for a random init.
SWIN_LARGE = {
    "image_size": 384,
    "embed_dim": 192,
    "depths": [2, 2, 18, 2],
    "num_heads": [6, 12, 24, 48],
    "window_size": 12,
}
_OUT_FEATURES = ["stage1", "stage2", "stage3", "stage4"]
_BACKBONE_PREFIX = "model.pixel_level_module.encoder."


class Mask2FormerArch(MaskClassificationArch):
    """Mask2Former behind :class:`~samwsss.segnets.arch.SegmentationArch`.

    Swin trains at ``lr * backbone_lr_mult``, the rest at ``lr``. Norms, ``nn.Embedding``
    tables (queries, level embeddings) and Swin's position tables take no weight decay
    (Mask2Former's ``WEIGHT_DECAY_NORM`` / ``WEIGHT_DECAY_EMBED`` 0).

    Args:
        config: ``Mask2FormerConfig`` overrides (``num_queries``, ``decoder_layers``,
            ``hidden_dim``, ...); default Mask2Former's (100 queries, 10 decoder layers,
            hidden 256).
        backbone: ``SwinConfig`` values for a random init (``init`` none); default Swin-L.
        drop_path_rate: the Swin backbone's stochastic depth.
        num_points, oversample_ratio, importance_sample_ratio, no_object_weight: the loss's
            point sampling and no-object weight
            (:class:`~samwsss.segnets.mask_loss.MaskLossSettings`; ``num_points`` ``None`` =
            dense over the valid pixels).
    """

    name = "mask2former"
    backbone_type = "swin"
    backbone_label = "Swin"
    backbone_example = "microsoft/swin-large-patch4-window12-384-in22k"
    #: Swin's position tables (Mask2Former's ``WEIGHT_DECAY_EMBED 0``)
    no_decay_names = ("relative_position_bias_table", "position_embeddings")

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        backbone: Mapping[str, Any] | None = None,
        drop_path_rate: float = 0.3,
        num_points: int | None = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        no_object_weight: float = 0.1,
    ) -> None:
        super().__init__(
            config=config or {},
            backbone=SWIN_LARGE if backbone is None else backbone,
            drop_path_rate=drop_path_rate,
            num_points=num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
            no_object_weight=no_object_weight,
        )

    def model_classes(self) -> tuple[Any, Any]:
        """``Mask2FormerConfig`` and ``Mask2FormerForUniversalSegmentation``."""
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

        return Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    def is_backbone(self, parameter: str) -> bool:
        """The Swin encoder's parameters."""
        return parameter.startswith(_BACKBONE_PREFIX)

    def _build_random(self, num_classes: int, backbone_config: Any = None) -> Any:
        """A random Mask2Former on a Swin of ``backbone_config`` (default: of
        :attr:`backbone`'s values)."""
        from transformers import Mask2FormerConfig, SwinConfig

        if backbone_config is None:
            backbone_config = SwinConfig(
                **{
                    **self.backbone,
                    "out_features": _OUT_FEATURES,
                    "drop_path_rate": self.drop_path_rate,
                }
            )
        config = Mask2FormerConfig(
            **{
                **self.config,
                "backbone_config": backbone_config,
                **label_fields(num_classes),
                "no_object_weight": self.settings.no_object_weight,
            }
        )
        return self.new_model(config)

    def _build_from_backbone(self, num_classes: int, init: str, source: Any) -> nn.Module:
        """Mask2Former on the Swin image-classification checkpoint ``init`` (``source``: its
        config): the backbone's weights loaded, the pixel and transformer decoders new."""
        import torch
        from transformers import SwinBackbone, SwinConfig

        values = source.to_dict()
        for key in ("out_indices", "out_features", "stage_names", "id2label", "label2id"):
            values.pop(key, None)
        values.update(
            out_features=_OUT_FEATURES, drop_path_rate=self.drop_path_rate, architectures=None
        )
        backbone_config = SwinConfig.from_dict(values)
        model = self._build_random(num_classes, backbone_config)
        pretrained = SwinBackbone.from_pretrained(
            init, out_features=_OUT_FEATURES, dtype=torch.float32
        )
        encoder = model.model.pixel_level_module.encoder
        encoder.load_state_dict(pretrained.state_dict())
        logger.info("Mask2Former's Swin backbone initialised from %s (the rest random)", init)
        return model

    def outputs(
        self, model: nn.Module, pixels: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(class_logits, mask_logits)`` of the final layer, then of the auxiliary ones."""
        out = model(pixel_values=pixels, output_auxiliary_logits=True)
        layers = [(out.class_queries_logits, out.masks_queries_logits)]
        for aux in out.auxiliary_logits or ():
            layers.append((aux["class_queries_logits"], aux["masks_queries_logits"]))
        return layers
