"""Official RAM / RAM++ checkpoints: where they are, how their keys map onto :class:`RAMModel`.

An official file is ``torch.save({'model': state_dict})`` of the authors' model. The parts
inference uses are mapped key by key (:func:`official_key_map`); every one must be present
with the right shape and nothing else may be left over, or loading fails with the list of
offending keys. Deliberately skipped:

- the captioning parts of RAM checkpoints (:data:`IGNORED_PREFIXES`);
- the Swin buffers ``attn.relative_position_index`` and ``attn_mask`` (recomputed from the
  window size, as the authors' own loader does).

Older checkpoints name the tagging head ``vision_multi.*``; it is read as ``tagging_head.*``.

The Swin weights are in Microsoft's layout (``visual_encoder.layers.{i}.blocks.{j}.attn.qkv``
fused, patch merging at the end of stages 0-2 as ``layers.{i}.downsample``); transformers'
``SwinModel`` also merges patches at the end of stage ``i`` but keeps query, key and value
apart, so the fused ``qkv`` rows are split in that order.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from samwsss.checkpoints import CheckpointError, load_checkpoint, tensor_state
from samwsss.ram.config import RAMConfig
from samwsss.ram.model import RAMModel
from samwsss.released import OFFICIAL_RAM_WEIGHTS, OfficialWeights

logger = logging.getLogger(__name__)

#: Official-checkpoint prefixes that inference does not use (RAM's captioning branch).
IGNORED_PREFIXES: tuple[str, ...] = ("tag_encoder.", "text_decoder.")
#: Older names of a prefix -> current official name.
LEGACY_PREFIXES: dict[str, str] = {"vision_multi.": "tagging_head."}
#: Swin buffers stored in official checkpoints that are recomputed instead of loaded.
RECOMPUTED_KEY = re.compile(
    r"^visual_encoder\.layers\.\d+\.blocks\.\d+\.(attn\.relative_position_index|attn_mask)$"
)

# Per Swin block: official suffix -> (our suffixes, whether it is a module with weight+bias).
# A tuple of several suffixes means the official tensor is split along dim 0 in that order.
_BLOCK_LAYOUTS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    # transformers whose SwinAttention has q_proj/k_proj/v_proj/o_proj (5.2x).
    "proj": {
        "norm1": (("layernorm_before",), True),
        "attn.qkv": (("attention.q_proj", "attention.k_proj", "attention.v_proj"), True),
        "attn.proj": (("attention.o_proj",), True),
        "attn.relative_position_bias_table": (
            ("attention.relative_position_bias.relative_position_bias_table",),
            False,
        ),
        "norm2": (("layernorm_after",), True),
        "mlp.fc1": (("mlp.fc1",), True),
        "mlp.fc2": (("mlp.fc2",), True),
    },
    # transformers whose Swin layers have attention.self.{query,key,value} (4.x, early 5.x).
    "self": {
        "norm1": (("layernorm_before",), True),
        "attn.qkv": (("attention.self.query", "attention.self.key", "attention.self.value"), True),
        "attn.proj": (("attention.output.dense",), True),
        "attn.relative_position_bias_table": (
            ("attention.self.relative_position_bias_table",),
            False,
        ),
        "norm2": (("layernorm_after",), True),
        "mlp.fc1": (("intermediate.dense",), True),
        "mlp.fc2": (("output.dense",), True),
    },
}

# Per head layer: official suffix -> our suffix (all modules with weight+bias).
_HEAD_LAYER = {
    "crossattention.self.query": "cross_attention.query",
    "crossattention.self.key": "cross_attention.key",
    "crossattention.self.value": "cross_attention.value",
    "crossattention.output.dense": "cross_attention.output",
    "crossattention.output.LayerNorm": "cross_attention.norm",
    "intermediate.dense": "feed_forward.fc1",
    "output.dense": "feed_forward.fc2",
    "output.LayerNorm": "feed_forward.norm",
}


class WeightsUnavailableError(OSError):
    """Official weights could not be downloaded; the message says how to pass a local file."""


#: Registry name -> official weights (declared in :mod:`samwsss.released`).
OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = OFFICIAL_RAM_WEIGHTS


def download_official_weights(
    name: str, *, cache_dir: str | os.PathLike[str] | None = None, revision: str | None = None
) -> Path:
    """Local path of an official checkpoint, downloaded with ``huggingface_hub`` (cached).

    Raises:
        ValueError: ``name`` is not an official checkpoint name.
        WeightsUnavailableError: the download failed (offline, hub unreachable).
    """
    if name not in OFFICIAL_WEIGHTS:
        raise ValueError(
            f"unknown RAM checkpoint {name!r}: use one of {', '.join(OFFICIAL_WEIGHTS)} or the "
            "path of a .pth file"
        )
    weights = OFFICIAL_WEIGHTS[name]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        path = hf_hub_download(
            repo_id=weights.repo_id,
            filename=weights.filename,
            repo_type=weights.repo_type,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            revision=revision,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        raise WeightsUnavailableError(
            f"could not download {weights.filename} from the Hugging Face Hub ({error}). "
            f"Download it from {weights.url} yourself and pass its path instead of {name!r}"
        ) from error
    return Path(path)


def read_checkpoint(
    path: str | os.PathLike[str], *, allow_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (its ``'model'`` entry, or the file itself).

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain containers
    only, no code execution) and memory-mapped when the format allows it.

    Args:
        path: ``.pth`` file.
        allow_pickle: read with full unpickling; only for files from a source you trust,
            when the safe reader rejects extra Python objects stored beside the weights.

    Raises:
        CheckpointError: unreadable file, or no state dict inside.
    """
    expected = "an official RAM / RAM++ .pth (a state dict, or one under 'model')"
    loaded = load_checkpoint(
        path, kind="RAM", expected=expected, allow_pickle=allow_pickle, mmap=True
    )
    return tensor_state(loaded, path, kind="RAM", expected=expected)


