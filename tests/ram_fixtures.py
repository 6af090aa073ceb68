"""An independent reference for the RAM tests: the official forward pass in plain torch.

:func:`reference_logits` computes the official RAM / RAM++ logits directly from
official-layout tensors (as written by :func:`samwsss.testing.ram.official_state_dict`)
with plain torch ops (Microsoft's Swin semantics: fused qkv, relative-position table,
cyclic shift with the -100 mask, patch merging at the end of stages; the BERT
cross-attention head; RAM++'s per-image loop). A mapping bug in the loader (a swapped q/k,
a misplaced downsample, a wrong LayerNorm) changes the logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samwsss.ram.config import RAMConfig


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


def reference_swin(
    sd: dict[str, torch.Tensor], config: RAMConfig, pixels: torch.Tensor
) -> torch.Tensor:
    """Official Swin tokens (B, 1 + L, C) computed from official-layout tensors."""
    v = "visual_encoder."
    eps = config.swin_layer_norm_eps
    x = F.conv2d(
        pixels,
        sd[f"{v}patch_embed.proj.weight"],
        sd[f"{v}patch_embed.proj.bias"],
        stride=config.patch_size,
    )
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
            qkv = _lin(win, sd, p + "attn.qkv").view(-1, n, 3, heads, c // heads)
            qkv = qkv.permute(2, 0, 3, 1, 4)
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
            g = torch.cat(
                [g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1
            )
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


def reference_logits(
    sd: dict[str, torch.Tensor], config: RAMConfig, pixels: torch.Tensor
) -> torch.Tensor:
    """Official RAM / RAM++ logits (B, T) from official-layout tensors."""
    image_embeds = _lin(reference_swin(sd, config, pixels), sd, "image_proj")
    b = image_embeds.shape[0]
    if config.is_plus:
        labels = reference_reweight(
            image_embeds[:, 0], sd["label_embed"], sd["reweight_scale"], config.descriptions_per_tag
        )
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
        q = _ln(
            _lin(ctx, sd, p + "crossattention.output.dense") + q,
            sd,
            p + "crossattention.output.LayerNorm",
            eps,
        )
        ff = _lin(F.gelu(_lin(q, sd, p + "intermediate.dense")), sd, p + "output.dense")
        q = _ln(ff + q, sd, p + "output.LayerNorm", eps)
    return _lin(q, sd, "fc").squeeze(-1)
