"""Segmenter training configuration: one flat dataclass, YAML files and ``key=value`` overrides.

``arch`` picks the architecture (``"deeplabv2"`` by default; the others come from
``samwsss.segnets.registry`` with their recipe, see :mod:`samwsss.training.archs`).

The field defaults are DeepLabV2's; they follow the survey's recipe (section 5.1) and the DeepLab-v2 reference solver:
crops 321x321, SGD momentum 0.9, base learning rate 2.5e-4 with 10x for the ASPP head's
weights and 20x for its biases, weight decay 5e-4 (not on the head's biases: the reference
prototxt gives them ``decay_mult: 0``; the backbone's convolutions have no biases and its
batch norm is frozen), poly schedule with power 0.9, random scaling 0.5-1.5, random crop,
horizontal flip, ignore label 255.

``batch_size`` and ``iterations`` default per dataset kind (VOC: 5 and 20,000; COCO: 10 and
100,000; a plain folder gets the VOC values) and are filled in by :meth:`TrainConfig.resolve`.
Under ``torchrun`` ``batch_size`` is **per process**: the effective (global) batch is
``batch_size x world_size``; divide by the number of GPUs to keep the recipe's batch.

Input normalisation is torchvision's ImageNet mean/std on RGB in [0, 1], because the
backbone weights are torchvision's (the Caffe reference subtracted a BGR mean instead).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from samwsss.atomic import atomic_write_text
from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD
from samwsss.segnets.deeplab import BACKBONES
from samwsss.settings import apply_values, flatten_sections, read_mapping
from samwsss.settings import parse_overrides as parse_overrides  # re-exported
from samwsss.training.guard import DEFAULT_DIVERGENCE_FACTOR

logger = logging.getLogger(__name__)

#: Per dataset kind: (per-process batch size, iterations) from the survey's section 5.1.
KIND_DEFAULTS: dict[str, tuple[int, int]] = {
    "voc": (5, 20_000),
    "coco": (10, 100_000),
    "folder": (5, 20_000),
}

#: Fields that may change between a killed run and its ``--resume`` without changing results
#: (``batch_size`` only with the number of processes so that their product stays the same).
RESUME_MUTABLE = frozenset(
    {
        "workers",
        "batch_size",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "val_every",
        "val_max_images",
        "val_batch_size",
        "device",
        "data",
        "masks",
        "val_data",
        "val_split",
        "mapping",
        "gt_dir",
        "init",
        "allow_segmentation_init",
        "divergence_factor",
    }
)

#: Optimisers a run may use (``config.optimizer``).
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    """Every setting of a DeepLabV2 training run (see the module docstring for the recipe).

    Data:
        data: dataset spec handed to ``samwsss.data.open_dataset`` (VOC root, COCO root or
            image folder). split: its training split (``None``: the dataset's default).
        masks: folder of pseudo masks ``<id>.png`` replacing the ground truth; ``None``
            trains on the dataset's own ground truth (the fully supervised upper bound).
        mapping / gt_dir / coco_gt_rule: passed to ``open_dataset`` (class list of a folder
            dataset, a replacement GT folder, how COCO instances become semantic GT).
        val_data / val_split: dataset for periodic validation (``val_data`` defaults to
            ``data``); validation runs only when ``val_every > 0`` and ``val_split`` is set.

    Architecture:
        arch: the segmenter: ``"deeplabv2"`` (default; the fields below of the "Model"
            section describe it) or a name / folder of ``samwsss.segnets.registry``
            (SegFormer, Mask2Former, EoMT; their recipe fills the optimisation defaults).
        allow_segmentation_init: let ``init`` be weights trained on segmentation data
            (COCO / ADE20K / Cityscapes checkpoints); this leaves the WSSS protocol, which
            allows only image-classification or self-supervised pretraining.

    Model (DeepLabV2):
        backbone: ``"resnet50"``, ``"resnet101"`` (default) or ``"resnet152"``, or
            ``"custom"`` with ``backbone_layers`` (four Bottleneck counts).
        width_per_group: Bottleneck inner width per 64 planes (torchvision's; 64 = standard).
            Smaller values give tiny test models; ImageNet weights need 64.
        init: ``"imagenet"`` (torchvision IMAGENET1K_V1, downloaded on first use),
            ``"imagenet-v2"`` (IMAGENET1K_V2), ``"none"`` (random) or a local checkpoint path.
        atrous_rates: dilations of the four ASPP-v2 branches.

    Optimisation: see field names. ``optimizer``: ``"sgd"`` (momentum ``momentum``;
        DeepLabV2's) or ``"adamw"`` (``betas``, decoupled ``weight_decay``). Every
        parameter group's learning rate is ``lr`` times its multiplier, all following the
        poly schedule (``poly_power``, after ``warmup_iterations`` of linear warm-up).
        DeepLabV2: ``lr`` is the backbone's (x ``backbone_lr_mult`` = 1), the head's weights
        get ``lr * head_lr_mult`` and its biases ``lr * head_bias_lr_mult``;
        ``head_bias_decay`` toggles weight decay on the head biases (off in the
        reference). Other architectures: ``lr`` is the head's / new layers', the pretrained
        backbone's is ``lr * backbone_lr_mult``. ``clip_grad_norm``: clip the global
        gradient norm to this value (``None``: no clipping).
        ``divergence_factor``: the divergence guard (:mod:`samwsss.training.guard`) stops
        the run with ``TrainingDiverged``, before any checkpoint is written from the
        diverged state, when a logged loss exceeds this factor times the first logged loss
        (default 1e3); 0 or ``null`` turns this ratio check off. A non-finite (NaN or
        infinite) loss always stops the run.

    Runtime:
        amp: ``"auto"`` (bf16 autocast on CUDA, float32 on CPU), ``"bf16"`` or ``"none"``.
        channels_last: ``None`` = on for CUDA. device: ``None`` = CUDA when available.
        loss_resolution: ``"label"`` upsamples logits bilinearly to the crop before the
            loss; ``"logits"`` shrinks the labels (nearest) to the stride-8 logits as the
            Caffe reference did.
    """

    # data
    data: str | None = None
    split: str | None = None
    masks: str | None = None
    mapping: str | None = None
    gt_dir: str | None = None
    coco_gt_rule: str = "overwrite"
    val_data: str | None = None
    val_split: str | None = None
    # architecture
    arch: str = "deeplabv2"
    allow_segmentation_init: bool = False
    # model
    backbone: str = "resnet101"
    backbone_layers: list[int] | None = None
    width_per_group: int = 64
    init: str = "imagenet"
    atrous_rates: list[int] = field(default_factory=lambda: [6, 12, 18, 24])
    # optimisation
    iterations: int | None = None
    batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float = 2.5e-4
    backbone_lr_mult: float = 1.0
    head_lr_mult: float = 10.0
    head_bias_lr_mult: float = 20.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_bias_decay: bool = False
    poly_power: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_iterations: int = 0
    clip_grad_norm: float | None = None
    divergence_factor: float | None = DEFAULT_DIVERGENCE_FACTOR
    # augmentation
    crop_size: int = 321
    scale_min: float = 0.5
    scale_max: float = 1.5
    flip: bool = True
    ignore_index: int = 255
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    loss_resolution: str = "label"
    # runtime
    seed: int = 0
    workers: int = 4
    amp: str = "auto"
    channels_last: bool | None = None
    device: str | None = None
    log_every: int = 20
    checkpoint_every: int = 1000
    keep_checkpoints: bool = False
    val_every: int = 0
    val_max_images: int | None = None
    val_batch_size: int = 4

    # ------------------------------------------------------------------ derived views
    @property
    def layers(self) -> tuple[int, int, int, int]:
        """Bottleneck block counts per stage for :attr:`backbone`."""
        if self.backbone == "custom":
            if self.backbone_layers is None:
                raise ValueError(
                    "backbone 'custom' needs backbone_layers, e.g. backbone_layers=[1,1,1,1]"
                )
            return tuple(self.backbone_layers)  # type: ignore[return-value]
        return BACKBONES[self.backbone]

    def resolve(self, kind: str | None) -> TrainConfig:
        """Return a copy with ``batch_size``/``iterations`` filled from the dataset kind.

        Args:
            kind: ``SegmentationDataset.kind`` (``"voc"``, ``"coco"``, ``"folder"``, ...);
                unknown kinds get the VOC defaults.
        """
        batch, iterations = KIND_DEFAULTS.get(kind or "voc", KIND_DEFAULTS["voc"])
        resolved = dataclasses.replace(self)
        if resolved.batch_size is None:
            resolved.batch_size = batch
        if resolved.iterations is None:
            resolved.iterations = iterations
        resolved.validate()
        return resolved

    def validate(self) -> None:
        """Check value ranges; raise ``ValueError`` naming the bad field and the fix."""
        if self.backbone not in (*BACKBONES, "custom"):
            raise ValueError(
                f"backbone {self.backbone!r} is unknown; use one of "
                f"{sorted(BACKBONES) + ['custom']}"
            )
        layers = self.layers
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"backbone_layers must be four counts >= 1, got {list(layers)}")
        if self.width_per_group < 1:
            raise ValueError(f"width_per_group must be >= 1, got {self.width_per_group}")
        if len(self.atrous_rates) < 1 or any(int(r) < 1 for r in self.atrous_rates):
            raise ValueError(f"atrous_rates must be positive ints, got {self.atrous_rates}")
        for name in ("iterations", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not self.arch:
            raise ValueError("arch must name an architecture, e.g. arch=deeplabv2")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_iterations < 0:
            raise ValueError(
                f"warmup_iterations must be >= 0 (0 = none), got {self.warmup_iterations}"
            )
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(
                f"clip_grad_norm must be > 0 or null (no clipping), got {self.clip_grad_norm}"
            )
        factor = self.divergence_factor
        if factor is not None and (not math.isfinite(factor) or factor < 0):
            raise ValueError(
                f"divergence_factor must be a number >= 0 (e.g. 1000; 0 or null turns the "
                f"loss-ratio check off), got {factor}"
            )
        for name in ("lr", "head_lr_mult", "head_bias_lr_mult", "backbone_lr_mult"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("weight_decay", "poly_power"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be >= 8 pixels, got {self.crop_size}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(
                f"need 0 < scale_min <= scale_max, got {self.scale_min}..{self.scale_max}"
            )
        if not 0 <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index must be in 0..255, got {self.ignore_index}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(
                f"mean and std need 3 values (RGB, std > 0), got {self.mean}, {self.std}"
            )
        if self.loss_resolution not in ("label", "logits"):
            raise ValueError(
                f"loss_resolution must be 'label' or 'logits', got {self.loss_resolution!r}"
            )
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'none', got {self.amp!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0 (0 = off), got {self.val_every}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.val_batch_size < 1:
            raise ValueError(f"val_batch_size must be >= 1, got {self.val_batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def diff(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: ``name -> (self's value, other's value)``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {name: (mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]}


#: The old name of :class:`TrainConfig`, kept for ``from samwsss.deeplab.config import
#: DeepLabConfig``; the same class.
DeepLabConfig = TrainConfig


def field_names() -> list[str]:
    """Names of every :class:`TrainConfig` field, in declaration order."""
    return [f.name for f in fields(TrainConfig)]


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Build a config from ``values`` (unknown keys rejected), starting from ``base``.

    Raises:
        ValueError: for an unknown key (the message lists valid keys) or a value of the
            wrong type.
    """
    valid = ", ".join(field_names())
    return apply_values(
        base if base is not None else TrainConfig(),
        values,
        lambda key: f"unknown config key {key!r}; valid keys: {valid}",
    )


def load_config(path: str | os.PathLike[str], base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML mapping of config keys (flat, or nested one level in any section names).

    Nested sections such as ``train: {lr: 0.001}`` are flattened (the section names are
    only for readability); a key given twice raises ``ValueError``.
    """
    loaded = read_mapping(path, "a DeepLab config must be a YAML mapping, got {type}")
    flat = flatten_sections(loaded, field_names(), path)
    try:
        return config_from_dict(flat, base)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write ``config`` as YAML atomically."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
