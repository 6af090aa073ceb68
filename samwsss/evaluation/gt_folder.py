"""A ground-truth-only dataset: a folder of label PNGs, no images.

This is what ``samwsss evaluate --gt-dir DIR --mapping M`` evaluates against when there is
no dataset tree: the image ids are the PNG stems, the class names come from the mapping.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from samwsss.data.base import SegmentationDataset
from samwsss.labelio import read_label_png
from samwsss.storage import AnyPath, as_path, is_folder, scan_folder


class GroundTruthFolder(SegmentationDataset):
    """Ground-truth label PNGs (palette or plain uint8, 255 = ignore) in one folder.

    Ids are the stems of ``*.png`` files in ``gt_dir`` (not recursive), sorted. There are no
    images: :meth:`image_path` raises, :meth:`labels` is ``None``.
    """

    kind = "gt-folder"

    def __init__(
        self, gt_dir: str | os.PathLike[str] | AnyPath, class_names: Sequence[str]
    ) -> None:
        """Index ``gt_dir`` (one listing).

        Args:
            gt_dir: folder of ``<image_id>.png`` ground-truth label maps; a local path or
                an fsspec URL (:func:`samwsss.storage.as_path`).
            class_names: class names, background first.

        Raises:
            ValueError: ``gt_dir`` is not a folder, holds no PNG files, or the class list
                is empty; a URL whose file system package is not installed.
        """
        self.root = as_path(gt_dir)
        if not is_folder(self.root):
            raise ValueError(f"ground-truth folder {str(self.root)!r} does not exist")
        names = tuple(str(name) for name in class_names)
        if not names:
            raise ValueError("class_names must not be empty (background first)")
        self.class_names = names
        self.split: str | None = None
        files = [
            entry.name
            for entry in scan_folder(self.root)
            if entry.name.lower().endswith(".png")
            and not entry.name.startswith(".")
            and entry.is_file()
        ]
        stems = sorted(name[: -len(".png")] for name in files)
        if not stems:
            raise ValueError(
                f"ground-truth folder {str(self.root)!r} holds no .png label maps; give the "
                "folder of <image_id>.png ground-truth masks"
            )
        self._ids = stems
        # each stem's file from the listing (``<stem>.png`` first, else the one with another
        # suffix case), so nothing is asked per mask
        chosen: dict[str, str] = {}
        for name in sorted(files):
            stem = name[: -len(".png")]
            if stem not in chosen or name == f"{stem}.png":
                chosen[stem] = name
        self._paths = {stem: self.root / name for stem, name in chosen.items()}

    @property
    def ids(self) -> list[str]:
        """Sorted PNG stems."""
        return list(self._ids)

    def image_path(self, image_id: str) -> AnyPath:
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

    def gt_path(self, image_id: str) -> AnyPath:
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
