"""RAM's Swin image encoder: transformers' ``SwinModel`` plus the pooled token in front.

The official encoder (Microsoft's Swin) returns, after its final LayerNorm, the mean of the
patch tokens followed by the patch tokens themselves: ``(B, 1 + (S/32)**2, 1536)``, i.e.
145 tokens at 384x384. ``SwinModel`` computes the same blocks; its ``last_hidden_state`` is
already normed and its pooler is the same average, so the encoder concatenates the two.
"""

from __future__ import annotations

import torch
from torch import nn

from samwsss.ram.config import RAMConfig


def build_swin(config: RAMConfig) -> nn.Module:
    """A randomly initialised transformers ``SwinModel`` with RAM's Swin sizes.

    Dropout and stochastic depth are off (inference only); no pooling layer (the mean is
    taken by :class:`SwinImageEncoder`), no absolute position embeddings (``ape=False``).
    """
    from transformers import SwinConfig, SwinModel

    swin_config = SwinConfig(
        image_size=config.image_size,
        patch_size=config.patch_size,
        num_channels=3,
        embed_dim=config.embed_dim,
        depths=list(config.depths),
        num_heads=list(config.num_heads),
        window_size=config.window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0,
        hidden_act="gelu",
        use_absolute_embeddings=False,
        layer_norm_eps=config.swin_layer_norm_eps,
    )
    return SwinModel(swin_config, add_pooling_layer=False)


class SwinImageEncoder(nn.Module):
    """Swin-L image tokens as RAM uses them.

    Input ``pixel_values`` (B, 3, S, S) float, normalised with ImageNet mean/std.
    Output (B, 1 + L, vision_width): ``[mean of the normed patch tokens, normed patch tokens]``
    with ``L = (S / patch / 2**(stages-1))**2`` (144 at 384).
    """

    def __init__(self, config: RAMConfig) -> None:
        super().__init__()
        self.config = config
        self.swin = build_swin(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.swin(pixel_values=pixel_values).last_hidden_state  # (B, L, C), normed
        pooled = tokens.mean(dim=1, keepdim=True)  # (B, 1, C)
        return torch.cat([pooled, tokens], dim=1)
