"""Datasets: PASCAL VOC 2012, MS COCO 2014 and plain image folders behind one interface.

``open_dataset(data, split)`` detects which one a path is; every dataset is a sequence of
:class:`Sample` (image id, ``(H, W, 3)`` uint8 RGB image, image-level labels, optional
``(H, W)`` uint8 GT). Importing this package loads no heavy dependency (pycocotools is
imported on first COCO GT request).
"""

from __future__ import annotations

from samwsss.data.base import Sample, SegmentationDataset
from samwsss.data.coco import COCODataset
from samwsss.data.folder import FolderDataset
from samwsss.data.images import ImageReadError, load_rgb
from samwsss.data.indexed import COCO_GT_RULES, LABEL_SOURCES, DatasetError
from samwsss.data.resolve import open_dataset
from samwsss.data.voc import VOCDataset

__all__ = [
    "COCO_GT_RULES",
    "COCODataset",
    "DatasetError",
    "FolderDataset",
    "ImageReadError",
    "LABEL_SOURCES",
    "Sample",
    "SegmentationDataset",
    "VOCDataset",
    "load_rgb",
    "open_dataset",
]
