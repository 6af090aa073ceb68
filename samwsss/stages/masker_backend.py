"""The contract between :class:`~samwsss.stages.masker.SamMasker` and a SAM implementation.

A backend owns one SAM model and exposes three steps on tensors already on its device:
``preprocess`` (uint8 images -> model input batch), ``encode`` (batch -> per-image
features, computed once per image) and ``decode`` (features + boxes in model-input pixels
-> low-resolution mask logits and predicted IoU). The masker does the batching, box
chunking, mask upsampling and bookkeeping around them, identically for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch

from samwsss.stages.masker_transforms import InputGeometry, NormalizeFn, stack_inputs

#: Per-image features of a batch: a tuple of tensors whose first dimension is the image.
Features = tuple[torch.Tensor, ...]

#: ``(image, boxes) -> (masks, iou)`` decoding one image's ``(n, 4)`` boxes (see
#: :func:`decode_each_image`).
DecodeImageFn = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def decode_each_image(
    image_index: torch.Tensor, boxes: torch.Tensor, decode_image: DecodeImageFn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode each image's run of boxes with one ``decode_image(image, image_boxes)`` call.

    Args:
        image_index: ``(T,)`` int64, non-decreasing: which image each box belongs to.
        boxes: ``(T, 4)`` boxes; each image's consecutive run of rows is passed on.
        decode_image: returns ``(n, K, h0, w0)`` mask logits and ``(n, K)`` IoU for one
            image's ``n`` boxes.

    Returns:
        The per-image results concatenated in box order: ``(T, K, h0, w0)`` and ``(T, K)``.
    """
    values, counts = torch.unique_consecutive(image_index.cpu(), return_counts=True)
    masks = []
    scores = []
    start = 0
    for image, count in zip(values.tolist(), counts.tolist(), strict=True):
        image_masks, image_scores = decode_image(image, boxes[start : start + count])
        masks.append(image_masks)
        scores.append(image_scores)
        start += count
    return torch.cat(masks), torch.cat(scores)


class SamBackend(ABC):
    """One SAM model behind the masker's uniform interface.

    Attributes:
        model: the wrapped ``torch.nn.Module``.
        geometry: how images map into the model input.
        normalize: pixel normalisation applied before padding.
        box_dtype: dtype of box coordinates handed to :meth:`decode` (the dtype the
            reference implementation computes them in).
        family: ``"sam"``, ``"sam_hq"``, ``"sam2"`` or ``"official"``.
        source: where the weights came from (hub id, directory or checkpoint file).
        revision: the hub revision asked for, if any.
    """

    model: torch.nn.Module
    geometry: InputGeometry
    normalize: NormalizeFn
    box_dtype: torch.dtype = torch.float32
    family: str = ""
    source: str = ""
    revision: str | None = None

    @property
    @abstractmethod
    def image_encoder(self) -> torch.nn.Module:
        """The image-encoder submodule (called once per encoder batch)."""

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> SamBackend:
        """Move the model (and normalisation constants) to ``device``; returns ``self``."""
        self.model.to(device)
        self.normalize = self.normalize.to(torch.device(device))
        return self

    def preprocess(
        self, images: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """``(3, H, W)`` uint8 images on the device -> ``(B, 3, S, S)`` float32 input.

        Returns the batch and each image's resized ``(h, w)`` inside the input square.
        """
        return stack_inputs(images, self.geometry, self.normalize)

    @abstractmethod
    def encode(self, pixel_values: torch.Tensor) -> Features:
        """Run the image encoder on ``(B, 3, S, S)`` input; per-image features, batch first."""

    @abstractmethod
    def decode(
        self,
        features: Features,
        image_index: torch.Tensor,
        boxes: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for ``T`` boxes on already computed features.

        Args:
            features: output of :meth:`encode` for a batch of images.
            image_index: ``(T,)`` int64, which image of the batch each box belongs to
                (non-decreasing).
            boxes: ``(T, 4)`` xyxy in model-input pixels, dtype :attr:`box_dtype`.
            multimask_output: SAM's three-mask output instead of the single mask.

        Returns:
            ``(T, K, h0, w0)`` low-resolution mask logits and ``(T, K)`` predicted IoU,
            ``K`` = 1, or 3 with ``multimask_output``.
        """
