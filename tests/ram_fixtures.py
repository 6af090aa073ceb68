"""Test helpers for RAM: tiny configs, official-layout checkpoints and an independent reference.

The checkpoint keys are written here from the official layout (DESIGN.md section 4), not
derived from samwsss.ram.checkpoint, and :func:`reference_logits` computes the official
forward pass directly from those tensors with plain torch ops (Microsoft's Swin semantics:
fused qkv, relative-position table, cyclic shift with the -100 mask, patch merging at the
end of stages; the BERT cross-attention head; RAM++'s per-image loop). A mapping bug in the
loader (a swapped q/k, a misplaced downsample, a wrong LayerNorm) changes the logits.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from samwsss.ram.config import RAMConfig
from samwsss.ram.vocabulary import RAMVocabulary

TINY_TAGS = ("cat", "dog", "grass", "person", "car", "table", "sky")
TINY_THRESHOLDS = (0.5, 0.6, 0.7, 0.55, 0.65, 0.9, 0.45)


def tiny_config(variant: str = "ram_plus") -> RAMConfig:
    """A tiny RAM/RAM++: 128x128 input, Swin 16-wide with 2 blocks per stage, 7 tags.

    Stages are 32, 16, 8, 4 tokens wide with window 4 — the same window pattern as the
    official 96/48/24/12 at window 12 (shifted windows in stages 0-2, none in stage 3).
    RAM++ has 3 descriptions per tag; RAM keeps the (unused) default, as a RAM checkpoint's
    shapes cannot tell it.
    """
    descriptions = 3 if variant == "ram_plus" else RAMConfig.descriptions_per_tag
    return RAMConfig(
        variant=variant, num_tags=len(TINY_TAGS), descriptions_per_tag=descriptions, image_size=128,
        patch_size=4, window_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
        label_dim=24, head_hidden_size=32, head_num_layers=2, head_num_heads=4,
        head_intermediate_size=64,
    )


def tiny_vocabulary() -> RAMVocabulary:
    """The 7-tag vocabulary of :func:`tiny_config`."""
    return RAMVocabulary(TINY_TAGS, TINY_THRESHOLDS, source="tiny")


def official_state_dict(
    config: RAMConfig,
    seed: int = 0,
    *,
    buffers: bool = True,
    captioning: bool = False,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Random tensors under the official key names for ``config``.

    LayerNorm weights and biases are random too (not 1/0), so swapping two norms shows.
    ``buffers`` adds the Swin ``relative_position_index`` / ``attn_mask`` buffers the
    official model stores; ``captioning`` adds RAM's ``tag_encoder.*`` / ``text_decoder.*``.
    ``device="meta"`` gives shapes only (for full-size checks without memory).
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=gen) * scale

    def linear(name: str, out_f: int, in_f: int, bias: bool = True) -> None:
        sd[f"{name}.weight"] = rand(out_f, in_f, scale=1.0 / math.sqrt(in_f))
        if bias:
            sd[f"{name}.bias"] = rand(out_f, scale=0.05)

    def norm(name: str, width: int) -> None:
        sd[f"{name}.weight"] = 1.0 + rand(width, scale=0.2)
        sd[f"{name}.bias"] = rand(width, scale=0.1)

    v = "visual_encoder."
    e = config.embed_dim
    sd[f"{v}patch_embed.proj.weight"] = rand(e, 3, config.patch_size, config.patch_size, scale=0.2)
    sd[f"{v}patch_embed.proj.bias"] = rand(e, scale=0.05)
    norm(f"{v}patch_embed.norm", e)
    ws = config.window_size
    for i, depth in enumerate(config.depths):
        c = e * 2**i
        heads = config.num_heads[i]
        side = config.image_size // config.patch_size // 2**i
        for j in range(depth):
            b = f"{v}layers.{i}.blocks.{j}."
            norm(b + "norm1", c)
            linear(b + "attn.qkv", 3 * c, c)
            linear(b + "attn.proj", c, c)
            sd[b + "attn.relative_position_bias_table"] = rand((2 * ws - 1) ** 2, heads, scale=0.5)
            norm(b + "norm2", c)
            linear(b + "mlp.fc1", 4 * c, c)
            linear(b + "mlp.fc2", c, 4 * c)
            if buffers:
                sd[b + "attn.relative_position_index"] = torch.zeros(
                    ws * ws, ws * ws, dtype=torch.long, device=device)
                if j % 2 == 1 and side > ws:
                    sd[b + "attn_mask"] = torch.zeros(
                        (side // ws) ** 2, ws * ws, ws * ws, device=device)
        if i < len(config.depths) - 1:
            linear(f"{v}layers.{i}.downsample.reduction", 2 * c, 4 * c, bias=False)
            norm(f"{v}layers.{i}.downsample.norm", 4 * c)
    norm(f"{v}norm", config.vision_width)

    linear("image_proj", config.label_dim, config.vision_width)
    sd["label_embed"] = rand(config.label_rows, config.label_dim, scale=1.0)
    if config.is_plus:
        sd["reweight_scale"] = torch.tensor(math.log(1 / 0.07), device=device)
    linear("wordvec_proj", config.head_hidden_size, config.label_dim)
    hidden, inter = config.head_hidden_size, config.head_intermediate_size
    for layer in range(config.head_num_layers):
        h = f"tagging_head.encoder.layer.{layer}."
        linear(h + "crossattention.self.query", hidden, hidden)
        linear(h + "crossattention.self.key", hidden, config.label_dim)
        linear(h + "crossattention.self.value", hidden, config.label_dim)
        linear(h + "crossattention.output.dense", hidden, hidden)
        norm(h + "crossattention.output.LayerNorm", hidden)
        linear(h + "intermediate.dense", inter, hidden)
        linear(h + "output.dense", hidden, inter)
        norm(h + "output.LayerNorm", hidden)
    linear("fc", 1, hidden)
    if captioning:
        sd["tag_encoder.encoder.layer.0.attention.self.query.weight"] = rand(8, 8)
        sd["tag_encoder.embeddings.word_embeddings.weight"] = rand(10, 8)
        sd["text_decoder.cls.predictions.bias"] = rand(10)
        sd["text_decoder.bert.encoder.layer.0.output.dense.weight"] = rand(8, 8)
    return sd


def write_checkpoint(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """Save as the authors do: ``torch.save({'model': state_dict}, path)``."""
    torch.save({"model": state_dict}, path)
    return path


# ---------------------------------------------------------------- independent reference
def _ln(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _lin(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def _relative_bias(table: torch.Tensor, ws: int) -> torch.Tensor:
    """(heads, ws*ws, ws*ws): bias[h, a, b] = table[(dy + ws-1) * (2ws-1) + dx + ws-1, h]."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + ws - 1
    dx = xs[:, None] - xs[None, :] + ws - 1
    return table[dy * (2 * ws - 1) + dx].permute(2, 0, 1)


