"""Dataset adapters for DeepLabV2 training and the deterministic sample stream.

- :class:`PseudoMaskDataset` puts a folder of pseudo masks (``<dir>/<id>.png``) in place of
  a dataset's ground truth.
- :class:`SampleStream` fixes which image goes into which batch slot of which iteration:
  the global sample position ``p = iteration * global_batch + slot`` maps to epoch
  ``p // N`` and an index in that epoch's seeded permutation. Process ``rank`` of
  ``world_size`` takes slots ``rank * batch .. (rank + 1) * batch - 1``, so a run on W GPUs
  with per-GPU batch B sees exactly the samples of a one-process run with batch ``W * B``.
- :class:`AugmentedSegmentationData` decodes and augments one ``(index, position)`` key with
  a generator seeded by ``(seed, position)``; crops therefore do not depend on workers,
  world size, or whether the run was resumed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from samwsss.data.base import SegmentationDataset
from samwsss.data.images import ImageReadError
from samwsss.labelio import read_label_png
from samwsss.storage import AnyPath
from samwsss.training.transforms import TrainAugmentation

logger = logging.getLogger(__name__)

_PERMUTATION_STREAM = 0
_AUGMENTATION_STREAM = 1


def _mask_files(folder: Path) -> dict[str, str]:
    """``image id -> file name`` of the PNG masks in ``folder`` (``.png`` in any case).

    Raises:
        ValueError: two files differ only in the case of their extension (``a.png`` and
            ``a.PNG``): which one is the mask is ambiguous.
    """
    found: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, extension = os.path.splitext(entry.name)
            if extension.lower() != ".png" or not entry.is_file():
                continue
            if stem in found:
                raise ValueError(
                    f"{str(folder)!r} holds both {found[stem]!r} and {entry.name!r}; keep one "
                    "mask per image"
                )
            found[stem] = entry.name
    return found


class PseudoMaskDataset(SegmentationDataset):
    """``base`` with its ground truth replaced by ``<mask_dir>/<image id>.png``.

    Args:
        base: the dataset giving ids, images, labels and class names.
        mask_dir: folder of ``(H, W)`` uint8 PNG label maps (palette or grayscale) named
            ``<image id>.png`` (or ``.PNG``), as written by the pseudo-mask pipeline.
        missing: ``"error"`` (default) raises if any id has no mask; ``"skip"`` drops those
            ids (logged).

    Raises:
        ValueError: ``mask_dir`` is not a folder, ``missing`` is unknown, ids lack masks
            (``missing="error"``), or no id has a mask.
    """

    def __init__(
        self, base: SegmentationDataset, mask_dir: str | os.PathLike[str], *, missing: str = "error"
    ) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        folder = Path(mask_dir)
        if not folder.is_dir():
            raise ValueError(
                f"pseudo-mask folder {str(folder)!r} does not exist or is not a folder"
            )
        present = _mask_files(folder)
        ids = list(base.ids)
        absent = [image_id for image_id in ids if image_id not in present]
        if absent and missing == "error":
            raise ValueError(
                f"{len(absent)} of {len(ids)} images have no mask in {str(folder)!r} "
                f"(e.g. {absent[:3]}); write them, pick the matching split, or skip them "
                "with missing='skip'"
            )
        if absent:
            logger.warning("%d of %d images have no pseudo mask; skipped", len(absent), len(ids))
        self._ids = [image_id for image_id in ids if image_id in present]
        self._files = {image_id: present[image_id] for image_id in self._ids}
        if not self._ids:
            raise ValueError(f"no image of the dataset has a mask in {str(folder)!r}")
        self.base = base
        self.mask_dir = folder
        self.class_names = base.class_names
        self.kind = base.kind

    @property
    def ids(self) -> list[str]:
        return self._ids

    def image_path(self, image_id: str) -> AnyPath:
        return self.base.image_path(image_id)

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        return self.base.labels(image_id)

    @property
    def has_gt(self) -> bool:
        return True

    def gt(self, image_id: str) -> np.ndarray:
        return read_label_png(self.mask_dir / self._files[image_id])

    def load_image(self, image_id: str) -> np.ndarray:
        return self.base.load_image(image_id)


class SampleStream(Sampler[list[tuple[int, int]]]):
    """Per-iteration batches of ``(dataset index, global position)`` keys for one process.

    Args:
        num_items: dataset size ``N``.
        batch_size: samples per process per iteration.
        iterations: total iterations of the run (the stream stops there).
        seed: seeds each epoch's permutation (``default_rng([seed, 0, epoch])``).
        rank, world_size: this process's slot range in the global batch.
        start_iteration: first iteration to yield (``> 0`` when resuming).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        iterations: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
    ) -> None:
        if num_items < 1:
            raise ValueError("cannot train on an empty dataset (0 images)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.iterations = iterations
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iteration = start_iteration
        self._epoch = -1
        self._permutation = np.empty(0, dtype=np.int64)

    def index_at(self, position: int) -> int:
        """Dataset index of global sample ``position``."""
        epoch, offset = divmod(position, self.num_items)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, _PERMUTATION_STREAM, epoch])
            self._permutation = rng.permutation(self.num_items)
            self._epoch = epoch
        return int(self._permutation[offset])

    def batch_keys(self, iteration: int) -> list[tuple[int, int]]:
        """This process's keys for ``iteration``."""
        global_batch = self.batch_size * self.world_size
        first = iteration * global_batch + self.rank * self.batch_size
        return [(self.index_at(p), p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start_iteration, self.iterations):
            yield self.batch_keys(iteration)

    def __len__(self) -> int:
        return max(0, self.iterations - self.start_iteration)


class AugmentedSegmentationData(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map ``(index, position)`` keys to augmented ``(image, label)`` tensors.

    Args:
        dataset: a dataset with ground truth (its own or a :class:`PseudoMaskDataset`).
        augmentation: the random scale/crop/flip.
        seed: run seed; the augmentation generator is ``default_rng([seed, 1, position])``.

    Items are ``(crop, crop, 3)`` uint8 images and ``(crop, crop)`` uint8 labels (as
    tensors); the DataLoader's default collation stacks them.
    """

    def __init__(
        self, dataset: SegmentationDataset, augmentation: TrainAugmentation, *, seed: int = 0
    ) -> None:
        if not dataset.has_gt:
            raise ValueError(
                f"dataset {dataset.kind!r} has no ground truth to train on; give pseudo masks "
                "(--masks DIR) or a split with ground truth"
            )
        self.dataset = dataset
        self.augmentation = augmentation
        self.seed = seed
        self.num_classes = dataset.num_classes
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented sample of ``key``; an image or mask that cannot be read is logged
        and replaced by the next readable one in dataset order (the same in every run)."""
        index, position = key
        count = len(self.dataset)
        for step in range(count):
            image_id = self.dataset.ids[(index + step) % count]
            try:
                image = self.dataset.load_image(image_id)
                label = self.dataset.gt(image_id)
                break
            except ImageReadError as error:
                if image_id not in self._reported:
                    self._reported.add(image_id)
                    logger.warning("skipped %s in training: %s", image_id, error)
        else:
            raise ValueError(
                f"no image of the dataset ({count}) and its mask could be read; see the "
                "warnings above for the reasons"
            )
        if label is None:
            raise ValueError(f"image {image_id!r} has no ground truth / mask")
        ignore = self.augmentation.ignore_index
        invalid = (label >= self.num_classes) & (label != ignore)
        if invalid.any():
            raise ValueError(
                f"mask of {image_id!r} holds value {int(label[invalid].max())} but the dataset "
                f"has {self.num_classes} classes (0..{self.num_classes - 1}, {ignore} ignore); "
                "check that the masks were made with this dataset's class list"
            )
        rng = np.random.default_rng([self.seed, _AUGMENTATION_STREAM, position])
        image, label = self.augmentation(image, label, rng)
        return torch.from_numpy(image), torch.from_numpy(label)
