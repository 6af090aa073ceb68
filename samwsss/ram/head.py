"""RAM's tagging head: BERT-style layers with cross-attention only.

Each layer lets the tag queries (B, T, hidden) attend to the image tokens (B, N, label_dim)
— there is no self-attention among the tags and no embedding layer — then applies the BERT
feed-forward block. Both sub-blocks are post-norm: ``LayerNorm(x + sublayer(x))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samwsss.ram.config import RAMConfig


class CrossAttention(nn.Module):
    """Multi-head attention of ``queries`` over ``context`` with residual and LayerNorm.

    Args:
        hidden_size: query width (output width too).
        context_size: width of the attended tokens (keys and values are projected from it).
        num_heads: heads; each has ``hidden_size // num_heads`` channels.
        eps: LayerNorm epsilon.
    """

    def __init__(self, hidden_size: int, context_size: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(context_size, hidden_size)
        self.value = nn.Linear(context_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``queries`` (B, T, hidden), ``context`` (B, N, context_size) -> (B, T, hidden)."""
        batch, num_queries, hidden = queries.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], heads, hidden // heads).transpose(1, 2)

        q = split(self.query(queries))
        k = split(self.key(context))
        v = split(self.value(context))
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        attended = attended.transpose(1, 2).reshape(batch, num_queries, hidden)
        return self.norm(self.output(attended) + queries)


class FeedForward(nn.Module):
    """BERT feed-forward block: ``LayerNorm(x + fc2(gelu(fc1(x))))``."""

    def __init__(self, hidden_size: int, intermediate_size: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) -> (B, T, hidden)."""
        return self.norm(self.fc2(F.gelu(self.fc1(x))) + x)


class TaggingLayer(nn.Module):
    """One head layer: cross-attention to the image, then the feed-forward block."""

    def __init__(self, config: RAMConfig) -> None:
        super().__init__()
        self.cross_attention = CrossAttention(
            config.head_hidden_size,
            config.label_dim,
            config.head_num_heads,
            config.head_layer_norm_eps,
        )
        self.feed_forward = FeedForward(
            config.head_hidden_size, config.head_intermediate_size, config.head_layer_norm_eps
        )

    def forward(self, queries: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """``queries`` (B, T, hidden), ``image_embeds`` (B, N, label_dim) -> (B, T, hidden)."""
        return self.feed_forward(self.cross_attention(queries, image_embeds))


class TaggingHead(nn.Module):
    """``config.head_num_layers`` :class:`TaggingLayer` s applied in sequence."""

    def __init__(self, config: RAMConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TaggingLayer(config) for _ in range(config.head_num_layers))

    def forward(self, queries: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """``queries`` (B, T, hidden), ``image_embeds`` (B, N, label_dim) -> (B, T, hidden)."""
        hidden = queries
        for layer in self.layers:
            hidden = layer(hidden, image_embeds)
        return hidden
