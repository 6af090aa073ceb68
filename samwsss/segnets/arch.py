"""The per-architecture part of training a segmenter on pseudo masks.

One trainer (exact resume, DDP, bf16 autocast, atomic checkpoints, validation, logs) runs
every architecture; what differs between DeepLabV2, SegFormer, Mask2Former and EoMT is
behind :class:`SegmentationArch`: how the network is built and initialised, its loss on
labels with 255 = ignore, its parameter groups, and its inference to per-pixel logits.

Tensors:

* ``pixels``: ``(B, 3, H, W)`` float32, normalised with the architecture's ``mean`` /
  ``std`` (RGB in [0, 1] first).
* ``labels``: ``(B, H, W)`` int64 class indices ``0..C-1``, ``IGNORE_INDEX`` (255) for
  pixels that carry no label ("uncertain" pseudo-mask pixels, padding): they contribute
  nothing to any loss term, nor to its normaliser.
* ``logits``: ``(B, C, H, W)`` float32 at the input's size (the arg-max is the prediction;
  softmax gives the probabilities test-time augmentation averages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Label value that is ignored by every loss term.
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Recipe:
    """Training defaults of an architecture (a run's config may override each).

    Attributes:
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adamw"``.
        lr: base learning rate (head and new layers).
        backbone_lr_mult: the pretrained backbone's learning rate multiplier.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        iterations: training iterations.
        batch_size: global batch (all processes together).
        crop_size: square training crop side.
        poly_power: power of the poly schedule ``lr * (1 - it / iterations) ** power``.
        clip_grad_norm: clip the whole model's gradient norm to this, or ``None``.
        warmup_iterations: linear warm-up iterations before the poly schedule.
        source: where these numbers come from (paper, config file).
    """

    optimizer: str
    lr: float
    backbone_lr_mult: float
    weight_decay: float
    iterations: int
    batch_size: int
    crop_size: int
    poly_power: float = 0.9
    clip_grad_norm: float | None = None
    warmup_iterations: int = 0
    source: str = ""


@dataclass(frozen=True)
class ArchCard:
    """A named architecture users pick with ``--arch``.

    Attributes:
        name: e.g. ``"mask2former-swin-large"``.
        description: one line for ``--help`` and the README.
        init: default initial weights: an image-classification or self-supervised
            checkpoint only (the WSSS protocol forbids segmentation pretraining).
        recipe: training defaults; ``None``: the run config's own defaults are the
            recipe (DeepLabV2).
        options: architecture options passed to the builder.
        builder: ``"package.module:Class"`` of the :class:`SegmentationArch`, imported on
            use (the table itself loads no torch); called with ``options``. A class with a
            ``from_config`` classmethod is built from the run's config instead.
        family: the family several cards share (``"mask2former"``); a name that starts
            with it (``"mask2former-tiny"``) gets its builder.
        model_types: ``config.json`` ``model_type`` values of local folders trained as
            this card (the first card that lists a type gets it).
    """

    name: str
    description: str
    init: str
    recipe: Recipe | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    builder: str = ""
    family: str = ""
    model_types: tuple[str, ...] = ()


@runtime_checkable
class SegmentationArch(Protocol):
    """The per-architecture part of the trainer and of ``predict``.

    Attributes:
        name: the architecture family (``"deeplabv2"``, ``"segformer"``, ...).
        mean, std: RGB normalisation of ``pixels`` (in [0, 1] first).
        fixed_input_size: the network takes only inputs of one size (EoMT's position grid):
            validation and ``predict`` run a sliding window of the training crop size
            over other sizes. ``False`` (any size works) is the default of classes that
            subclass this protocol; others set it themselves.
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fixed_input_size: bool = False

    def build(
        self, num_classes: int, init: str | None, *, allow_segmentation_init: bool = False
    ) -> nn.Module:
        """The network for ``num_classes`` classes (background included).

        Args:
            init: initial weights (hub id, local folder or file; ``None`` or ``"none"``:
                random). Weights trained on segmentation data are refused unless
                ``allow_segmentation_init`` (it leaves the WSSS protocol).
        """
        ...

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        """JSON-safe description that :meth:`rebuild` turns back into the same network
        (saved in checkpoints, so ``predict`` needs no download)."""
        ...

    def rebuild(self, architecture: Mapping[str, Any]) -> nn.Module:
        """A randomly initialised network of :meth:`architecture`'s description."""
        ...

    def loss(
        self, model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, world_size: int = 1
    ) -> torch.Tensor:
        """Scalar training loss of this process's batch.

        With ``world_size > 1`` the loss is scaled so that DDP's gradient averaging gives
        the gradient of the loss over the whole global batch (normalisers all-reduced).
        Pixels labelled :data:`IGNORE_INDEX` change neither the loss nor its gradients.
        """
        ...

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 per-pixel class logits at the input size."""
        ...

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float
    ) -> list[dict[str, Any]]:
        """Optimiser parameter groups (backbone at ``lr * backbone_lr_mult``; norms and
        biases without weight decay where the recipe says so), each with a ``"name"``."""
        ...
