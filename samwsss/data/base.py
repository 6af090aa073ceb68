"""The one dataset interface every source (VOC, COCO, plain folder) implements."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from samwsss.data.images import load_rgb
from samwsss.storage import AnyPath


@dataclass(frozen=True)
class Sample:
    """One dataset item.

    Attributes:
        image_id: stable identifier, also the stem of every output file for this image
            (e.g. ``"2007_000032"`` or ``"COCO_val2014_000000000042"``).
        image: ``(H, W, 3)`` uint8 RGB array.
        labels: sorted tuple of object class indices present (``1..C``, never 0), or
            ``None`` when the image-level labels are unknown.
        gt: ``(H, W)`` uint8 ground-truth label map (255 = ignore), or ``None``.
    """

    image_id: str
    image: np.ndarray
    labels: tuple[int, ...] | None
    gt: np.ndarray | None = None


class SegmentationDataset(abc.ABC, Sequence[Sample]):
    """A sequence of :class:`Sample` with a class list.

    Subclasses index their images cheaply at construction (no decoding) and decode lazily,
    so they can be handed to a ``torch.utils.data.DataLoader`` and read in workers.
    """

    #: Class names, background first (index 0).
    class_names: tuple[str, ...]
    #: Short name of the source, e.g. ``"voc"``, ``"coco"``, ``"folder"``.
    kind: str

    @property
    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Image ids in a deterministic order."""

    @abc.abstractmethod
    def image_path(self, image_id: str) -> AnyPath:
        """Path of the image file for ``image_id``: a :class:`~pathlib.Path`, or a
        :class:`upath.UPath` when the dataset was opened from a URL (read it with
        :func:`samwsss.storage.open_binary` or :func:`samwsss.data.images.load_rgb`)."""

    @abc.abstractmethod
    def labels(self, image_id: str) -> tuple[int, ...] | None:
        """Image-level class indices (``1..C``) of ``image_id``, or ``None`` when unknown."""

    @property
    def has_gt(self) -> bool:
        """Whether :meth:`gt` returns ground truth for this dataset."""
        return False

    def gt(self, image_id: str) -> np.ndarray | None:
        """``(H, W)`` uint8 ground-truth label map of ``image_id``, or ``None``."""
        return None

    def load_image(self, image_id: str) -> np.ndarray:
        """Decode ``image_id`` as an ``(H, W, 3)`` uint8 RGB array (EXIF orientation applied)."""
        return load_rgb(self.image_path(image_id))

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        image_id = self.ids[index]
        return Sample(
            image_id=image_id,
            image=self.load_image(image_id),
            labels=self.labels(image_id),
            gt=self.gt(image_id),
        )

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            yield self[index]
