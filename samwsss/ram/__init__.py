"""Clean-room RAM / RAM++ (Recognize Anything) inference loading the official checkpoints.

Modules: :mod:`~samwsss.ram.config` (sizes), :mod:`~samwsss.ram.encoder` (Swin tokens),
:mod:`~samwsss.ram.head` (tagging head), :mod:`~samwsss.ram.model` (the network),
:mod:`~samwsss.ram.checkpoint` (official key mapping, downloads),
:mod:`~samwsss.ram.infer` (the configuration read off a checkpoint's shapes),
:mod:`~samwsss.ram.vocabulary` (tag list and thresholds), :mod:`~samwsss.ram.thresholds`, :mod:`~samwsss.ram.preprocess`,
:mod:`~samwsss.ram.types` (:class:`TagResult`) and :mod:`~samwsss.ram.tagger` (the stage).

Names are imported lazily so that ``import samwsss.ram`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RAMConfig": "samwsss.ram.config",
    "RAMModel": "samwsss.ram.model",
    "RAMTagger": "samwsss.ram.tagger",
    "RAMVocabulary": "samwsss.ram.vocabulary",
    "TagResult": "samwsss.ram.types",
    "load_vocabulary": "samwsss.ram.vocabulary",
    "mapping_tag_thresholds": "samwsss.ram.thresholds",
    "load_official_checkpoint": "samwsss.ram.checkpoint",
    "CheckpointError": "samwsss.ram.checkpoint",
    "infer_config": "samwsss.ram.infer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'samwsss.ram' has no attribute {name!r}")
