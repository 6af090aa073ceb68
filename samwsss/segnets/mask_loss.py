"""Mask-classification loss (Mask2Former / EoMT) that ignores the 255 pixels exactly.

transformers' Mask2Former and EoMT losses take per-image binary masks; their image
processors drop the ignore label from the label set, so an "uncertain" pixel becomes a
negative of every mask. Here the loss is computed from the ``(B, H, W)`` labels directly
and a pixel labelled :data:`~samwsss.segnets.arch.IGNORE_INDEX` contributes nothing to any
term:

* **targets**: per image, the classes present among its valid pixels (one target mask
  each; the mask of class ``c`` at a pixel is ``labels == c``), sorted.
* **points**: every point, for matching and for the losses, is a *valid pixel* of the
  label grid: Mask2Former's uniformly random points become pixels drawn uniformly (with
  replacement) from the image's valid pixels; its importance sampling draws
  ``oversample_ratio x num_points`` such candidates per matched mask and keeps the
  ``importance_sample_ratio`` share with the most uncertain prediction (``-|logit|``) plus
  fresh uniform ones. ``num_points=None`` uses every valid pixel (a dense loss; exact and
  deterministic, for small images and tests).
* **predictions at points**: the mask logits (1/4 of the input) bilinearly upsampled to the
  label grid (``align_corners=False``, as ``F.interpolate``), evaluated only at the chosen
  pixels (:func:`upsampled_at`), so no full-resolution mask is materialised.

So the loss is a function of the upsampled prediction at valid pixels only: changing the
prediction on ignored pixels changes neither the loss nor any gradient, nor which points
are drawn (the candidates are valid pixels, the random draws depend on the labels only).
Matching: Hungarian (``scipy.optimize.linear_sum_assignment``) on
``class_weight * -p(class) + mask_weight * BCE + dice_weight * dice`` over uniform points.
Class loss: cross-entropy with the no-object class weighted ``no_object_weight``, averaged
with those weights over the queries of images that have at least one valid pixel (an image
without any label contributes nothing). Mask losses (sigmoid BCE averaged over points,
dice) are summed over matched masks and divided by the number of target masks. Every
decoder layer (auxiliary outputs) gets the same loss. Normalisers are all-reduced under DDP
(:func:`samwsss.segnets.hf_arch.global_normalizers`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samwsss.segnets.arch import IGNORE_INDEX
from samwsss.segnets.hf_arch import (
    HFSegmenterArch,
    check_num_classes,
    global_normalizers,
    init_config,
    is_random_init,
    refuse_segmentation_init,
)

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class MaskLossSettings:
    """Weights and point sampling of :func:`mask_classification_loss` (Mask2Former's).

    Attributes:
        no_object_weight: class-loss weight of the "no object" class (``eos_coef``).
        class_weight, mask_weight, dice_weight: term weights (also the matching costs').
        num_points: points per mask (12544 = 112^2); ``None``: every valid pixel.
        oversample_ratio: candidates per point for importance sampling.
        importance_sample_ratio: share of points picked by uncertainty.
    """

    no_object_weight: float = 0.1
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    num_points: int | None = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75

    def __post_init__(self) -> None:
        if self.num_points is not None and (
            isinstance(self.num_points, bool) or int(self.num_points) < 1
        ):
            raise ValueError(
                f"num_points must be an integer >= 1 or None (dense), got {self.num_points!r}"
            )
        if self.oversample_ratio < 1:
            raise ValueError(f"oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0 <= self.importance_sample_ratio <= 1:
            raise ValueError(
                f"importance_sample_ratio must be in [0, 1], got {self.importance_sample_ratio}"
            )


@dataclass
class ImageTargets:
    """Targets of one image.

    Attributes:
        classes: ``(K,)`` int64 classes present among the valid pixels, sorted.
        valid: ``(V,)`` int64 flat indices (``y * W + x``) of the valid pixels.
        labels: ``(H * W,)`` int64 flattened labels.
    """

    classes: torch.Tensor
    valid: torch.Tensor
    labels: torch.Tensor


def image_targets(labels: torch.Tensor, num_classes: int) -> list[ImageTargets]:
    """Per-image targets of ``(B, H, W)`` int64 labels (``IGNORE_INDEX`` ignored).

    Raises:
        ValueError: a label outside ``0..num_classes-1`` that is not ``IGNORE_INDEX``.
    """
    import torch

    targets = []
    for image in labels:
        flat = image.reshape(-1).long()
        valid = torch.nonzero(flat != IGNORE_INDEX).flatten()
        classes = torch.unique(flat[valid])
        if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
            raise ValueError(
                f"labels hold classes {classes.tolist()}; expected 0..{num_classes - 1} or "
                f"{IGNORE_INDEX} (ignore): check num_classes or the pseudo masks"
            )
        targets.append(ImageTargets(classes=classes, valid=valid, labels=flat))
    return targets


def upsampled_at(logits: torch.Tensor, index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Values of ``logits`` bilinearly upsampled to ``size``, at some pixels only.

    Equal to ``F.interpolate(logits[None], size, mode="bilinear",
    align_corners=False)[0].flatten(1).gather(1, index)`` without building the upsampled
    maps. At the same size the weights of the neighbours are exactly 0, so the value is the
    logit itself and no other logit gets a gradient.

    Args:
        logits: ``(N, h, w)`` float maps.
        index: ``(N, P)`` or ``(1, P)`` int64 flat pixel indices of the ``(H, W)`` grid.
        size: ``(H, W)``.

    Returns:
        ``(N, P)`` values (dtype of ``logits``).
    """
    height, width = int(size[0]), int(size[1])
    n, h, w = logits.shape
    index = index.expand(n, -1)
    ys, xs = index // width, index % width
    sy = ((ys.to(logits.dtype) + 0.5) * (h / height) - 0.5).clamp(min=0)
    sx = ((xs.to(logits.dtype) + 0.5) * (w / width) - 0.5).clamp(min=0)
    y0 = sy.floor().long().clamp(max=h - 1)
    x0 = sx.floor().long().clamp(max=w - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    x1 = (x0 + 1).clamp(max=w - 1)
    wy = sy - y0.to(logits.dtype)
    wx = sx - x0.to(logits.dtype)
    flat = logits.reshape(n, h * w)
    top = (1 - wx) * flat.gather(1, y0 * w + x0) + wx * flat.gather(1, y0 * w + x1)
    bottom = (1 - wx) * flat.gather(1, y1 * w + x0) + wx * flat.gather(1, y1 * w + x1)
    return (1 - wy) * top + wy * bottom


def _uniform_valid(target: ImageTargets, shape: tuple[int, ...]) -> torch.Tensor:
    """Valid pixels of ``target`` drawn uniformly with replacement, of ``shape``."""
    import torch

    draw = torch.randint(target.valid.numel(), shape, device=target.valid.device)
    return target.valid[draw]


def _match_points(target: ImageTargets, settings: MaskLossSettings) -> torch.Tensor:
    """``(1, P)`` pixels the matching costs are computed on."""
    if settings.num_points is None:
        return target.valid[None]
    return _uniform_valid(target, (1, int(settings.num_points)))


def match(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target: ImageTargets,
    size: tuple[int, int],
    settings: MaskLossSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hungarian matching of one image's queries to its target masks.

    Args:
        class_logits: ``(Q, C + 1)``; mask_logits: ``(Q, h, w)``.

    Returns:
        ``(query_index, target_index)`` int64 tensors of equal length ``min(Q, K)``.
    """
    import torch
    from scipy.optimize import linear_sum_assignment
    from torch.nn import functional as F

    device = mask_logits.device
    if target.classes.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    with torch.no_grad():
        points = _match_points(target, settings)
        pred = upsampled_at(mask_logits.float(), points, size)  # (Q, P)
        truth = (target.labels[points] == target.classes[:, None]).float()  # (K, P)
        count = pred.shape[1]
        cost_mask = (F.softplus(-pred) @ truth.T + F.softplus(pred) @ (1 - truth).T) / count
        prob = pred.sigmoid()
        numerator = 2 * prob @ truth.T
        denominator = prob.sum(-1)[:, None] + truth.sum(-1)[None, :]
        cost_dice = 1 - (numerator + 1) / (denominator + 1)
        cost_class = -class_logits.float().softmax(-1)[:, target.classes]
        cost = (
            settings.mask_weight * cost_mask
            + settings.class_weight * cost_class
            + settings.dice_weight * cost_dice
        )
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return (
        torch.as_tensor(rows, dtype=torch.long, device=device),
        torch.as_tensor(cols, dtype=torch.long, device=device),
    )


def _loss_points(
    masks: torch.Tensor, target: ImageTargets, size: tuple[int, int], settings: MaskLossSettings
) -> torch.Tensor:
    """``(M, P)`` pixels the mask losses of ``M`` matched masks ``(M, h, w)`` use."""
    import torch

    if settings.num_points is None:
        return target.valid[None].expand(masks.shape[0], -1)
    points = int(settings.num_points)
    important = int(settings.importance_sample_ratio * points)
    candidates = _uniform_valid(
        target, (masks.shape[0], max(int(settings.oversample_ratio * points), important))
    )
    with torch.no_grad():
        uncertainty = -upsampled_at(masks.detach().float(), candidates, size).abs()
        chosen = candidates.gather(1, uncertainty.topk(important, dim=1).indices)
    fresh = _uniform_valid(target, (masks.shape[0], points - important))
    return torch.cat([chosen, fresh], dim=1)


def mask_classification_loss(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    num_classes: int,
    settings: MaskLossSettings | None = None,
    *,
    world_size: int = 1,
) -> torch.Tensor:
    """Mask2Former's loss summed over decoder layers, with ignored pixels left out.

    Args:
        layers: per decoder layer (final and auxiliary), ``(class_logits, mask_logits)``:
            ``(B, Q, C + 1)`` and ``(B, Q, h, w)`` float tensors (``C = num_classes``; the
            last class is "no object").
        labels: ``(B, H, W)`` int64 classes ``0..C-1``, :data:`IGNORE_INDEX` ignored.
        settings: weights and sampling (default Mask2Former's).
        world_size: processes of the global batch; normalisers (target masks, class-loss
            weights) are all-reduced and divided by it.

    Returns:
        Scalar float32 loss.
    """
    import torch
    from torch.nn import functional as F

    settings = settings or MaskLossSettings()
    if not layers:
        raise ValueError("layers is empty; pass at least the final (class, mask) logits")
    size = (int(labels.shape[-2]), int(labels.shape[-1]))
    device = labels.device
    with torch.autocast(device.type, enabled=False):
        targets = image_targets(labels, num_classes)
        num_queries = int(layers[0][0].shape[1])
        has_labels = torch.tensor(
            [float(t.valid.numel() > 0) for t in targets], device=device
        )  # (B,)
        num_masks = float(sum(int(t.classes.numel()) for t in targets))
        class_norm = sum(
            min(int(t.classes.numel()), num_queries) * (1 - settings.no_object_weight)
            + num_queries * settings.no_object_weight
            for t in targets
            if t.valid.numel() > 0
        )
        norms = global_normalizers(
            torch.tensor([num_masks, float(class_norm)], device=device), world_size
        ).clamp(min=1e-6)
        mask_norm = norms[0].clamp(min=1)
        class_weights = torch.ones(num_classes + 1, device=device)
        class_weights[-1] = settings.no_object_weight
        total = torch.zeros((), device=device)
        for class_logits, mask_logits in layers:
            class_logits, mask_logits = class_logits.float(), mask_logits.float()
            if class_logits.shape[-1] != num_classes + 1:
                raise ValueError(
                    f"class logits have {class_logits.shape[-1]} classes; expected "
                    f"num_classes + 1 = {num_classes + 1} (the last is 'no object')"
                )
            target_classes = torch.full(
                class_logits.shape[:2], num_classes, dtype=torch.long, device=device
            )
            bce = torch.zeros((), device=device)
            dice = torch.zeros((), device=device)
            for i, target in enumerate(targets):
                rows, cols = match(class_logits[i], mask_logits[i], target, size, settings)
                if rows.numel() == 0:
                    continue
                target_classes[i, rows] = target.classes[cols]
                masks = mask_logits[i][rows]  # (M, h, w)
                points = _loss_points(masks, target, size, settings)
                pred = upsampled_at(masks, points, size)  # (M, P)
                truth = (target.labels[points] == target.classes[cols][:, None]).float()
                bce = (
                    bce
                    + F.binary_cross_entropy_with_logits(pred, truth, reduction="none")
                    .mean(1)
                    .sum()
                )
                prob = pred.sigmoid()
                dice = (
                    dice
                    + (1 - (2 * (prob * truth).sum(1) + 1) / (prob.sum(1) + truth.sum(1) + 1)).sum()
                )
            per_query = F.cross_entropy(
                class_logits.transpose(1, 2), target_classes, weight=class_weights, reduction="none"
            )  # (B, Q), each multiplied by its class weight
            class_loss = (per_query * has_labels[:, None]).sum() / norms[1]
            total = total + (
                settings.class_weight * class_loss
                + settings.mask_weight * bce / mask_norm
                + settings.dice_weight * dice / mask_norm
            )
    return total


def semantic_log_scores(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Per-pixel class scores of mask classification, as logs.

    ``score[c] = sum_q softmax(class_q)[c] * sigmoid(mask_q)`` (the "no object" class
    dropped), with the mask logits upsampled bilinearly to ``size`` first (Mask2Former's
    semantic inference). Returned as ``log(score + 1e-8)``: its arg-max is Mask2Former's
    prediction and its softmax is the scores normalised to sum to one per pixel.

    Args:
        class_logits: ``(B, Q, C + 1)``; mask_logits: ``(B, Q, h, w)``.

    Returns:
        ``(B, C, H, W)`` float32.
    """
    import torch
    from torch.nn import functional as F

    probs = class_logits.float().softmax(-1)[..., :-1]
    masks = F.interpolate(mask_logits.float(), size=size, mode="bilinear", align_corners=False)
    scores = torch.einsum("bqc,bqhw->bchw", probs, masks.sigmoid())
    return torch.log(scores + 1e-8)


class MaskClassificationArch(HFSegmenterArch):
    """A transformers mask-classification segmenter (Mask2Former, EoMT) trained with
    :func:`mask_classification_loss`.

    A subclass gives :meth:`outputs` (the ``(class_logits, mask_logits)`` of every layer the
    loss covers, the final output first); :meth:`logits` are ``log`` of
    :func:`semantic_log_scores` at the input size; :meth:`build` calls its
    :meth:`_build_random` or :meth:`_build_from_backbone`.

    Args:
        config: the model config's overrides.
        backbone: the backbone's values for a random init.
        drop_path_rate: the backbone's stochastic depth.
        num_points, oversample_ratio, importance_sample_ratio, no_object_weight: the loss's
            point sampling and no-object weight (:class:`MaskLossSettings`; ``num_points``
            ``None`` = dense over the valid pixels).
    """

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        backbone: Mapping[str, Any],
        drop_path_rate: float,
        num_points: int | None,
        oversample_ratio: float,
        importance_sample_ratio: float,
        no_object_weight: float,
    ) -> None:
        self.config = dict(config)
        self.backbone = dict(backbone)
        self.drop_path_rate = float(drop_path_rate)
        self.settings = MaskLossSettings(
            no_object_weight=no_object_weight,
            num_points=num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
        )

    #: The backbones :meth:`build` starts from: ``model_type``, name and an example.
    backbone_type: str
    backbone_label: str
    backbone_example: str

    def build(
        self, num_classes: int, init: str | None, *, allow_segmentation_init: bool = False
    ) -> nn.Module:
        """The network with ``num_classes`` classes: random (``init`` none), on the backbone
        weights of ``init`` (hub id or local folder of a ``backbone_type`` model), or the whole
        of a checkpoint of this architecture (``name``), which is segmentation-trained:
        refused unless ``allow_segmentation_init`` (a class head of another size is
        re-initialised).

        Raises:
            ValueError: another model type, a refused segmentation checkpoint, or an init
                the subclass cannot use.
        """
        num_classes = check_num_classes(num_classes)
        if is_random_init(init):
            return self._build_random(num_classes)
        assert init is not None
        source = init_config(init)
        refuse_segmentation_init(source, init, allow_segmentation_init)
        if source.model_type == self.name:
            return self.load_whole(init, num_classes)
        if source.model_type != self.backbone_type:
            raise ValueError(
                f"init {init!r} is a {source.model_type!r} model; {self.name} needs a "
                f"{self.backbone_label} checkpoint such as {self.backbone_example!r}"
            )
        return self._build_from_backbone(num_classes, init, source)

    @abstractmethod
    def _build_random(self, num_classes: int) -> nn.Module:
        """A random network on a backbone of :attr:`backbone`'s values."""

    @abstractmethod
    def _build_from_backbone(self, num_classes: int, init: str, source: Any) -> nn.Module:
        """The network on ``init``'s backbone weights (``source``: its config), the rest new."""

    @abstractmethod
    def outputs(
        self, model: nn.Module, pixels: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(class_logits, mask_logits)`` of every layer the loss covers, the final first."""

    def loss(
        self, model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, world_size: int = 1
    ) -> torch.Tensor:
        """Mask-classification loss over every layer of :meth:`outputs` (ignored pixels left
        out)."""
        layers = self.outputs(model, pixels)
        num_classes = int(layers[0][0].shape[-1]) - 1
        return mask_classification_loss(
            layers, labels, num_classes, self.settings, world_size=world_size
        )

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 ``log`` semantic scores at the input size."""
        out = model(pixel_values=pixels)
        return semantic_log_scores(
            out.class_queries_logits,
            out.masks_queries_logits,
            (int(pixels.shape[-2]), int(pixels.shape[-1])),
        )
