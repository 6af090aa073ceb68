"""The DeepLabV2 trainer: SGD + poly schedule, bf16/channels-last on CUDA, DDP, exact resume.

Run directory layout (``out_dir``)::

    config.yaml               resolved config of the run
    train_log.csv             iteration, loss, learning rates, speed (every log_every)
    val_log.csv               iteration, mIoU, pixel accuracy (when validation is on)
    training_curve.png        loss / lr (and val mIoU) curves, redrawn at each checkpoint
    checkpoints/last.pt       full state (model, optimiser, iteration, RNG) for --resume
    checkpoints/iter_NNNNNNN.pt  kept copies when keep_checkpoints
    model_final.pt            weights + config + class names, for ``predict``

Distributed: under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the trainer joins
the process group from the environment (NCCL on CUDA, gloo on CPU) and wraps the model in
``DistributedDataParallel``. ``batch_size`` is per process; the effective batch is
``batch_size x world_size`` and the sample stream (:class:`~samwsss.deeplab.data.SampleStream`)
gives the processes disjoint slots of that global batch. The loss is the mean over the
valid (non-ignore) pixels of the *global* batch (the valid count is all-reduced each step),
so gradients equal those of one process with the whole batch.

Resume: ``checkpoints/last.pt`` holds the model, optimiser (momentum) state, the
iteration, and the torch / CUDA / numpy / python RNG states. The data order and every
crop are functions of (seed, sample position), so a resumed run continues with exactly the
batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from samwsss.atomic import atomic_open, atomic_write_text, remove_stale_temporaries
from samwsss.data.base import SegmentationDataset
from samwsss.deeplab.config import RESUME_MUTABLE, DeepLabConfig, config_from_dict, save_config
from samwsss.deeplab.data import AugmentedSegmentationData, SampleStream
from samwsss.deeplab.model import DeepLabV2, build_deeplab, upsample_logits
from samwsss.deeplab.predict import CHECKPOINT_FORMAT, InferenceOptions, evaluate_model
from samwsss.deeplab.transforms import TrainAugmentation, normalize_batch

logger = logging.getLogger(__name__)

LOG_COLUMNS = (
    "iteration",
    "loss",
    "lr_backbone",
    "lr_head_weight",
    "lr_head_bias",
    "seconds",
    "images_per_second",
    "max_memory_mb",
)
VAL_COLUMNS = ("iteration", "miou", "pixel_accuracy", "images")


# --------------------------------------------------------------------------- optimisation
def build_optimizer(model: DeepLabV2, config: DeepLabConfig) -> torch.optim.SGD:
    """SGD with the reference's three parameter groups.

    Groups (in this order), each carrying its ``lr_mult`` and ``name``:

    - ``backbone``: lr x1, weight decay ``config.weight_decay``;
    - ``head_weight``: lr x ``head_lr_mult`` (10), weight decay ``config.weight_decay``;
    - ``head_bias``: lr x ``head_bias_lr_mult`` (20), weight decay 0 unless
      ``head_bias_decay`` (the reference's ``decay_mult: 0``).
    """
    groups = model.param_groups()
    spec = [
        ("backbone", 1.0, config.weight_decay),
        ("head_weight", config.head_lr_mult, config.weight_decay),
        (
            "head_bias",
            config.head_bias_lr_mult,
            config.weight_decay if config.head_bias_decay else 0.0,
        ),
    ]
    param_groups = [
        {
            "params": groups[name],
            "name": name,
            "lr_mult": mult,
            "lr": config.lr * mult,
            "weight_decay": decay,
        }
        for name, mult, decay in spec
    ]
    return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum)


def poly_lr(base_lr: float, iteration: int, iterations: int, power: float) -> float:
    """``base_lr * (1 - iteration / iterations) ** power`` (Caffe's "poly", iteration 0-based)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    fraction = min(max(iteration, 0), iterations) / iterations
    return base_lr * (1.0 - fraction) ** power


def set_learning_rates(
    optimizer: torch.optim.Optimizer, config: DeepLabConfig, iteration: int
) -> float:
    """Set every group's lr for ``iteration`` (poly x the group's ``lr_mult``).

    Returns:
        The base (backbone) learning rate.
    """
    if config.iterations is None:
        raise ValueError("config.iterations is unset; call config.resolve(kind) first")
    base = poly_lr(config.lr, iteration, config.iterations, config.poly_power)
    for group in optimizer.param_groups:
        group["lr"] = base * group.get("lr_mult", 1.0)
    return base


def loss_targets(
    labels: torch.Tensor, logits_size: tuple[int, int], resolution: str
) -> torch.Tensor:
    """The labels the loss compares the logits with, at the loss's resolution.

    Both :func:`segmentation_loss` and :func:`forward_loss` (which counts the valid pixels
    for the DDP normaliser) go through this, so the pixels counted are the pixels summed.

    Args:
        labels: ``(B, H, W)`` int64 class indices.
        logits_size: ``(h, w)`` of the stride-8 logits.
        resolution: ``"label"`` keeps ``labels`` as they are (the logits are upsampled);
            ``"logits"`` shrinks them to ``(h, w)`` with nearest neighbour, as Caffe DeepLab
            did (labels already of that size are returned as they are).

    Returns:
        ``(B, H, W)`` or ``(B, h, w)`` int64 labels.
    """
    if resolution == "label":
        return labels
    if resolution != "logits":
        raise ValueError(f"resolution must be 'label' or 'logits', got {resolution!r}")
    size = (int(logits_size[0]), int(logits_size[1]))
    if tuple(labels.shape[-2:]) == size:
        return labels
    shrunk = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return shrunk[:, 0].long()


def count_valid_pixels(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Number of pixels of ``labels`` that are not ``ignore_index`` (0-dim int64 tensor)."""
    return (labels != ignore_index).sum()


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    resolution: str = "label",
    normalizer: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Cross-entropy summed over valid pixels, divided by ``normalizer``.

    Args:
        logits: ``(B, C, h, w)`` stride-8 logits (any float dtype; computed in float32).
        labels: ``(B, H, W)`` int64 class indices, ``ignore_index`` ignored.
        resolution: ``"label"`` upsamples the logits to ``(H, W)`` (bilinear);
            ``"logits"`` shrinks the labels to ``(h, w)`` (nearest), as Caffe DeepLab did
            (see :func:`loss_targets`).
        normalizer: the divisor; default the number of valid pixels of the labels the loss
            uses (a plain mean). The trainer passes ``valid pixels of the global batch /
            world size`` under DDP, counted on the same (possibly shrunk) labels.

    Returns:
        Scalar float32 loss (0 when no pixel is valid).
    """
    logits = logits.float()
    labels = loss_targets(labels, (logits.shape[-2], logits.shape[-1]), resolution)
    if resolution == "label":
        logits = upsample_logits(logits, (labels.shape[-2], labels.shape[-1]))
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    if normalizer is None:
        normalizer = count_valid_pixels(labels, ignore_index)
    if isinstance(normalizer, torch.Tensor):
        return total / normalizer.clamp(min=1).to(total.dtype)
    return total / max(float(normalizer), 1.0)


def forward_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: DeepLabConfig,
    *,
    device: torch.device,
    world_size: int = 1,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """One training forward: normalise, run the model, loss over the global batch's valid pixels.

    Args:
        model: DeepLabV2, possibly wrapped in ``DistributedDataParallel``.
        images: ``(B, H, W, 3)`` uint8 crops of this process.
        labels: ``(B, H, W)`` uint8 labels (``config.ignore_index`` ignored).
        world_size: processes sharing the global batch; with more than one, the valid
            pixel count is all-reduced and the loss scaled so that DDP's gradient averaging
            yields the gradient of the mean over every valid pixel of the global batch.
            The count is taken on the labels the loss uses (shrunk to the logits' size
            with ``loss_resolution="logits"``).
        amp: bf16 autocast for the forward (the loss itself is float32).

    Returns:
        Scalar loss to call ``backward`` on.
    """
    inputs = normalize_batch(
        images, config.mean, config.std, device=device, channels_last=channels_last
    )
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(inputs)
    targets = loss_targets(
        labels.to(device, non_blocking=True).long(),
        (logits.shape[-2], logits.shape[-1]),
        config.loss_resolution,
    )
    valid = count_valid_pixels(targets, config.ignore_index)
    if world_size > 1:
        dist.all_reduce(valid)
    normalizer = valid.float() / world_size
    return segmentation_loss(
        logits, targets, ignore_index=config.ignore_index,
        resolution=config.loss_resolution, normalizer=normalizer,
    )


# --------------------------------------------------------------------------- distributed
@dataclass
class DistributedContext:
    """This process's place in the job.

    Attributes:
        rank, world_size, local_rank: from ``torchrun``'s environment (0, 1, 0 otherwise).
        owns_group: this trainer created the process group (and destroys it at the end).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.enabled:
            dist.barrier()


def init_distributed(use_cuda: bool) -> DistributedContext:
    """Join the process group described by ``torchrun``'s environment, if any.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``
    through ``init_method="env://"``); backend NCCL when ``use_cuda`` else gloo. An already
    initialised group is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if use_cuda else "gloo"
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    logger.info("joined %s process group: rank %d of %d", backend, rank, world_size)
    return DistributedContext(rank, world_size, local_rank, True)


# --------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy (legacy global) and python ``random`` states, as plain tensors/lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.run`.

    Attributes:
        out_dir: the run directory.
        final_model: ``model_final.pt`` (written by rank 0).
        iterations: iterations completed in total (including resumed ones).
        start_iteration: where this invocation started (``> 0`` after a resume).
        last_loss: mean loss of the last logged window (NaN if nothing was logged).
        val_miou: last validation mIoU, or ``None``.
    """

    out_dir: Path
    final_model: Path
    iterations: int
    start_iteration: int
    last_loss: float
    val_miou: float | None


class Trainer:
    """Train DeepLabV2 on a dataset with ground truth (its own or pseudo masks).

    Args:
        config: the run's settings; ``batch_size``/``iterations`` are resolved from the
            dataset kind when unset.
        dataset: training images with masks (``has_gt``), e.g. a
            :class:`~samwsss.deeplab.data.PseudoMaskDataset`.
        out_dir: run directory (see the module docstring).
        val_dataset: optional dataset with GT for periodic validation (``config.val_every``).
        resume: continue from ``out_dir/checkpoints/last.pt`` (starts fresh, with a warning,
            if there is none). Without it, an ``out_dir`` that already holds a checkpoint is
            refused so a finished run is not overwritten by accident.

    Raises:
        ValueError: dataset without ground truth or with fewer than two classes,
            ``config.val_every > 0`` without ``val_dataset``, a config or class list that
            differs from the resumed run's in a field that changes results, or an existing
            run without ``resume``.
    """

    def __init__(
        self,
        config: DeepLabConfig,
        dataset: SegmentationDataset,
        out_dir: str | os.PathLike[str],
        *,
        val_dataset: SegmentationDataset | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config.resolve(dataset.kind)
        self.dataset = dataset
        self.val_dataset = val_dataset
        self.out_dir = Path(out_dir)
        self.resume = resume
        if not dataset.has_gt:
            raise ValueError(
                f"dataset {dataset.kind!r} has no ground truth; give pseudo masks (--masks DIR)"
            )
        if dataset.num_classes < 2:
            raise ValueError(
                f"dataset {dataset.kind!r} has {dataset.num_classes} class "
                f"{list(dataset.class_names)}; training needs background and at least one "
                "object class: give the dataset a class list (a mapping)"
            )
        if self.config.val_every > 0 and val_dataset is None:
            raise ValueError(
                f"val_every={self.config.val_every} but no val_dataset is given; pass a "
                "validation dataset with ground truth or set val_every=0"
            )
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.last_checkpoint = self.checkpoint_dir / "last.pt"
        if not resume and self.last_checkpoint.exists():
            raise ValueError(
                f"{self.out_dir} already holds a training run ({self.last_checkpoint}); pass "
                "--resume to continue it or choose another --out"
            )

    # ----------------------------------------------------------------- setup helpers
    def _device(self, ctx: DistributedContext) -> torch.device:
        requested = self.config.device
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {requested!r} requested but CUDA is not available")
            if ctx.enabled or device.index is None:
                index = ctx.local_rank if ctx.enabled else torch.cuda.current_device()
                device = torch.device("cuda", index)
        return device

    def _amp_enabled(self, device: torch.device) -> bool:
        if self.config.amp == "none":
            return False
        if self.config.amp == "bf16":
            return True
        return device.type == "cuda"

    def _build_model(
        self, device: torch.device, ctx: DistributedContext, state: dict[str, Any] | None = None
    ) -> DeepLabV2:
        """The seeded model: ``config.init`` weights, or ``state['model']`` when resuming.

        Under DDP rank 0 fetches torchvision weights first (one download into the cache)
        while the other ranks wait, then they read the cached file.
        """
        cfg = self.config
        init = "none" if state is not None else cfg.init
        download_first = ctx.enabled and init in ("imagenet", "imagenet-v2")
        if download_first and not ctx.is_main:
            ctx.barrier()
        torch.manual_seed(cfg.seed)
        model = build_deeplab(
            self.dataset.num_classes,
            backbone=cfg.backbone,
            layers=cfg.backbone_layers if cfg.backbone == "custom" else None,
            width_per_group=cfg.width_per_group,
            atrous_rates=cfg.atrous_rates,
            init=init,
        )
        if download_first and ctx.is_main:
            ctx.barrier()
        if state is not None:
            model.load_state_dict(state["model"])
        model.to(device)
        if self._channels_last(device):
            model.to(memory_format=torch.channels_last)
        return model

    def _channels_last(self, device: torch.device) -> bool:
        if self.config.channels_last is None:
            return device.type == "cuda"
        return self.config.channels_last

    def _loader(self, ctx: DistributedContext, start: int, device: torch.device) -> Iterator[Any]:
        cfg = self.config
        augmentation = TrainAugmentation(
            crop_size=cfg.crop_size,
            scale_min=cfg.scale_min,
            scale_max=cfg.scale_max,
            flip=cfg.flip,
            ignore_index=cfg.ignore_index,
            mean=tuple(cfg.mean),  # type: ignore[arg-type]
        )
        data = AugmentedSegmentationData(self.dataset, augmentation, seed=cfg.seed)
        stream = SampleStream(
            len(self.dataset),
            int(cfg.batch_size or 0),
            int(cfg.iterations or 0),
            seed=cfg.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            start_iteration=start,
        )
        loader = torch.utils.data.DataLoader(
            data,
            batch_sampler=stream,
            num_workers=cfg.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        return iter(loader)

    # ----------------------------------------------------------------- checkpoints
    def _load_resume_state(self, ctx: DistributedContext) -> dict[str, Any] | None:
        if not self.resume:
            return None
        if not self.last_checkpoint.exists():
            logger.warning(
                "--resume: no checkpoint in %s; starting from iteration 0", self.checkpoint_dir
            )
            return None
        state: dict[str, Any] = torch.load(
            self.last_checkpoint, map_location="cpu", weights_only=True
        )
        if state.get("format") != CHECKPOINT_FORMAT or "optimizer" not in state:
            raise ValueError(f"{self.last_checkpoint} is not a full samwsss training checkpoint")
        saved = config_from_dict(state["config"])
        changed = {
            name: values
            for name, values in saved.diff(self.config).items()
            if name not in RESUME_MUTABLE
        }
        if changed:
            details = ", ".join(f"{k}: run {a!r} vs now {b!r}" for k, (a, b) in changed.items())
            raise ValueError(
                f"cannot resume {self.out_dir}: the config differs in {details}; "
                "resume with the same settings or start a new --out"
            )
        saved_global = int(state.get("world_size", 1)) * int(saved.batch_size or 0)
        if saved_global != ctx.world_size * int(self.config.batch_size or 0):
            raise ValueError(
                f"cannot resume: the run used a global batch of {state.get('world_size', 1)} "
                f"processes x {saved.batch_size}, now {ctx.world_size} x "
                f"{self.config.batch_size}; keep processes x batch_size the same"
            )
        if tuple(state["class_names"]) != tuple(self.dataset.class_names):
            raise ValueError(
                f"cannot resume {self.out_dir}: the run was trained on the classes "
                f"{list(state['class_names'])} but the dataset has "
                f"{list(self.dataset.class_names)}; give the run's dataset (or --mapping)"
            )
        return state

    def _checkpoint_state(
        self,
        model: DeepLabV2,
        optimizer: torch.optim.Optimizer | None,
        iteration: int,
        world_size: int,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "iteration": iteration,
            "config": self.config.to_dict(),
            "class_names": list(self.dataset.class_names),
            "world_size": world_size,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
            state["rng"] = capture_rng_state()
        return state

    @staticmethod
    def _save(state: dict[str, Any], path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with atomic_open(path, "wb") as handle:
            handle.write(buffer.getbuffer())

    # ----------------------------------------------------------------- logging
    def _prepare_logs(self, start: int) -> None:
        """Create the CSV logs, dropping rows a killed run wrote after its last checkpoint.

        Only complete rows are kept (see :func:`read_log_rows`): a kill while a row was
        being appended leaves a torn last line that must not survive into the resumed log.
        """
        for name, columns in (("train_log.csv", LOG_COLUMNS), ("val_log.csv", VAL_COLUMNS)):
            path = self.out_dir / name
            rows: list[list[str]] = []
            if start > 0:
                rows = [row for row in read_log_rows(path, columns) if int(row[0]) <= start]
            if name == "val_log.csv" and not rows and not self._validating:
                continue
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(columns)
            writer.writerows(rows)
            atomic_write_text(path, text.getvalue())

    def _append(self, name: str, row: list[Any]) -> None:
        with (self.out_dir / name).open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(row)
            handle.flush()

    @property
    def _validating(self) -> bool:
        return self.val_dataset is not None and self.config.val_every > 0

    # ----------------------------------------------------------------- validation
    def _validate(
        self, model: DeepLabV2, ctx: DistributedContext, device: torch.device
    ) -> tuple[float, float, int]:
        if self.val_dataset is None:
            raise ValueError("validation needs a val_dataset")
        ids = list(self.val_dataset.ids)
        if self.config.val_max_images is not None:
            ids = ids[: self.config.val_max_images]
        options = InferenceOptions(
            amp=self._amp_enabled(device), channels_last=self._channels_last(device)
        )
        matrix = evaluate_model(
            model,
            self.val_dataset,
            mean=self.config.mean,
            std=self.config.std,
            ids=ids[ctx.rank :: ctx.world_size],
            options=options,
            batch_size=self.config.val_batch_size,
            workers=self.config.workers,
        )
        counts = torch.from_numpy(matrix.counts).to(device)
        if ctx.enabled:
            dist.all_reduce(counts)
        from samwsss.evaluation import ConfusionMatrix

        total = ConfusionMatrix(self.val_dataset.num_classes, self.val_dataset.class_names)
        total.add_counts(counts.cpu().numpy(), num_images=len(ids))
        metrics = total.compute()
        return float(metrics.miou), float(metrics.pixel_accuracy), len(ids)

    # ----------------------------------------------------------------- main loop
    def run(self) -> TrainResult:
        """Train to ``config.iterations`` and write the run directory; see the module docs."""
        cfg = self.config
        requested = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        want_cuda = requested.startswith("cuda")
        ctx = init_distributed(want_cuda)
        try:
            return self._run(ctx)
        finally:
            if ctx.owns_group:
                dist.destroy_process_group()

    def _run(self, ctx: DistributedContext) -> TrainResult:
        cfg = self.config
        iterations, batch_size = int(cfg.iterations or 0), int(cfg.batch_size or 0)
        device = self._device(ctx)
        resume_state = self._load_resume_state(ctx)
        model = self._build_model(device, ctx, resume_state)
        optimizer = build_optimizer(model, cfg)
        start = 0
        if resume_state is not None:
            optimizer.load_state_dict(resume_state["optimizer"])
            start = int(resume_state["iteration"])
            restore_rng_state(resume_state["rng"])
            logger.info("resumed %s at iteration %d", self.out_dir, start)
        else:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out_dir)
            save_config(cfg, self.out_dir / "config.yaml")
            self._prepare_logs(start)
        ctx.barrier()
        if ctx.enabled:
            # frozen-BN buffers are identical on every rank; DDP's default buffer sync of
            # them (about 0.4 MB for ResNet-101) is left on
            ddp_kwargs: dict[str, Any] = {"gradient_as_bucket_view": True}
            if device.type == "cuda":
                ddp_kwargs["device_ids"] = [device.index]
            train_model: nn.Module = nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        else:
            train_model = model
        amp = self._amp_enabled(device)
        channels_last = self._channels_last(device)
        logger.info(
            "training %d -> %d iterations, batch %d x %d processes on %s (amp %s)",
            start, iterations, batch_size, ctx.world_size, device, "bf16" if amp else "off",
        )
        loader = self._loader(ctx, start, device)
        model.train()
        window_loss = torch.zeros((), device=device)
        window_count = 0
        last_loss = math.nan
        val_miou: float | None = None
        window_start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for iteration in range(start, iterations):
            lr = set_learning_rates(optimizer, cfg, iteration)
            images, labels = next(loader)
            loss = forward_loss(
                train_model, images, labels, cfg,
                device=device, world_size=ctx.world_size, amp=amp, channels_last=channels_last,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = iteration + 1
            window_loss += loss.detach()
            window_count += 1
            if done % cfg.log_every == 0 or done == iterations:
                if ctx.enabled:
                    dist.all_reduce(window_loss)
                    window_loss /= ctx.world_size
                last_loss = float(window_loss.item()) / window_count
                elapsed = time.perf_counter() - window_start
                if ctx.is_main:
                    memory = (
                        torch.cuda.max_memory_allocated(device) / 2**20
                        if device.type == "cuda"
                        else ""
                    )
                    self._append(
                        "train_log.csv",
                        [done, f"{last_loss:.6f}", f"{lr:.6e}", f"{lr * cfg.head_lr_mult:.6e}",
                         f"{lr * cfg.head_bias_lr_mult:.6e}", f"{elapsed:.3f}",
                         f"{window_count * batch_size * ctx.world_size / max(elapsed, 1e-9):.3f}",
                         f"{memory:.0f}" if memory != "" else ""],
                    )
                    logger.info("iter %d/%d loss %.4f lr %.3e", done, iterations, last_loss, lr)
                window_loss.zero_()
                window_count = 0
                window_start = time.perf_counter()
            if self._validating and done % cfg.val_every == 0:
                miou, accuracy, count = self._validate(model, ctx, device)
                val_miou = miou
                if ctx.is_main:
                    self._append("val_log.csv", [done, f"{miou:.6f}", f"{accuracy:.6f}", count])
                    logger.info("iter %d val mIoU %.4f", done, miou)
            if done % cfg.checkpoint_every == 0 or done == iterations:
                if ctx.is_main:
                    state = self._checkpoint_state(model, optimizer, done, ctx.world_size)
                    self._save(state, self.last_checkpoint)
                    if cfg.keep_checkpoints:
                        self._save(state, self.checkpoint_dir / f"iter_{done:07d}.pt")
                    self.plot_curves()
                ctx.barrier()
        final = self.out_dir / "model_final.pt"
        if ctx.is_main:
            self._save(self._checkpoint_state(model, None, iterations, ctx.world_size), final)
            self.plot_curves()
        ctx.barrier()
        return TrainResult(self.out_dir, final, iterations, start, last_loss, val_miou)

    # ----------------------------------------------------------------- plots
    def plot_curves(self) -> Path | None:
        """Draw ``training_curve.png`` from the CSV logs (matplotlib Agg, no pyplot state)."""
        return plot_training_curves(self.out_dir)


#: Log columns that may be empty (``max_memory_mb`` off CUDA); every other one is a number.
_OPTIONAL_COLUMNS = frozenset({"max_memory_mb"})


def _complete_row(row: list[str], columns: tuple[str, ...]) -> bool:
    if len(row) != len(columns):
        return False
    try:
        int(row[0])
        for name, value in zip(columns[1:], row[1:]):
            if value == "" and name in _OPTIONAL_COLUMNS:
                continue
            float(value)
    except ValueError:
        return False
    return True


def read_log_rows(path: str | os.PathLike[str], columns: tuple[str, ...]) -> list[list[str]]:
    """The complete rows of a training/validation CSV log (header excluded).

    A run killed while appending can leave a torn last line (``"1"`` of ``"12,0.53,..."``,
    or garbage bytes). A row is kept only if its line ends with a newline, it has one
    field per column, the first field is an integer iteration and the others are numbers
    (``nan`` included; ``max_memory_mb`` may be empty). A file whose header
    is not ``columns`` yields no rows (logged).

    Returns:
        Rows as lists of strings, in file order; ``[]`` when the file does not exist.
    """
    target = Path(path)
    if not target.exists():
        return []
    text = target.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    header = next(csv.reader([lines[0]]), [])
    if tuple(header) != tuple(columns):
        logger.warning(
            "%s: unexpected header %s (expected %s); rows ignored", target, header, columns
        )
        return []
    rows: list[list[str]] = []
    dropped = 0
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line]), [])
        except csv.Error:
            row = []
        if line.endswith(("\n", "\r")) and _complete_row(row, columns):
            rows.append(row)
        else:
            dropped += 1
    if dropped:
        logger.warning("%s: dropped %d incomplete row(s) (a killed run?)", target, dropped)
    return rows


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    return [dict(zip(columns, row)) for row in read_log_rows(path, columns)]


def plot_training_curves(run_dir: str | os.PathLike[str]) -> Path | None:
    """Write ``<run_dir>/training_curve.png``: loss and lr per iteration (+ val mIoU).

    Returns the path, or ``None`` when the log has no rows yet.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(run_dir)
    rows = _read_csv(folder / "train_log.csv", LOG_COLUMNS)
    if not rows:
        return None
    val_rows = _read_csv(folder / "val_log.csv", VAL_COLUMNS)
    steps = [int(r["iteration"]) for r in rows]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if val_rows else 1, squeeze=False)[0]
    loss_axis = axes[0]
    loss_axis.plot(steps, [float(r["loss"]) for r in rows], color="tab:blue", label="loss")
    loss_axis.set_xlabel("iteration")
    loss_axis.set_ylabel("training loss")
    loss_axis.grid(alpha=0.3)
    lr_axis = loss_axis.twinx()
    lr_axis.plot(steps, [float(r["lr_backbone"]) for r in rows], color="tab:orange", label="lr")
    lr_axis.set_ylabel("backbone learning rate")
    loss_axis.set_title("DeepLabV2 training")
    if val_rows:
        axes[1].plot(
            [int(r["iteration"]) for r in val_rows],
            [100 * float(r["miou"]) for r in val_rows],
            marker="o",
        )
        axes[1].set_xlabel("iteration")
        axes[1].set_ylabel("val mIoU (%)")
        axes[1].grid(alpha=0.3)
    figure.tight_layout()
    target = folder / "training_curve.png"
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with atomic_open(target, "wb") as handle:
        handle.write(buffer.getvalue())
    return target


def train_deeplab(
    config: DeepLabConfig,
    dataset: SegmentationDataset,
    out_dir: str | os.PathLike[str],
    *,
    val_dataset: SegmentationDataset | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train DeepLabV2 (see :class:`Trainer`); the library entry point of ``train-deeplab``."""
    return Trainer(config, dataset, out_dir, val_dataset=val_dataset, resume=resume).run()

