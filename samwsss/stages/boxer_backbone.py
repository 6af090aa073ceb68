"""Run Grounding DINO's vision backbone once per image for rows that share an image.

In ``per-class`` mode an image with ``k`` classes fills ``k`` rows of a forward that differ
only in their caption. transformers' ``GroundingDinoModel`` runs its Swin backbone on every
row. :func:`shared_backbone` temporarily hooks the backbone module
(``model.model.backbone``, a ``GroundingDinoConvModel``) so the forward receives one pixel
row per distinct image and the backbone features (and their position embeddings) are
expanded to the caption rows afterwards. Everything after the backbone (text encoder,
feature enhancer, decoder) still runs per row. The module tree and state dict are untouched;
the hooks are removed when the context exits.

The same holds for ``MMGroundingDinoForObjectDetection`` (MM-Grounding-DINO, LLMDet): its
``model.backbone`` (``MMGroundingDinoConvModel``) has the same inputs and outputs and its
forward is the original's; only the class heads after the decoder differ. The boxer's tests
check that both families give the same boxes with and without sharing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def backbone_module(model: Any) -> torch.nn.Module | None:
    """The ``GroundingDinoConvModel`` (or ``MMGroundingDinoConvModel``) of a Grounding DINO
    family detector, or ``None``."""
    inner = getattr(model, "model", None)
    backbone = getattr(inner, "backbone", None)
    if isinstance(backbone, torch.nn.Module) and hasattr(backbone, "conv_encoder"):
        return backbone
    return None


@contextmanager
def shared_backbone(model: Any, row_to_image: torch.Tensor) -> Iterator[None]:
    """Within the context, forwards take ``pixel_values`` with one row per distinct image.

    Args:
        model: a ``GroundingDinoForObjectDetection``.
        row_to_image: ``(R,)`` int64 on the model's device: caption row ``r`` reads image
            ``row_to_image[r]`` of the ``(U, 3, h, w)`` ``pixel_values`` given to the forward.
            ``pixel_mask`` and the text inputs keep ``R`` rows.

    Raises:
        ValueError: the model has no hookable backbone (check with :func:`backbone_module`).
    """
    backbone = backbone_module(model)
    if backbone is None:
        raise ValueError(
            f"{type(model).__name__} has no model.backbone GroundingDinoConvModel to share"
        )
    # the first caption row of each image gives that image's pixel mask
    num_images = int(row_to_image.max()) + 1 if row_to_image.numel() else 0
    rows = torch.arange(row_to_image.numel(), device=row_to_image.device)
    first_row = torch.full((num_images,), row_to_image.numel(), device=row_to_image.device)
    first_row = first_row.scatter_reduce(0, row_to_image, rows, reduce="amin")

    def before(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        pixel_values, pixel_mask = args
        if pixel_values.shape[0] != num_images or pixel_mask.shape[0] != row_to_image.numel():
            raise RuntimeError(
                f"shared backbone expected {num_images} images and {row_to_image.numel()} "
                f"mask rows, got {pixel_values.shape[0]} and {pixel_mask.shape[0]}"
            )
        return pixel_values, pixel_mask[first_row]

    def after(_module: torch.nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
        features, positions = output
        features = [
            (feature.index_select(0, row_to_image), mask.index_select(0, row_to_image))
            for feature, mask in features
        ]
        positions = [position.index_select(0, row_to_image) for position in positions]
        return features, positions

    handles = [
        backbone.register_forward_pre_hook(before),
        backbone.register_forward_hook(after),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