def detect_swin_layout(model: RAMModel) -> str:
    """Which transformers Swin parameter naming ``model`` uses (a key of the layout table)."""
    names = set(model.visual_encoder.swin.state_dict())
    block = "encoder.layers.0.blocks.0."
    if f"{block}attention.q_proj.weight" in names:
        return "proj"
    if f"{block}attention.self.query.weight" in names:
        return "self"
    raise CheckpointError(
        "this transformers version names its Swin parameters in a way samwsss does not know "
        f"(block 0 has {sorted(n for n in names if n.startswith(block))[:8]}); "
        "install a transformers release samwsss supports"
    )


def official_key_map(config: RAMConfig, swin_layout: str = "proj") -> dict[str, tuple[str, ...]]:
    """Every official key inference needs -> our parameter name(s), for ``config``.

    A value with several names means the official tensor is split along dim 0 into equal
    parts in that order (Swin's fused ``qkv``). Buffers recomputed on our side and ignored
    prefixes are not listed.
    """
    table: dict[str, tuple[str, ...]] = {}

    def module(official: str, ours: tuple[str, ...] | str, bias: bool = True) -> None:
        ours = (ours,) if isinstance(ours, str) else ours
        table[f"{official}.weight"] = tuple(f"{o}.weight" for o in ours)
        if bias:
            table[f"{official}.bias"] = tuple(f"{o}.bias" for o in ours)

    off, our = "visual_encoder.", "visual_encoder.swin."
    module(off + "patch_embed.proj", our + "embeddings.patch_embeddings.projection")
    module(off + "patch_embed.norm", our + "embeddings.norm")
    blocks = _BLOCK_LAYOUTS[swin_layout]
    for stage, depth in enumerate(config.depths):
        for block in range(depth):
            off_block = f"{off}layers.{stage}.blocks.{block}."
            our_block = f"{our}encoder.layers.{stage}.blocks.{block}."
            for official, (ours, is_module) in blocks.items():
                targets = tuple(our_block + name for name in ours)
                if is_module:
                    module(off_block + official, targets)
                else:
                    table[off_block + official] = targets
        if stage < config.num_stages - 1:
            # Patch merging closes stages 0..n-2 in both layouts.
            off_down = f"{off}layers.{stage}.downsample."
            our_down = f"{our}encoder.layers.{stage}.downsample."
            module(off_down + "reduction", our_down + "reduction", bias=False)
            module(off_down + "norm", our_down + "norm")
    module(off + "norm", our + "layernorm")

    module("image_proj", "image_proj")
    table["label_embed"] = ("label_embed",)
    if config.is_plus:
        table["reweight_scale"] = ("reweight_scale",)
    module("wordvec_proj", "wordvec_proj")
    for layer in range(config.head_num_layers):
        for official, our_name in _HEAD_LAYER.items():
            module(
                f"tagging_head.encoder.layer.{layer}.{official}",
                f"tagging_head.layers.{layer}.{our_name}",
            )
    module("fc", "fc")
    return table


