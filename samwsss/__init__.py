"""samwsss: semantic-segmentation pseudo masks from image-level labels with foundation models.

Importing the package loads nothing heavy; the public objects below are imported on first
attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "load_mapping": "samwsss.mapping",
    "ClassMapping": "samwsss.mapping",
    "read_label_png": "samwsss.labelio",
    "write_label_png": "samwsss.labelio",
    "open_dataset": "samwsss.data",
    "Pipeline": "samwsss.pipeline",
    "PipelineConfig": "samwsss.pipeline",
    "PipelineResult": "samwsss.pipeline",
    "preset": "samwsss.pipeline",
    "Detections": "samwsss.detections",
    "MaskMerger": "samwsss.stages.merger",
    "TagMapper": "samwsss.stages.mapper",
    "create": "samwsss.registry",
    "list_models": "samwsss.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samwsss' has no attribute {name!r}")
