"""The RAM / RAM++ network (inference only): image tokens -> one logit per tag.

``pixel_values`` (B, 3, S, S) -> Swin tokens (B, 1+L, 1536) -> ``image_proj`` (B, 1+L, 512)
-> tag queries (B, T, 768) = ``relu(wordvec_proj(label embeddings))`` -> tagging head
(queries attend to every image token) -> ``fc`` -> logits (B, T).

RAM uses one learned embedding per tag. RAM++ has ``D = 51`` per tag and mixes them per
image: with ``c`` the L2-normalised pooled image token (the first projected token),
``w[t, d] = softmax_d(exp(reweight_scale) * c . e[t, d])`` and the tag embedding is
``sum_d w[t, d] * e[t, d]`` (see :func:`reweight_label_embeddings`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samwsss.ram.config import RAMConfig
from samwsss.ram.encoder import SwinImageEncoder
from samwsss.ram.head import TaggingHead


def reweight_label_embeddings(
    image_cls: torch.Tensor,
    label_embed: torch.Tensor,
    reweight_scale: torch.Tensor,
    descriptions_per_tag: int,
) -> torch.Tensor:
    """RAM++'s per-image mixture of the description embeddings of each tag.

    Args:
        image_cls: (B, C) pooled image token after ``image_proj`` (not yet normalised).
        label_embed: (T * D, C) description embeddings, the D of tag ``t`` in rows
            ``t*D .. t*D + D - 1``.
        reweight_scale: scalar log-temperature; the logits are scaled by its exponential.
        descriptions_per_tag: D.

    Returns:
        (B, T, C) tag embeddings, same dtype as ``label_embed``.
    """
    rows, width = label_embed.shape
    if rows % descriptions_per_tag:
        raise ValueError(
            f"label_embed has {rows} rows, not a multiple of {descriptions_per_tag} descriptions"
        )
    num_tags = rows // descriptions_per_tag
    cls = image_cls / image_cls.norm(dim=-1, keepdim=True)
    logits = reweight_scale.exp() * (cls @ label_embed.t())  # (B, T*D)
    weights = logits.view(-1, num_tags, descriptions_per_tag).softmax(dim=-1)  # (B, T, D)
    descriptions = label_embed.view(num_tags, descriptions_per_tag, width)  # (T, D, C)
    return torch.einsum("btd,tdc->btc", weights, descriptions)


class RAMModel(nn.Module):
    """RAM or RAM++ (``config.variant``) inference network.

    Parameters mirror the official model: ``visual_encoder`` (Swin), ``image_proj``,
    ``label_embed`` (T or T*D, label_dim), ``reweight_scale`` (RAM++ only),
    ``wordvec_proj``, ``tagging_head`` and ``fc``. Weights are random until loaded with
    :func:`samwsss.ram.checkpoint.load_official_checkpoint`.
    """

    def __init__(self, config: RAMConfig) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = SwinImageEncoder(config)
        self.image_proj = nn.Linear(config.vision_width, config.label_dim)
        self.label_embed = nn.Parameter(torch.zeros(config.label_rows, config.label_dim))
        if config.is_plus:
            self.reweight_scale = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("reweight_scale", None)
        self.wordvec_proj = nn.Linear(config.label_dim, config.head_hidden_size)
        self.tagging_head = TaggingHead(config)
        self.fc = nn.Linear(config.head_hidden_size, 1)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> projected image tokens (B, 1+L, label_dim)."""
        return self.image_proj(self.visual_encoder(pixel_values))

    def tag_queries(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Tag queries (B, T, head_hidden) for projected image tokens (B, 1+L, label_dim)."""
        batch = image_embeds.shape[0]
        if not self.config.is_plus:
            queries = F.relu(self.wordvec_proj(self.label_embed))  # same for every image
            return queries.unsqueeze(0).expand(batch, -1, -1)
        # The mixture is computed in float32 even under autocast: it is cheap and the
        # softmax over 51 descriptions is sensitive to the 14x temperature.
        with torch.autocast(device_type=image_embeds.device.type, enabled=False):
            labels = reweight_label_embeddings(
                image_embeds[:, 0].float(),
                self.label_embed.float(),
                self.reweight_scale.float(),
                self.config.descriptions_per_tag,
            )
        return F.relu(self.wordvec_proj(labels))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float normalised pixels -> (B, T) logits (float, autocast dtype)."""
        image_embeds = self.image_embeddings(pixel_values)
        hidden = self.tagging_head(self.tag_queries(image_embeds), image_embeds)
        return self.fc(hidden).squeeze(-1)