@dataclass(frozen=True)
class LoadReport:
    """What loading did besides mapping: keys skipped on purpose and keys renamed."""

    ignored: tuple[str, ...]
    recomputed: tuple[str, ...]
    renamed: tuple[str, ...]


def _listing(keys: list[str], limit: int = 25) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def infer_variant(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"ram_plus"`` when the checkpoint has RAM++'s ``reweight_scale``, else ``"ram"``."""
    return "ram_plus" if "reweight_scale" in state_dict else "ram"


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: RAMModel, *, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Official-layout ``state_dict`` -> a complete state dict for ``model`` (+ report).

    Raises:
        CheckpointError: keys missing, unexpected keys, or shape mismatches (all listed).
    """
    renamed_keys: list[str] = []
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = key
        for old, new in LEGACY_PREFIXES.items():
            if key.startswith(old):
                new_key = new + key[len(old) :]
                if new_key in state_dict:
                    raise CheckpointError(
                        f"{source} has both {key!r} and {new_key!r}: keep only one naming"
                    )
                renamed_keys.append(key)
        renamed[new_key] = value
    ignored = sorted(k for k in renamed if k.startswith(IGNORED_PREFIXES))
    recomputed = sorted(k for k in renamed if RECOMPUTED_KEY.match(k))
    skipped = set(ignored) | set(recomputed)
    used = {k: v for k, v in renamed.items() if k not in skipped}

    own = model.state_dict()
    key_map = official_key_map(model.config, detect_swin_layout(model))
    missing = sorted(set(key_map) - set(used))
    unexpected = sorted(set(used) - set(key_map))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        raise CheckpointError(
            f"{source} does not match a {model.config.variant} model with this configuration: "
            + "; ".join(problems)
            + ". Check the variant (RAM vs RAM++) and that the file is an official RAM checkpoint"
        )

    converted: dict[str, torch.Tensor] = {}
    shape_errors: list[str] = []
    for official, targets in key_map.items():
        tensor = used[official]
        sizes = [own[t].shape for t in targets]
        if len(targets) > 1:  # fused tensor: the parts stacked along dim 0
            expected = (sum(s[0] for s in sizes), *sizes[0][1:])
        else:
            expected = tuple(sizes[0])
        if tuple(tensor.shape) != tuple(expected):
            shape_errors.append(f"{official}: {tuple(tensor.shape)} (expected {tuple(expected)})")
            continue
        if len(targets) == 1:
            converted[targets[0]] = tensor
        else:
            for target, part in zip(
                targets, tensor.split([s[0] for s in sizes], dim=0), strict=True
            ):
                converted[target] = part
    if shape_errors:
        raise CheckpointError(
            f"{source} has tensors of the wrong shape for this configuration: "
            + _listing(shape_errors)
        )
    buffers = {name for name, _ in model.named_buffers()}
    uncovered = sorted(set(own) - set(converted) - buffers)
    if uncovered:
        raise CheckpointError(
            f"internal: no official key maps to {_listing(uncovered)}; the installed "
            "transformers Swin has parameters samwsss does not know"
        )
    for name in set(own) - set(converted):  # buffers: keep the model's recomputed values
        converted[name] = own[name]
    return converted, LoadReport(tuple(ignored), tuple(recomputed), tuple(renamed_keys))


def load_official_checkpoint(
    model: RAMModel,
    checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    allow_pickle: bool = False,
    source: str | None = None,
) -> LoadReport:
    """Load an official checkpoint (file or state dict) into ``model`` in place.

    Args:
        model: the network to fill.
        checkpoint: a ``.pth`` path, or an already read state dict (or ``{'model': ...}``).
        allow_pickle: see :func:`read_checkpoint`.
        source: name used in messages for a state dict (default ``"state dict"``).

    Raises:
        CheckpointError: unreadable file, missing/unexpected keys or wrong shapes.
    """
    if isinstance(checkpoint, Mapping):
        inner = checkpoint.get("model", checkpoint)
        state = dict(inner if isinstance(inner, Mapping) else checkpoint)
        source = source or "state dict"
    else:
        state = read_checkpoint(checkpoint, allow_pickle=allow_pickle)
        source = source or str(checkpoint)
    converted, report = convert_official_state_dict(state, model, source=source)
    model.load_state_dict(converted, strict=True)
    logger.info(
        "loaded %s: %d tensors mapped, %d captioning tensors ignored, %d buffers recomputed",
        source,
        len(converted),
        len(report.ignored),
        len(report.recomputed),
    )
    return report
