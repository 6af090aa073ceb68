"""The segmenter trainer: any architecture, poly schedule, bf16/channels-last on CUDA, DDP,
exact resume.

One trainer runs every architecture (:class:`~samwsss.segnets.arch.SegmentationArch`):
DeepLabV2 (:class:`~samwsss.segnets.deeplab.DeepLabArch`, SGD, the default) and the
registry's (SegFormer, Mask2Former, EoMT; AdamW). The architecture builds the network,
gives its parameter groups (each keeps its learning-rate ratio under the poly schedule),
its loss and its inference logits; everything else here is shared.

Run directory layout (``out_dir``)::

    config.yaml               resolved config of the run
    train_log.csv             iteration, loss, learning rates, speed (every log_every)
    val_log.csv               iteration, mIoU, pixel accuracy (when validation is on)
    training_curve.png        loss / lr (and val mIoU) curves, redrawn at each checkpoint
    checkpoints/last.pt       full state (model, optimiser, iteration, RNG) for --resume
    checkpoints/iter_NNNNNNN.pt  kept copies when keep_checkpoints
    model_final.pt            weights + config + class names + architecture, for ``predict``

Distributed: under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the trainer joins
the process group from the environment (NCCL on CUDA, gloo on CPU) and wraps the model in
``DistributedDataParallel``. ``batch_size`` is per process; the effective batch is
``batch_size x world_size`` and the sample stream (:class:`~samwsss.training.data.SampleStream`)
gives the processes disjoint slots of that global batch. The loss is the mean over the
valid (non-ignore) pixels of the *global* batch (the valid count is all-reduced each step),
so gradients equal those of one process with the whole batch.

Resume: ``checkpoints/last.pt`` holds the model, optimiser (momentum) state, the
iteration, and the torch / CUDA / numpy / python RNG states. The data order and every
crop are functions of (seed, sample position), so a resumed run continues with exactly the
batches the uninterrupted run would have seen.

Divergence: the loss of each log row (already read back to the CPU for the log; no extra
device sync per iteration) goes through :class:`~samwsss.training.guard.DivergenceGuard`,
and so does the running window's mean before a checkpoint or validation that falls between
log rows. A non-finite loss, or one above ``divergence_factor`` x the run's first logged
loss, raises :class:`~samwsss.training.guard.TrainingDiverged` before anything is saved from
the diverged state: ``checkpoints/last.pt`` stays the last good checkpoint. Under DDP the
checked value is the all-reduced mean, so every process stops at the same iteration.

The parts live in their own modules: :mod:`samwsss.training.optim` (parameter groups,
schedule, loss), :mod:`samwsss.training.distributed` (process group, DDP wrapper),
:mod:`samwsss.training.guard` (the divergence guard),
:mod:`samwsss.training.state` (checkpoints, RNG states) and :mod:`samwsss.training.logs`
(CSV logs, curves). Their public names are importable from this module too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samwsss.atomic import remove_stale_temporaries
from samwsss.data.base import SegmentationDataset
from samwsss.evaluation import ConfusionMatrix
from samwsss.runs.folder import RunFolder
from samwsss.segnets.arch import SegmentationArch
from samwsss.segnets.registry import resolve_arch
from samwsss.training.config import TrainConfig, save_config
from samwsss.training.data import AugmentedSegmentationData, SampleStream
from samwsss.training.distributed import (
    DistributedContext,
    distributed_session,
    init_distributed,
    wrap_for_training,
)
from samwsss.training.guard import DivergenceGuard, TrainingDiverged
from samwsss.training.logs import (
    LOG_COLUMNS,
    TRAIN_LOG,
    VAL_COLUMNS,
    VAL_LOG,
    append_log_row,
    plot_training_curves,
    prepare_logs,
    read_log_rows,
    train_log_row,
    val_log_row,
)
from samwsss.training.optim import (
    arch_forward_loss,
    build_arch_optimizer,
    count_valid_pixels,
    logged_learning_rates,
    loss_targets,
    poly_lr,
    segmentation_loss,
    set_learning_rates,
)
from samwsss.training.predict import InferenceOptions, evaluate_model
from samwsss.training.state import (
    capture_rng_state,
    check_resumable,
    checkpoint_state,
    load_training_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_host_rngs,
)
from samwsss.training.transforms import TrainAugmentation
from samwsss.weights import hub_cache_dir, hub_cli
from samwsss.workers import exit_with_parent

__all__ = [
    "LOG_COLUMNS",
    "VAL_COLUMNS",
    "DistributedContext",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "arch_forward_loss",
    "build_arch_optimizer",
    "capture_rng_state",
    "count_valid_pixels",
    "init_distributed",
    "initial_weights_error",
    "loss_targets",
    "plot_training_curves",
    "poly_lr",
    "read_log_rows",
    "restore_rng_state",
    "segmentation_loss",
    "set_learning_rates",
    "train_deeplab",
    "train_segmenter",
]

logger = logging.getLogger(__name__)


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


@dataclass
class _Session:
    """What one :meth:`Trainer.run` trains with.

    Attributes:
        model: the bare model (checkpoints, validation).
        train_model: ``model`` or its DDP wrapper (forward and backward).
        guard: the divergence guard (checks the logged losses, knows the last checkpoint).
    """

    ctx: DistributedContext
    device: torch.device
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    amp: bool
    channels_last: bool
    guard: DivergenceGuard


class _LossWindow:
    """The losses of the iterations since the last log row.

    The sum stays a 0-dim float32 tensor on the device, so adding a loss does not wait for
    the GPU; only :meth:`mean` reads it back.
    """

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.count = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        """Add one iteration's scalar loss."""
        self.total += loss.detach()
        self.count += 1

    def mean(self, ctx: DistributedContext) -> float:
        """Mean loss per iteration, averaged over the processes."""
        if ctx.enabled:
            ctx.all_reduce(self.total)
            self.total /= ctx.world_size
        return float(self.total.item()) / self.count

    def peek(self, ctx: DistributedContext) -> float:
        """:meth:`mean` without touching the sum (the window goes on)."""
        total = self.total.clone()
        if ctx.enabled:
            ctx.all_reduce(total)
            total /= ctx.world_size
        return float(total.item()) / self.count

    def first_iteration(self, done: int) -> int:
        """The first iteration (1-based) of the window when ``done`` iterations are complete."""
        return done - self.count + 1

    def seconds(self) -> float:
        """Wall time since the window started."""
        return time.perf_counter() - self.started

    def reset(self) -> None:
        """Start the next window (zero sum and count, clock restarted)."""
        self.total.zero_()
        self.count = 0
        self.started = time.perf_counter()


