"""The Grounding DINO family of checkpoints the boxer runs, keyed by ``config.json`` ``model_type``.

transformers has two model types for this family, both in
``AutoModelForZeroShotObjectDetection``:

* ``grounding-dino`` -> ``GroundingDinoForObjectDetection``: the original (IDEA-Research).
* ``mm-grounding-dino`` -> ``MMGroundingDinoForObjectDetection``: MM-Grounding-DINO
  (OpenMMLab) and LLMDet (its checkpoints are MM-Grounding-DINO models fine-tuned with an
  LLM; transformers has no separate LLMDet type and their model cards load them with the
  auto class). Its forward is the original's line for line; only the contrastive class
  head differs: ``logits = <query, token> / sqrt(d_model) + bias`` with one learned bias
  per decoder layer (the original has no scale and no bias), and the decoder's class and
  box heads are not shared with the encoder's proposal heads. Loading such a checkpoint
  into ``GroundingDinoForObjectDetection`` drops those biases and scores on another scale,
  so the class is chosen by ``model_type`` from :data:`FAMILIES`, never assumed.

The families themselves (:class:`BoxerFamily`, :data:`GROUNDING_DINO`,
:data:`MM_GROUNDING_DINO`) are declared in :mod:`samwsss.released` with the released
checkpoints that use them; this module re-exports them.

Both families end in the same outputs (``logits`` ``(B, Q, max_text_len)``, ``-inf`` past
the caption; ``pred_boxes`` normalised ``cx, cy, w, h``), post-processed by the same
``GroundingDinoProcessor.post_process_grounded_object_detection`` (score = max sigmoid over
the caption's tokens), so the boxer's batching, backbone sharing and decoding apply to both.

Default thresholds differ per family because the two heads are calibrated differently:

* ``grounding-dino``: ``box_threshold`` 0.3, ``text_threshold`` 0.25 (the paper, the
  Grounded-SAM demo and transformers' Grounding DINO examples).
* ``mm-grounding-dino``: 0.4 / 0.3, the values of transformers' MM-Grounding-DINO
  documentation example (and the LLMDet model cards, which copy it). Not tuned for this
  pipeline: a run that cares should sweep them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samwsss.released import GROUNDING_DINO, MM_GROUNDING_DINO, BoxerFamily
from samwsss.stages.model_stage import HUB_KEYWORDS, hub_options

__all__ = [
    "FAMILIES",
    "GROUNDING_DINO",
    "HUB_KEYWORDS",
    "MM_GROUNDING_DINO",
    "BoxerFamily",
    "cached_model_type",
    "family_of_model",
    "family_of_type",
    "folder_model_type",
    "hub_model_type",
    "supported_types",
]


#: ``model_type`` -> family, the only model types the boxer accepts.
FAMILIES: Mapping[str, BoxerFamily] = {
    family.model_type: family for family in (GROUNDING_DINO, MM_GROUNDING_DINO)
}


def supported_types() -> str:
    """``'grounding-dino', 'mm-grounding-dino'`` for messages."""
    return ", ".join(repr(name) for name in FAMILIES)


def family_of_type(model_type: object, where: str) -> BoxerFamily:
    """The family of ``model_type``.

    Args:
        model_type: a ``config.json`` ``model_type``.
        where: the checkpoint, named in the error.

    Raises:
        ValueError: ``model_type`` is not a Grounding DINO family type.
    """
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise ValueError(
            f"{where} holds a {model_type!r} model, not Grounding DINO: the boxer runs model "
            f"types {supported_types()} (Grounding DINO, MM-Grounding-DINO, LLMDet); check "
            "--boxer"
        )
    return family


def family_of_model(model: Any) -> BoxerFamily:
    """The family of a loaded model, from ``model.config.model_type``.

    A model whose config has no ``model_type`` (a stand-in in tests) is taken as the
    original Grounding DINO.

    Raises:
        ValueError: the model's ``model_type`` is not a Grounding DINO family type.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        return GROUNDING_DINO
    return family_of_type(model_type, f"the given {type(model).__name__}")


def folder_model_type(path: Path) -> object:
    """``model_type`` of the ``config.json`` in folder ``path`` (``None`` when absent)."""
    return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")


def hub_model_type(name: str, load_kwargs: Mapping[str, Any]) -> object:
    """``model_type`` of hub id ``name``, from its ``config.json`` only (no weights).

    Raises:
        ValueError: the config cannot be fetched (unknown id, offline without a cache).
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, **hub_options(load_kwargs))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"cannot read the config of boxer {name!r} ({error}): give a registered name, a "
            "reachable hub id or a save_pretrained folder"
        ) from error
    return getattr(config, "model_type", None)


def cached_model_type(name: str) -> object:
    """``model_type`` of hub id ``name`` if its ``config.json`` is in the local hub cache,
    else ``None`` (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(found, str):
        return None
    return json.loads(Path(found).read_text(encoding="utf-8")).get("model_type")
