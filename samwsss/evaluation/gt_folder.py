"""A ground-truth-only dataset: a folder of label PNGs, no images.

This is what ``samwsss evaluate --gt-dir DIR --mapping M`` evaluates against when there is
no dataset tree: the image ids are the PNG stems, the class names come from the mapping.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samwsss.data.base import SegmentationDataset
from samwsss.labelio import read_label_png


class GroundTruthFolder(SegmentationDataset):
    """Ground-truth label PNGs (palette or plain uint8, 255 = ignore) in one folder.

    Ids are the stems of ``*.png`` files in ``gt_dir`` (not recursive), sorted. There are no
    images: :meth:`image_path` raises, :meth:`labels` is ``None``.
    """

    kind = "gt-folder"

    def __init__(self, gt_dir: str | os.PathLike[str], class_names: Sequence[str]) -> None:
        """Index ``gt_dir``.

        Args:
            gt_dir: folder of ``<image_id>.png`` ground-truth label maps.
            class_names: class names, background first.

        Raises:
            ValueError: ``gt_dir`` is not a folder, holds no PNG files, or the class list
                is empty.
        """
        self.root = Path(gt_dir)
        if not self.root.is_dir():
            raise ValueError(f"ground-truth folder {str(self.root)!r} does not exist")
        names = tuple(str(name) for name in class_names)
        if not names:
            raise ValueError("class_names must not be empty (background first)")
        self.class_names = names
        self.split: str | None = None
        with os.scandir(self.root) as entries:
            stems = sorted(
                entry.name[: -len(".png")]
                for entry in entries
                if entry.name.lower().endswith(".png")
                and not entry.name.startswith(".")
                and entry.is_file()
            )
        if not stems:
            raise ValueError(
                f"ground-truth folder {str(self.root)!r} holds no .png label maps; give the "
                "folder of <image_id>.png ground-truth masks"
            )
        self._ids = stems
        self._paths = {stem: self._find(stem) for stem in stems}

    def _find(self, stem: str) -> Path:
        path = self.root / f"{stem}.png"
        if path.is_file():
            return path
        return self.root / f"{stem}.PNG"

    @property
    def ids(self) -> list[str]:
        """Sorted PNG stems."""
        return list(self._ids)

    def image_path(self, image_id: str) -> Path:
        """Not available: a ground-truth folder has no images."""
        raise ValueError(
            f"a ground-truth-only folder ({self.root}) has no images; open the dataset "
            "with samwsss.data.open_dataset to read images"
        )

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        """Unknown (``None``); derive them from :meth:`gt` if needed."""
        return None

    @property
    def has_gt(self) -> bool:
        """Always ``True``."""
        return True

    def gt_path(self, image_id: str) -> Path:
        """Path of the ground-truth PNG of ``image_id``."""
        try:
            return self._paths[image_id]
        except KeyError:
            raise ValueError(f"image id {image_id!r} has no ground truth in {self.root}") from None

    def gt(self, image_id: str) -> np.ndarray:
        """``(H, W)`` uint8 ground-truth label map of ``image_id`` (255 = ignore)."""
        return read_label_png(self.gt_path(image_id))

    def __repr__(self) -> str:
        return f"GroundTruthFolder({str(self.root)!r}, {len(self._ids)} masks)"