class Trainer:
    """Train a segmenter on a dataset with ground truth (its own or pseudo masks).

    Args:
        config: the run's settings; ``batch_size``/``iterations`` are resolved from the
            dataset kind when unset; ``config.arch`` names the architecture.
        dataset: training images with masks (``has_gt``), e.g. a
            :class:`~samwsss.training.data.PseudoMaskDataset`.
        out_dir: run directory (see the module docstring).
        val_dataset: optional dataset with GT for periodic validation (``config.val_every``).
        resume: continue from ``out_dir/checkpoints/last.pt`` (starts fresh, with a warning,
            if there is none). Without it, an ``out_dir`` that already holds a checkpoint is
            refused so a finished run is not overwritten by accident.

        arch: the architecture object to train (tests, programs); ``None`` looks up
            ``config.arch`` (:func:`~samwsss.segnets.registry.resolve_arch`). Given, it sets
            ``config.arch`` to its name.

    Raises:
        ValueError: dataset without ground truth or with fewer than two classes,
            ``config.val_every > 0`` without ``val_dataset``, a config or class list that
            differs from the resumed run's in a field that changes results, an existing
            run without ``resume``, or an unknown architecture.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: SegmentationDataset,
        out_dir: str | os.PathLike[str],
        *,
        val_dataset: SegmentationDataset | None = None,
        resume: bool = False,
        arch: SegmentationArch | None = None,
    ) -> None:
        if arch is not None and config.arch != arch.name:
            config = dataclasses.replace(config, arch=arch.name)
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
        if arch is None:
            arch = resolve_arch(self.config)
        self.arch: SegmentationArch = arch
        normalisation = (list(arch.mean), list(arch.std))
        if normalisation != (list(self.config.mean), list(self.config.std)):
            logger.warning(
                "config mean/std %s / %s differ from %s's %s / %s; training normalises with "
                "the config's",
                self.config.mean,
                self.config.std,
                arch.name,
                list(arch.mean),
                list(arch.std),
            )

    @property
    def _validating(self) -> bool:
        return self.val_dataset is not None and self.config.val_every > 0

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

    def _channels_last(self, device: torch.device) -> bool:
        if self.config.channels_last is None:
            return device.type == "cuda"
        return self.config.channels_last

    def _build_model(
        self, device: torch.device, ctx: DistributedContext, state: dict[str, Any] | None = None
    ) -> nn.Module:
        """The seeded model: ``config.init`` weights, or ``state['model']`` when resuming.

        A resumed model is rebuilt from the checkpoint's ``architecture`` (no download).
        Under DDP rank 0 builds first (one download of the initial weights into the cache)
        while the other ranks wait, then they read the cached files.

        Raises:
            ValueError: the initial weights cannot be read or downloaded (offline and not
                cached): the message names them, the command that fetches them and
                ``--init`` (see :func:`initial_weights_error`).
        """
        cfg = self.config
        num_classes = self.dataset.num_classes
        if state is not None:
            torch.manual_seed(cfg.seed)
            architecture = state.get("architecture")
            if architecture is not None:
                model = self.arch.rebuild(architecture)
            else:  # a version-1 (DeepLabV2) checkpoint
                model = self.arch.build(num_classes, "none")
            model.load_state_dict(state["model"])
        else:
            download_first = ctx.enabled and cfg.init not in ("", "none")
            if download_first and not ctx.is_main:
                ctx.barrier()
            torch.manual_seed(cfg.seed)
            try:
                model = self.arch.build(
                    num_classes, cfg.init, allow_segmentation_init=cfg.allow_segmentation_init
                )
            except OSError as error:  # transformers' "not in the cache and no connection"
                raise initial_weights_error(cfg.arch, cfg.init, error) from error
            finally:  # also on failure: the waiting ranks then meet the same error, no hang
                if download_first and ctx.is_main:
                    ctx.barrier()
        model.to(device)
        if self._channels_last(device):
            model.to(memory_format=torch.channels_last)
        return model

    def _loader(self, ctx: DistributedContext, start: int, device: torch.device) -> Iterator[Any]:
        """Batches ``(images (B, H, W, 3) uint8, labels (B, H, W) uint8)`` of this process,
        from iteration ``start`` on."""
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
            worker_init_fn=exit_with_parent,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            # its own generator: the iterator draws its workers' base seed from it, not
            # from the global RNG that dropout and point sampling use (a resumed run
            # creates the iterator after restoring that RNG, a straight run before)
            generator=torch.Generator().manual_seed(cfg.seed + start),
        )
        return iter(loader)

    # ----------------------------------------------------------------- resume
    def _load_resume_state(self, ctx: DistributedContext) -> dict[str, Any] | None:
        """``checkpoints/last.pt`` when resuming (checked against this run), else ``None``."""
        if not self.resume:
            return None
        if not self.last_checkpoint.exists():
            logger.warning(
                "--resume: no checkpoint in %s; starting from iteration 0", self.checkpoint_dir
            )
            return None
        state = load_training_checkpoint(self.last_checkpoint)
        check_resumable(state, self.config, self.dataset.class_names, ctx.world_size, self.out_dir)
        return state

    def _start_iteration(
        self, optimizer: torch.optim.Optimizer, state: dict[str, Any] | None
    ) -> int:
        """Restore the optimiser and RNG states of ``state`` (or seed a fresh run's RNGs);
        return the iteration to start from."""
        if state is None:
            seed_host_rngs(self.config.seed)
            return 0
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
        restore_rng_state(state["rng"])
        logger.info("resumed %s at iteration %d", self.out_dir, start)
        return start

    def _guard(self, state: dict[str, Any] | None, start: int) -> DivergenceGuard:
        """The divergence guard: ``config.divergence_factor`` and, when resuming, the
        reference loss and the checkpoint of ``state``."""
        guard = DivergenceGuard(self.config.divergence_factor, (state or {}).get("guard"))
        if state is not None:
            guard.saved(self.last_checkpoint, start)
        return guard

    def _prepare_run_dir(self, start: int) -> None:
        """Create ``out_dir``, remove a killed run's temporaries, write the config and logs."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out_dir)
        save_config(self.config, self.out_dir / "config.yaml")
        prepare_logs(self.out_dir, start, self._validating)

    # ----------------------------------------------------------------- validation
    def _validate(self, session: _Session) -> tuple[float, float, int]:
        """mIoU, pixel accuracy and image count on the validation set (every rank takes
        a strided share of the images; the confusion counts are summed)."""
        if self.val_dataset is None:
            raise ValueError("validation needs a val_dataset")
        ctx = session.ctx
        ids = list(self.val_dataset.ids)
        if self.config.val_max_images is not None:
            ids = ids[: self.config.val_max_images]
        window = self.config.crop_size if self.arch.fixed_input_size else None
        options = InferenceOptions(
            amp=session.amp, channels_last=session.channels_last, sliding_window=window
        )
        matrix = evaluate_model(
            session.model,
            self.val_dataset,
            mean=self.config.mean,
            std=self.config.std,
            ids=ids[ctx.rank :: ctx.world_size],
            options=options,
            batch_size=self.config.val_batch_size,
            workers=self.config.workers,
            arch=self.arch,
        )
        counts = torch.from_numpy(matrix.counts).to(session.device)
        ctx.all_reduce(counts)
        total = ConfusionMatrix(self.val_dataset.num_classes, self.val_dataset.class_names)
        total.add_counts(counts.cpu().numpy(), num_images=len(ids))
        metrics = total.compute()
        return float(metrics.miou), float(metrics.pixel_accuracy), len(ids)

    # ----------------------------------------------------------------- main loop
    def run(self) -> TrainResult:
        """Train to ``config.iterations`` and write the run directory; see the module docs.
        Rank 0, which writes, holds the directory's lock (:meth:`RunFolder.hold`: a live
        run there raises ``RunLockedError``, a dead one's lock is taken over)."""
        requested = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        with distributed_session(requested.startswith("cuda")) as ctx:
            held = RunFolder(self.out_dir).hold() if ctx.is_main else contextlib.nullcontext()
            with held:
                return self._run(ctx)

    def _run(self, ctx: DistributedContext) -> TrainResult:
        cfg = self.config
        device = self._device(ctx)
        resume_state = self._load_resume_state(ctx)
        model = self._build_model(device, ctx, resume_state)
        optimizer = build_arch_optimizer(self.arch, model, cfg)
        start = self._start_iteration(optimizer, resume_state)
        if ctx.is_main:
            self._prepare_run_dir(start)
        ctx.barrier()
        session = _Session(
            ctx=ctx,
            device=device,
            model=model,
            train_model=wrap_for_training(model, ctx, device),
            optimizer=optimizer,
            amp=self._amp_enabled(device),
            channels_last=self._channels_last(device),
            guard=self._guard(resume_state, start),
        )
        iterations = int(cfg.iterations or 0)
        logger.info(
            "training %s %d -> %d iterations, batch %d x %d processes on %s (amp %s)",
            self.arch.name,
            start,
            iterations,
            int(cfg.batch_size or 0),
            ctx.world_size,
            device,
            "bf16" if session.amp else "off",
        )
        loader = self._loader(ctx, start, device)
        model.train()
        last_loss, val_miou = self._train(session, loader, start)
        final = self._save_final(session)
        return TrainResult(self.out_dir, final, iterations, start, last_loss, val_miou)

    def _train(
        self, session: _Session, loader: Iterator[Any], start: int
    ) -> tuple[float, float | None]:
        """Iterations ``start .. config.iterations - 1`` with their log rows, validations
        and checkpoints.

        Returns:
            The mean loss of the last logged window (NaN if none) and the last
            validation mIoU (``None`` if none).
        """
        cfg = self.config
        iterations = int(cfg.iterations or 0)
        window = _LossWindow(session.device)
        last_loss = math.nan
        val_miou: float | None = None
        if session.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(session.device)
        for iteration in range(start, iterations):
            loss, lr = self._step(session, loader, iteration)
            done = iteration + 1
            window.add(loss)
            validating = self._validating and done % cfg.val_every == 0
            saving = done % cfg.checkpoint_every == 0 or done == iterations
            first = window.first_iteration(done)
            if done % cfg.log_every == 0 or done == iterations:
                last_loss = self._log_window(session, window, done, lr)
                session.guard.check(last_loss, done, first)
            elif validating or saving:  # a checkpoint between log rows: check first too
                session.guard.check(window.peek(session.ctx), done, first)
            if validating:
                val_miou = self._validate_and_log(session, done)
            if saving:
                self._save_checkpoints(session, done)
        return last_loss, val_miou

    def _step(
        self, session: _Session, loader: Iterator[Any], iteration: int
    ) -> tuple[torch.Tensor, float]:
        """One optimiser step at ``iteration`` (0-based); returns the loss and the base lr."""
        lr = set_learning_rates(session.optimizer, self.config, iteration)
        images, labels = next(loader)
        loss = arch_forward_loss(
            self.arch,
            session.train_model,
            images,
            labels,
            self.config,
            device=session.device,
            world_size=session.ctx.world_size,
            amp=session.amp,
            channels_last=session.channels_last,
        )
        session.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(session.model.parameters(), self.config.clip_grad_norm)
        session.optimizer.step()
        return loss, lr

    def _log_window(self, session: _Session, window: _LossWindow, done: int, lr: float) -> float:
        """Close the loss window at iteration ``done``: a ``train_log.csv`` row (rank 0).

        Returns:
            The window's mean loss over every process.
        """
        cfg, ctx, device = self.config, session.ctx, session.device
        loss = window.mean(ctx)
        elapsed = window.seconds()
        if ctx.is_main:
            memory = (
                torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            )
            row = train_log_row(
                done,
                loss,
                logged_learning_rates(session.optimizer, lr, cfg),
                elapsed,
                window.count * int(cfg.batch_size or 0) * ctx.world_size,
                memory,
            )
            append_log_row(self.out_dir / TRAIN_LOG, row)
            logger.info("iter %d/%d loss %.4f lr %.3e", done, int(cfg.iterations or 0), loss, lr)
        window.reset()
        return loss

    def _validate_and_log(self, session: _Session, done: int) -> float:
        """Validate at iteration ``done``, append a ``val_log.csv`` row (rank 0); the mIoU."""
        miou, accuracy, count = self._validate(session)
        if session.ctx.is_main:
            append_log_row(self.out_dir / VAL_LOG, val_log_row(done, miou, accuracy, count))
            logger.info("iter %d val mIoU %.4f", done, miou)
        return miou

    def _save_checkpoints(self, session: _Session, done: int) -> None:
        """``checkpoints/last.pt`` (and ``iter_NNNNNNN.pt`` when kept) and the curves,
        written by rank 0 while the other ranks wait."""
        ctx = session.ctx
        if ctx.is_main:
            state = checkpoint_state(
                session.model,
                session.optimizer,
                done,
                self.config,
                self.dataset.class_names,
                ctx.world_size,
                self.arch,
                guard=session.guard.state(),
            )
            save_checkpoint(state, self.last_checkpoint)
            if self.config.keep_checkpoints:
                save_checkpoint(state, self.checkpoint_dir / f"iter_{done:07d}.pt")
            self.plot_curves()
        session.guard.saved(self.last_checkpoint, done)
        ctx.barrier()

    def _save_final(self, session: _Session) -> Path:
        """``model_final.pt`` (weights, config, class names) and the curves, by rank 0."""
        ctx = session.ctx
        final = self.out_dir / "model_final.pt"
        if ctx.is_main:
            state = checkpoint_state(
                session.model,
                None,
                int(self.config.iterations or 0),
                self.config,
                self.dataset.class_names,
                ctx.world_size,
                self.arch,
            )
            save_checkpoint(state, final)
            self.plot_curves()
        ctx.barrier()
        return final

    # ----------------------------------------------------------------- plots
    def plot_curves(self) -> Path | None:
        """Draw ``training_curve.png`` from the CSV logs (matplotlib Agg, no pyplot state)."""
        return plot_training_curves(self.out_dir, title=f"{self.arch.name} training")


#: File endings of weight files (an ``init`` that ends so is a file, not a hub id).
_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

#: A Hugging Face hub id: ``name`` or ``owner/name`` (letters, digits, ``-_.``).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def initial_weights_error(arch: str, init: str | None, error: OSError) -> ValueError:
    """The user error for an ``init`` that :meth:`SegmentationArch.build` could not load.

    transformers raises ``OSError`` when a hub id is neither in the Hugging Face cache nor
    downloadable (offline machine, ``HF_HUB_OFFLINE=1``, no route to the hub); the message
    names the hub id, the command that downloads it and ``--init`` for a local copy, as
    ``train-deeplab``'s own ImageNet download error does
    (:func:`~samwsss.segnets.deeplab.load_torchvision_backbone`).

    Args:
        arch: the architecture's name.
        init: the initial weights asked for (hub id, folder or file).
        error: what ``build`` raised.
    """
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = str(init)
    if Path(text).expanduser().exists():
        return ValueError(
            f"could not read the initial weights {text} of {arch} ({reason}); pass a readable "
            "folder (written by save_pretrained or `hf download ... --local-dir`) or file "
            "with --init"
        )
    if not _HUB_ID.fullmatch(text) or text.lower().endswith(_WEIGHT_FILE_SUFFIXES):
        return ValueError(
            f"--init {text!r} ({arch}) is neither an existing file or folder nor a Hugging "
            f"Face hub id that can be loaded ({reason}); check the path, or pass a hub id "
            "such as the architecture's default"
        )
    command = f"{hub_cli()} download {text}"
    return ValueError(
        f"the initial weights of {arch}, the Hugging Face hub model {text}, are not in the "
        f"cache ({hub_cache_dir()}) and cannot be downloaded here ({reason}). Where the hub "
        f"is reachable, `{command}` fills the cache (copy it to this machine), or "
        f"`{command} --local-dir DIR` writes a folder to pass here with --init DIR"
    )


def train_segmenter(
    config: TrainConfig,
    dataset: SegmentationDataset,
    out_dir: str | os.PathLike[str],
    *,
    val_dataset: SegmentationDataset | None = None,
    resume: bool = False,
    arch: SegmentationArch | None = None,
) -> TrainResult:
    """Train ``config.arch`` (or ``arch``), see :class:`Trainer`.

    The library entry point of training for every architecture, DeepLabV2 (the default
    ``config.arch``) included: the same run as ``train-deeplab`` and ``train-segmenter``.
    """
    trainer = Trainer(config, dataset, out_dir, val_dataset=val_dataset, resume=resume, arch=arch)
    return trainer.run()


def train_deeplab(
    config: TrainConfig,
    dataset: SegmentationDataset,
    out_dir: str | os.PathLike[str],
    *,
    val_dataset: SegmentationDataset | None = None,
    resume: bool = False,
) -> TrainResult:
    """Deprecated: :func:`train_segmenter` (DeepLabV2 is its default ``config.arch``)."""
    warnings.warn(
        "train_deeplab is deprecated and goes in the next release; use train_segmenter "
        "(same arguments)",
        DeprecationWarning,
        stacklevel=2,
    )
    return train_segmenter(config, dataset, out_dir, val_dataset=val_dataset, resume=resume)