def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, ws*ws, C), windows row-major inside each image."""
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _unwindows(x: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    return x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def _shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(windows, ws*ws, ws*ws): -100 between tokens from different regions of the rolled map."""
    def region(n: int) -> torch.Tensor:
        idx = torch.arange(n)
        return (idx >= n - ws).long() + (idx >= n - shift).long()

    labels = (region(h)[:, None] * 3 + region(w)[None, :]).float()[None, :, :, None]
    win = _windows(labels, ws).squeeze(-1)  # (windows, ws*ws)
    diff = win[:, :, None] != win[:, None, :]
    return torch.where(diff, torch.tensor(-100.0), torch.tensor(0.0))


def reference_swin(sd: dict[str, torch.Tensor], config: RAMConfig, pixels: torch.Tensor) -> torch.Tensor:
    """Official Swin tokens (B, 1 + L, C) computed from official-layout tensors."""
    v = "visual_encoder."
    eps = config.swin_layer_norm_eps
    x = F.conv2d(pixels, sd[f"{v}patch_embed.proj.weight"], sd[f"{v}patch_embed.proj.bias"],
                 stride=config.patch_size)
    b, c, h, w = x.shape
    x = _ln(x.flatten(2).transpose(1, 2), sd, f"{v}patch_embed.norm", eps)
    for i, depth in enumerate(config.depths):
        heads = config.num_heads[i]
        for j in range(depth):
            p = f"{v}layers.{i}.blocks.{j}."
            ws = min(config.window_size, h)
            shift = config.window_size // 2 if (j % 2 == 1 and h > config.window_size) else 0
            y = _ln(x, sd, p + "norm1", eps).view(b, h, w, c)
            if shift:
                y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            win = _windows(y, ws)
            n = ws * ws
            qkv = _lin(win, sd, p + "attn.qkv").view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            q, k, val = qkv[0], qkv[1], qkv[2]
            attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
            attn = attn + _relative_bias(sd[p + "attn.relative_position_bias_table"], ws)[None]
            if shift:
                mask = _shift_mask(h, w, ws, shift)
                attn = (attn.view(b, -1, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
            out = (attn.softmax(-1) @ val).transpose(1, 2).reshape(-1, n, c)
            out = _unwindows(_lin(out, sd, p + "attn.proj"), ws, b, h, w)
            if shift:
                out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
            x = x + out.reshape(b, h * w, c)
            hidden = F.gelu(_lin(_ln(x, sd, p + "norm2", eps), sd, p + "mlp.fc1"))
            x = x + _lin(hidden, sd, p + "mlp.fc2")
        if i < len(config.depths) - 1:
            g = x.view(b, h, w, c)
            g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
            g = _ln(g.reshape(b, -1, 4 * c), sd, f"{v}layers.{i}.downsample.norm", eps)
            x = _lin(g, sd, f"{v}layers.{i}.downsample.reduction")
            h, w, c = h // 2, w // 2, c * 2
    x = _ln(x, sd, f"{v}norm", eps)
    return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)


def reference_reweight(
    image_cls: torch.Tensor, label_embed: torch.Tensor, reweight_scale: torch.Tensor, d: int
) -> torch.Tensor:
    """RAM++ description mixing, image by image and tag by tag (the slow, literal way)."""
    t = label_embed.shape[0] // d
    out = torch.empty(image_cls.shape[0], t, label_embed.shape[1])
    for i in range(image_cls.shape[0]):
        cls = image_cls[i] / image_cls[i].norm()
        for tag in range(t):
            rows = label_embed[tag * d : (tag + 1) * d]  # (d, C)
            weights = torch.softmax(torch.exp(reweight_scale) * (rows @ cls), dim=0)
            out[i, tag] = (weights[:, None] * rows).sum(0)
    return out


def reference_logits(sd: dict[str, torch.Tensor], config: RAMConfig, pixels: torch.Tensor) -> torch.Tensor:
    """Official RAM / RAM++ logits (B, T) from official-layout tensors."""
    image_embeds = _lin(reference_swin(sd, config, pixels), sd, "image_proj")
    b = image_embeds.shape[0]
    if config.is_plus:
        labels = reference_reweight(image_embeds[:, 0], sd["label_embed"], sd["reweight_scale"],
                                    config.descriptions_per_tag)
    else:
        labels = sd["label_embed"].unsqueeze(0).repeat(b, 1, 1)
    q = F.relu(_lin(labels, sd, "wordvec_proj"))
    heads = config.head_num_heads
    hidden = config.head_hidden_size
    eps = config.head_layer_norm_eps
    for layer in range(config.head_num_layers):
        p = f"tagging_head.encoder.layer.{layer}."
        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, x.shape[1], heads, hidden // heads).transpose(1, 2)
        qq = split(_lin(q, sd, p + "crossattention.self.query"))
        kk = split(_lin(image_embeds, sd, p + "crossattention.self.key"))
        vv = split(_lin(image_embeds, sd, p + "crossattention.self.value"))
        scores = (qq @ kk.transpose(-1, -2)) / math.sqrt(hidden // heads)
        ctx = (scores.softmax(-1) @ vv).transpose(1, 2).reshape(b, -1, hidden)
        q = _ln(_lin(ctx, sd, p + "crossattention.output.dense") + q, sd,
                p + "crossattention.output.LayerNorm", eps)
        ff = _lin(F.gelu(_lin(q, sd, p + "intermediate.dense")), sd, p + "output.dense")
        q = _ln(ff + q, sd, p + "output.LayerNorm", eps)
    return _lin(q, sd, "fc").squeeze(-1)
