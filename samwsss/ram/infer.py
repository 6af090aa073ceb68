"""Read a :class:`RAMConfig` off the tensor shapes of an official RAM / RAM++ checkpoint.

What each size is read from (official key names, ``v = visual_encoder.``):

- ``patch_size``, ``embed_dim``: ``v.patch_embed.proj.weight`` (embed, 3, patch, patch);
- ``depths``: the ``v.layers.{i}.blocks.{j}`` present per stage ``i``;
- ``num_heads``: ``v.layers.{i}.blocks.0.attn.relative_position_bias_table`` (rows, heads);
- ``window_size``: the same table's rows, ``(2w - 1)**2``;
- ``image_size``: the shifted blocks' ``attn_mask`` buffers (windows, w*w, w*w), when the
  file stores them: a stage of ``n`` windows is ``w * sqrt(n)`` tokens wide, i.e.
  ``w * sqrt(n) * patch * 2**i`` pixels. Files without them get the official 384;
- ``label_dim``: ``image_proj.weight`` (label_dim, final Swin width);
- ``head_hidden_size``: ``wordvec_proj.weight`` (hidden, label_dim);
- ``head_num_layers``: the ``tagging_head.encoder.layer.{k}`` present (or ``vision_multi.``);
- ``head_intermediate_size``: ``tagging_head.encoder.layer.0.intermediate.dense.weight``;
- ``variant``: RAM++ when ``reweight_scale`` is present;
- ``num_tags`` / ``descriptions_per_tag``: ``label_embed`` rows are ``num_tags`` (RAM) or
  ``num_tags * descriptions_per_tag`` (RAM++). With the vocabulary's length known the
  descriptions per tag follow from it; otherwise RAM++ is taken to have the official 51.

Not readable from shapes, so kept at :class:`RAMConfig`'s (official) defaults: the
tagging head's number of attention heads (4: the head's weights are the same shape for any
head count), and both LayerNorm epsilons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from samwsss.ram.checkpoint import LEGACY_PREFIXES, CheckpointError, infer_variant
from samwsss.ram.config import RAMConfig

_BLOCK_KEY = re.compile(r"^visual_encoder\.layers\.(\d+)\.blocks\.(\d+)\.")
_HEAD_LAYER_KEY = re.compile(r"^tagging_head\.encoder\.layer\.(\d+)\.")
#: Image side assumed when the checkpoint stores no ``attn_mask`` buffer (the official 384).
DEFAULT_IMAGE_SIZE = RAMConfig().image_size


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    """Shape of ``state[key]``, which must exist with ``ndim`` dimensions."""
    if key not in state:
        raise CheckpointError(
            f"{source} has no {key!r}: it is not an official RAM / RAM++ checkpoint, or pass "
            "config= with the architecture"
        )
    shape = tuple(int(s) for s in state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def _contiguous(indices: set[int], what: str, source: str) -> int:
    """``len(indices)`` after checking they are exactly ``0 .. n-1`` (n >= 1)."""
    if not indices or indices != set(range(len(indices))):
        raise CheckpointError(
            f"{source}: {what} numbered {sorted(indices)}, expected 0..n-1 with none missing"
        )
    return len(indices)


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    num_tags: int | None = None,
    source: str = "checkpoint",
) -> RAMConfig:
    """The :class:`RAMConfig` of an official-layout state dict, from its tensor shapes.

    Only shapes are read, so meta tensors work. The official Swin-L files give exactly
    :data:`samwsss.ram.config.RAM_PLUS_SWIN_LARGE` / ``RAM_SWIN_LARGE``.

    Args:
        state_dict: official key names (``visual_encoder.*``, ``label_embed``, ...); the
            legacy ``vision_multi.*`` head prefix is accepted.
        num_tags: the vocabulary's length when known (fixes RAM++'s descriptions per tag);
            ``None``: RAM's ``label_embed`` rows, or RAM++'s rows / 51.
        source: name of the checkpoint in messages.

    Raises:
        CheckpointError (a ``ValueError``): a key the sizes are read from is missing, shapes
            contradict each other (the message names the key), or the sizes read do not
            make a valid :class:`RAMConfig`.
    """
    state: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for old, new in LEGACY_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        state[key] = value
    v = "visual_encoder."

    key = f"{v}patch_embed.proj.weight"
    embed_dim, channels, patch_h, patch_w = _shape(state, key, 4, source)
    if channels != 3 or patch_h != patch_w:
        raise CheckpointError(
            f"{source}: {key!r} has shape {(embed_dim, channels, patch_h, patch_w)}, expected "
            "(embed_dim, 3, patch, patch)"
        )
    patch = patch_h

    blocks: dict[int, set[int]] = {}
    for name in state:
        match = _BLOCK_KEY.match(name)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    num_stages = _contiguous(set(blocks), "Swin stages (visual_encoder.layers.*)", source)
    depths = tuple(
        _contiguous(blocks[i], f"blocks of Swin stage {i}", source) for i in range(num_stages)
    )

    window = 0  # 0: not read yet
    heads: list[int] = []
    sides: list[tuple[str, int, int]] = []  # (key, stage, token side of the stage)
    for stage, depth in enumerate(depths):
        width = embed_dim * 2**stage
        stage_heads = 0  # 0: not read yet
        for block in range(depth):
            prefix = f"{v}layers.{stage}.blocks.{block}."
            key = prefix + "norm1.weight"
            (norm_width,) = _shape(state, key, 1, source)
            if norm_width != width:
                raise CheckpointError(
                    f"{source}: {key!r} is {norm_width} wide but Swin stage {stage} should be "
                    f"{width} (embed_dim {embed_dim} * 2**{stage})"
                )
            key = prefix + "attn.relative_position_bias_table"
            rows, block_heads = _shape(state, key, 2, source)
            side = math.isqrt(rows)
            if side * side != rows or side % 2 == 0:
                raise CheckpointError(
                    f"{source}: {key!r} has {rows} rows, not (2 * window - 1)**2 for any window"
                )
            block_window = (side + 1) // 2
            if not window:
                window = block_window
            elif block_window != window:
                raise CheckpointError(
                    f"{source}: {key!r} is for window {block_window} but earlier blocks use "
                    f"window {window}"
                )
            if not stage_heads:
                stage_heads = block_heads
            elif block_heads != stage_heads:
                raise CheckpointError(
                    f"{source}: {key!r} has {block_heads} heads but block 0 of stage {stage} "
                    f"has {stage_heads}"
                )
            key = prefix + "attn_mask"
            if key in state:
                windows, area, area2 = _shape(state, key, 3, source)
                grid = math.isqrt(windows)
                if area != block_window**2 or area2 != area or grid * grid != windows:
                    raise CheckpointError(
                        f"{source}: {key!r} has shape {(windows, area, area2)}, expected "
                        f"(n*n windows, {block_window**2}, {block_window**2})"
                    )
                sides.append((key, stage, grid * block_window))
        heads.append(stage_heads)

    if sides:
        key, stage, side = sides[0]
        image_size = side * patch * 2**stage
        for key, stage, side in sides[1:]:
            if side * patch * 2**stage != image_size:
                raise CheckpointError(
                    f"{source}: {key!r} implies a {side * patch * 2**stage}-pixel input but "
                    f"{sides[0][0]!r} implies {image_size}"
                )
    else:
        image_size = DEFAULT_IMAGE_SIZE

    vision_width = embed_dim * 2 ** (num_stages - 1)
    key = "image_proj.weight"
    label_dim, proj_in = _shape(state, key, 2, source)
    if proj_in != vision_width:
        raise CheckpointError(
            f"{source}: {key!r} takes {proj_in} channels but the last Swin stage is "
            f"{vision_width} wide"
        )
    key = "label_embed"
    rows, embed_width = _shape(state, key, 2, source)
    if embed_width != label_dim:
        raise CheckpointError(
            f"{source}: {key!r} is {embed_width} wide but image_proj.weight projects to {label_dim}"
        )
    variant = infer_variant(state)
    descriptions = RAMConfig.descriptions_per_tag
    if variant == "ram":
        if num_tags is not None and num_tags != rows:
            raise CheckpointError(
                f"{source}: {key!r} has {rows} tags but the vocabulary has {num_tags}: use the "
                "tag list the checkpoint was trained with"
            )
        num_tags = rows
    elif num_tags is not None:
        if num_tags < 1 or rows % num_tags:
            raise CheckpointError(
                f"{source}: {key!r} has {rows} rows, not a multiple of the vocabulary's "
                f"{num_tags} tags: use the tag list the checkpoint was trained with"
            )
        descriptions = rows // num_tags
    else:
        if rows % descriptions:
            raise CheckpointError(
                f"{source}: {key!r} has {rows} rows, not {descriptions} descriptions per tag: "
                "give the vocabulary (its length fixes the descriptions per tag)"
            )
        num_tags = rows // descriptions

    key = "wordvec_proj.weight"
    hidden, word_in = _shape(state, key, 2, source)
    if word_in != label_dim:
        raise CheckpointError(
            f"{source}: {key!r} takes {word_in} channels but label_embed is {label_dim} wide"
        )
    layers = {int(m.group(1)) for m in map(_HEAD_LAYER_KEY.match, state) if m}
    num_layers = _contiguous(layers, "tagging-head layers (tagging_head.encoder.layer.*)", source)
    key = "tagging_head.encoder.layer.0.intermediate.dense.weight"
    intermediate, inter_in = _shape(state, key, 2, source)
    if inter_in != hidden:
        raise CheckpointError(
            f"{source}: {key!r} takes {inter_in} channels but the head is {hidden} wide "
            "(wordvec_proj.weight)"
        )
    head_heads = RAMConfig.head_num_heads
    if hidden % head_heads:
        raise CheckpointError(
            f"{source}: the tagging head is {hidden} wide (wordvec_proj.weight), not divisible "
            f"by the official {head_heads} heads; the head count cannot be read from the "
            "weights: pass config= with head_num_heads"
        )

    try:
        return RAMConfig(
            variant=variant,
            num_tags=num_tags,
            descriptions_per_tag=descriptions,
            image_size=image_size,
            patch_size=patch,
            window_size=window,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=tuple(heads),
            label_dim=label_dim,
            head_hidden_size=hidden,
            head_num_layers=num_layers,
            head_num_heads=head_heads,
            head_intermediate_size=intermediate,
        )
    except ValueError as error:
        raise CheckpointError(
            f"{source}: the architecture read off its shapes is not a valid RAM configuration "
            f"({error}); pass config= explicitly"
        ) from error
