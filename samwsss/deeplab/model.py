"""Old home of the DeepLabV2 network: it lives in :mod:`samwsss.segnets.deeplab` now.

These names are re-exported so that ``from samwsss.deeplab.model import build_deeplab``
keeps working.
"""

from samwsss.segnets.deeplab import (
    ASPPV2,
    BACKBONE_CHANNELS,
    OUTPUT_STRIDE,
    DeepLabV2,
    build_deeplab,
    count_parameters,
    load_local_weights,
    load_torchvision_backbone,
)
from samwsss.segnets.inference import upsample_logits

__all__ = [
    "ASPPV2",
    "BACKBONE_CHANNELS",
    "OUTPUT_STRIDE",
    "DeepLabV2",
    "build_deeplab",
    "count_parameters",
    "load_local_weights",
    "load_torchvision_backbone",
    "upsample_logits",
]
