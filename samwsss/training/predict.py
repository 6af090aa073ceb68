"""Segmenter inference: batched, multi-scale + flip averaged, palette PNGs, evaluation.

Works with the checkpoint of any architecture: :func:`load_checkpoint_model` rebuilds the
network through the checkpoint's architecture (``arch.rebuild``; DeepLabV2 for checkpoints
that name none), and inference goes through ``arch.logits``.

For each image the model runs at every scale ``s`` (input resized bilinearly to
``round(H*s) x round(W*s)``), optionally also on the horizontally flipped input; each
output's logits are upsampled bilinearly to the original ``H x W``, turned into softmax
probabilities, un-flipped, and averaged. The prediction is the arg-max class (uint8).

Sliding window (``InferenceOptions.sliding_window``; on by default for architectures with
``fixed_input_size``): at each scale the (zero-padded, i.e. mean-pixel) input is covered by
square windows of that side at a stride of 2/3 of it; each window's softmax probabilities
are averaged where windows overlap, and the result is resized to ``H x W``.

Images of one batch are grouped by size and each group runs as one tensor, so no image is
padded and results are identical to one-image-at-a-time inference.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from samwsss.checkpoints import load_checkpoint, not_a_checkpoint
from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.devices import resolve_device
from samwsss.evaluation import ConfusionMatrix
from samwsss.labelio import write_label_png
from samwsss.pipeline.batching import Shard
from samwsss.runs.folder import RunFolder
from samwsss.segnets.inference import (
    arch_logits,
    upsample_logits,
    window_probabilities,
)
from samwsss.segnets.registry import checkpoint_arch
from samwsss.training.config import TrainConfig, config_from_dict
from samwsss.training.prediction_identity import (
    IDENTITY_NAME,
    identity_differences,
    prediction_identity,
    state_dict_sha256,
)
from samwsss.training.transforms import normalize_batch
from samwsss.workers import exit_with_parent

if TYPE_CHECKING:
    from samwsss.segnets.arch import SegmentationArch

logger = logging.getLogger(__name__)

#: Format tag of the checkpoints the trainer writes (any architecture).
CHECKPOINT_FORMAT = "samwsss-segmenter"
#: Format tags :func:`load_checkpoint_model` reads (``"samwsss-deeplabv2"``: version 1,
#: DeepLabV2 checkpoints written before architectures were pluggable).
CHECKPOINT_FORMATS = (CHECKPOINT_FORMAT, "samwsss-deeplabv2")


@dataclass
class LoadedModel:
    """A segmenter restored from a samwsss checkpoint.

    Attributes:
        model: the network in eval mode on ``device``.
        config: the training run's resolved config (arch, mean/std, crop size, ...).
        class_names: class names the model predicts, background first.
        iteration: training iterations done when the checkpoint was written.
        device: where the model lives.
        path: the checkpoint file it was loaded from (``None`` when built in memory).
        weights_sha256: hash of the weights (``prediction_identity.state_dict_sha256``);
            ``None`` means "compute it from ``model`` when needed".
        arch: the architecture (its ``logits`` run inference); ``None``: ``model`` maps
            ``(B, 3, h, w)`` to logits at any stride (DeepLabV2).
    """

    model: nn.Module
    config: TrainConfig
    class_names: tuple[str, ...]
    iteration: int
    device: torch.device
    path: Path | None = None
    weights_sha256: str | None = None
    arch: SegmentationArch | None = None


@dataclass(frozen=True)
class InferenceOptions:
    """How to run the model.

    Attributes:
        scales: input scale factors; predictions are averaged over them.
        flip: also run each scale on the horizontally flipped image.
        amp: bf16 autocast (CUDA only; ignored on CPU).
        channels_last: channels-last inputs (CUDA).
        sliding_window: side of the square windows the input of each scale is cut into
            (``None``: the whole image at once).
        window_stride: step between windows (``None``: ``2/3`` of the window).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    amp: bool = True
    channels_last: bool = True
    sliding_window: int | None = None
    window_stride: int | None = None

    def stride(self) -> int:
        """The step between windows (needs :attr:`sliding_window`)."""
        if self.sliding_window is None:
            raise ValueError("no sliding window is set")
        if self.window_stride is not None:
            return self.window_stride
        return max(1, (2 * self.sliding_window) // 3)


def choose_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; strings are validated."""
    return resolve_device(device)


def load_checkpoint_model(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    arch: SegmentationArch | None = None,
) -> LoadedModel:
    """Restore a model written by the trainer (``model_final.pt`` or ``checkpoints/*.pt``).

    The network is rebuilt by the checkpoint's architecture from its saved
    ``architecture`` description (no download); checkpoints without one are DeepLabV2.

    Args:
        arch: use this architecture object instead of looking the checkpoint's up.

    Raises:
        ValueError: the file is missing or not a samwsss segmenter checkpoint, or its
            architecture is unknown here.
    """
    target = Path(path)
    expected = "model_final.pt or checkpoints/last.pt of a train-segmenter / train-deeplab run"
    state = load_checkpoint(target, kind="samwsss DeepLabV2", expected=expected)
    if not isinstance(state, dict) or state.get("format") not in CHECKPOINT_FORMATS:
        raise not_a_checkpoint(
            target, "samwsss DeepLabV2", f"no format={CHECKPOINT_FORMAT!r} tag", expected
        )
    config = config_from_dict(state["config"])
    class_names = tuple(state["class_names"])
    chosen_arch = arch if arch is not None else checkpoint_arch(state, config)
    architecture = state.get("architecture")
    if architecture is not None:
        model = chosen_arch.rebuild(architecture)
    else:
        model = chosen_arch.build(len(class_names), None)
    model.load_state_dict(state["model"])
    digest = state_dict_sha256(model.state_dict())
    chosen = choose_device(device)
    model.to(chosen).eval()
    if chosen.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return LoadedModel(
        model,
        config,
        class_names,
        int(state.get("iteration", 0)),
        chosen,
        path=target.resolve(),
        weights_sha256=digest,
        arch=chosen_arch,
    )


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    options: InferenceOptions = InferenceOptions(),
    arch: SegmentationArch | None = None,
) -> torch.Tensor:
    """Averaged class probabilities of a batch of same-size images.

    Args:
        model: the network (any module mapping ``(B, 3, h, w)`` to strided logits when
            ``arch`` is ``None``, as DeepLabV2 does).
        images: ``(B, H, W, 3)`` uint8 RGB batch (on any device; moved to the model's).
        mean, std: normalisation of the training run.
        options: scales, flip, autocast, sliding window.
        arch: the model's architecture (inference through its ``logits``).

    Returns:
        ``(B, C, H, W)`` float32 probabilities (summing to 1 over ``C``) on the model's device.
    """
    if not options.scales or any(s <= 0 for s in options.scales):
        raise ValueError(f"scales must be positive numbers, got {options.scales}")
    if options.sliding_window is not None and options.sliding_window < 1:
        raise ValueError(f"sliding_window must be >= 1 pixel, got {options.sliding_window}")
    device = next(model.parameters()).device
    channels_last = options.channels_last and device.type == "cuda"
    batch = normalize_batch(images, mean, std, device=device, channels_last=channels_last)
    count, height, width = batch.shape[0], batch.shape[2], batch.shape[3]
    total = torch.zeros((), device=device)
    for scale in options.scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        inputs = (
            batch
            if size == (height, width)
            else F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        )
        if options.flip:
            inputs = torch.cat([inputs, inputs.flip(-1)])
        with _autocast(device, options.amp):
            if options.sliding_window is None:
                probs = arch_logits(model, arch, inputs, (height, width)).softmax(dim=1)
            else:
                probs = window_probabilities(
                    model, arch, inputs, options.sliding_window, options.stride()
                ).float()
                probs = upsample_logits(probs, (height, width))
        if options.flip:
            probs = probs[:count] + probs[count:].flip(-1)
        total = total + probs
    return total / (len(options.scales) * (2 if options.flip else 1))


def predict_labels(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    options: InferenceOptions = InferenceOptions(),
    arch: SegmentationArch | None = None,
) -> list[np.ndarray]:
    """Predict ``(H, W)`` uint8 label maps for RGB images of any sizes.

    Images are grouped by size; each group is one forward per scale (and flip).

    Args:
        images: ``(H, W, 3)`` uint8 RGB arrays.
        arch: the model's architecture (see :func:`predict_probabilities`).

    Returns:
        One ``(H, W)`` uint8 map per image, in input order, each of its image's size.
    """
    results: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for position, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image {position} must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}"
            )
        groups.setdefault(image.shape[:2], []).append(position)
    for positions in groups.values():
        stacked = torch.from_numpy(np.stack([images[p] for p in positions]))
        probs = predict_probabilities(
            model, stacked, mean=mean, std=std, options=options, arch=arch
        )
        labels = probs.argmax(dim=1).to(torch.uint8).cpu().numpy()
        for slot, position in enumerate(positions):
            results[position] = labels[slot]
    return [r for r in results if r is not None]


class _ImageItems(torch.utils.data.Dataset[tuple[str, np.ndarray | None, str | None]]):
    """Decode dataset images by id in DataLoader workers; an unreadable image becomes
    ``(id, None, reason)`` rather than an exception."""

    def __init__(self, dataset: SegmentationDataset, ids: Sequence[str]) -> None:
        self.dataset = dataset
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray | None, str | None]:
        image_id = self.ids[index]
        try:
            return image_id, self.dataset.load_image(image_id), None
        except ImageReadError as error:
            return image_id, None, str(error)


def _as_list(
    batch: list[tuple[str, np.ndarray | None, str | None]],
) -> list[tuple[str, np.ndarray | None, str | None]]:
    return batch


def iterate_images(
    dataset: SegmentationDataset,
    ids: Sequence[str],
    batch_size: int,
    workers: int,
    failures: dict[str, str] | None = None,
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Yield lists of ``(image id, (H, W, 3) uint8 image)``, decoded by ``workers`` processes.

    An image that cannot be decoded is logged (warning), left out of its batch (a batch may
    be short or, if all its images fail, not yielded) and recorded in ``failures``
    (``{id: reason}``) when given.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    loader = torch.utils.data.DataLoader(
        _ImageItems(dataset, ids),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=exit_with_parent,
        collate_fn=_as_list,
    )
    for items in loader:
        good = []
        for image_id, image, error in items:
            if image is None:
                logger.warning("skipped %s: %s", image_id, error)
                if failures is not None:
                    failures[image_id] = str(error)
            else:
                good.append((image_id, image))
        if good:
            yield good


def check_class_names(model_classes: Sequence[str], dataset: SegmentationDataset) -> None:
    """Raise ``ValueError`` if the model was trained on another class list than ``dataset``'s.

    A dataset without a class list (a plain image folder opened without a mapping has
    only ``("background",)``) and without ground truth is accepted: there is nothing to
    compare.
    """
    if not dataset.has_gt and len(dataset.class_names) <= 1:
        return
    if tuple(model_classes) != tuple(dataset.class_names):
        raise ValueError(
            f"the checkpoint predicts {len(model_classes)} classes {list(model_classes)[:4]}... "
            f"but the dataset has {len(dataset.class_names)} {list(dataset.class_names)[:4]}...; "
            "use a checkpoint trained on this dataset's classes (or the matching --mapping)"
        )


@dataclass
class PredictionSummary:
    """What :func:`predict_dataset` did: ``written`` new files, ``skipped`` existing ones,
    and ``failed``: ``{image id: reason}`` for images that could not be decoded."""

    out_dir: Path
    written: int
    skipped: int
    failed: dict[str, str] = field(default_factory=dict)


def predict_dataset(
    loaded: LoadedModel,
    dataset: SegmentationDataset,
    out_dir: str | os.PathLike[str],
    *,
    options: InferenceOptions = InferenceOptions(),
    batch_size: int = 4,
    workers: int = 2,
    overwrite: bool = False,
    palette: bool = True,
    ids: Sequence[str] | None = None,
    reports: Sequence[str] = (),
) -> PredictionSummary:
    """Write ``<out_dir>/<id>.png`` (uint8 class indices, VOC palette) for every image.

    The folder records which run its predictions belong to in ``prediction_identity.json``
    (the checkpoint's weights hash and iteration, the dataset's kind/root/split, scales,
    flip, bf16 and palette; see :mod:`samwsss.training.prediction_identity`). A rerun with
    the same identity resumes: existing ``<id>.png`` are kept. A rerun with another
    identity, or into a folder holding ``<id>.png`` but no identity file, is refused.
    ``overwrite`` deletes the identity and the ``<id>.png`` of every image of ``dataset``
    first and predicts everything again. The run holds the folder's lock while it predicts
    (:meth:`~samwsss.runs.folder.RunFolder.hold`; under torchrun each rank its rank's).

    Args:
        ids: predict only these ids (default: all of ``dataset``).
        reports: names of files in ``out_dir`` made from the predictions (the evaluation
            report): ``overwrite`` deletes them too, under the lock, so that no report
            outlives its predictions.

    Raises:
        ValueError: the checkpoint's classes differ from the dataset's, or (a
            ``RunConflictError``) ``out_dir`` holds predictions of another run (without
            ``overwrite``), or (``RunLockedError``) a live run predicts into it.
    """
    check_class_names(loaded.class_names, dataset)
    folder = Path(out_dir)
    wanted = list(dataset.ids if ids is None else ids)
    digest = loaded.weights_sha256 or state_dict_sha256(loaded.model.state_dict())
    identity = prediction_identity(
        checkpoint=loaded.path,
        iteration=loaded.iteration,
        weights_sha256=digest,
        class_names=loaded.class_names,
        dataset=dataset,
        scales=options.scales,
        flip=options.flip,
        bf16=options.amp and loaded.device.type == "cuda",
        palette=palette,
        sliding_window=(
            None if options.sliding_window is None else (options.sliding_window, options.stride())
        ),
    )
    named = list(dict.fromkeys([*dataset.ids, *wanted]))  # every id a prediction may have

    def predictions() -> list[str]:
        return [f"{i}.png" for i in named if (folder / f"{i}.png").is_file()]

    run = RunFolder(folder, Shard.parse(None), IDENTITY_NAME, identity_differences, resumable=False)
    written, failed = 0, dict[str, str]()
    with run.hold():
        if overwrite:  # the identity first: a kill half-way leaves no identity over old PNGs
            (folder / IDENTITY_NAME).unlink(missing_ok=True)
            for name in reports:
                (folder / name).unlink(missing_ok=True)
            removed = predictions()
            for name in removed:
                (folder / name).unlink()
            if removed:
                logger.info("--overwrite: deleted %d predictions in %s", len(removed), folder)
        run.claim(identity, found=predictions)
        todo = [i for i in wanted if not (folder / f"{i}.png").exists()]
        skipped = len(wanted) - len(todo)
        if skipped:
            logger.info("%d predictions of this run already exist in %s: kept", skipped, folder)
        for batch in iterate_images(dataset, todo, batch_size, workers, failed):
            labels = predict_labels(
                loaded.model,
                [image for _, image in batch],
                mean=loaded.config.mean,
                std=loaded.config.std,
                options=options,
                arch=loaded.arch,
            )
            for (image_id, _), label in zip(batch, labels, strict=True):
                write_label_png(folder / f"{image_id}.png", label, palette=palette)
                written += 1
            logger.info("predicted %d / %d", written, len(todo))
    return PredictionSummary(folder, written, skipped, failed)


def evaluate_model(
    model: torch.nn.Module,
    dataset: SegmentationDataset,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    ids: Sequence[str] | None = None,
    options: InferenceOptions = InferenceOptions(),
    batch_size: int = 4,
    workers: int = 0,
    arch: SegmentationArch | None = None,
) -> Any:
    """Predict ``ids`` (default: all) in memory and count them into a ConfusionMatrix.

    ``arch``: the model's architecture (see :func:`predict_probabilities`).

    Returns:
        ``samwsss.evaluation.ConfusionMatrix`` over the dataset's classes.
    """
    if not dataset.has_gt:
        raise ValueError(f"dataset {dataset.kind!r} has no ground truth to evaluate against")
    matrix = ConfusionMatrix(dataset.num_classes, dataset.class_names)
    was_training = model.training
    model.eval()
    try:
        wanted = list(dataset.ids if ids is None else ids)
        for batch in iterate_images(dataset, wanted, batch_size, workers):
            labels = predict_labels(
                model,
                [image for _, image in batch],
                mean=mean,
                std=std,
                options=options,
                arch=arch,
            )
            for (image_id, _), label in zip(batch, labels, strict=True):
                try:
                    gt = dataset.gt(image_id)
                except ImageReadError as error:
                    logger.warning("left %s out of the evaluation: %s", image_id, error)
                    continue
                if gt is not None:
                    matrix.update(label, gt, image_id=image_id)
    finally:
        model.train(was_training)
    return matrix
