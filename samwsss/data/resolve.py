"""``open_dataset``: turn what a user passes as ``--data``/``--split`` into a dataset.

Detection, in order (``data`` is a folder: a local path or an fsspec URL such as
``s3://bucket/VOCdevkit``, read the same way):

1. **VOC**: ``data`` (or ``data/VOC2012``, or ``data/VOCdevkit/VOC2012``) has
   ``JPEGImages/`` and ``ImageSets/`` -> :class:`VOCDataset` with ``split`` (required).
2. **COCO image folder**: ``data`` is e.g. ``coco/val2014`` and
   ``coco/annotations/instances_val2014.json`` exists -> :class:`COCODataset`
   (``split`` may be omitted or must equal the folder name).
3. **COCO root**: ``data/annotations/instances_<split>.json`` and ``data/<split>/`` exist
   -> :class:`COCODataset` with ``split`` (required).
4. Otherwise a **plain folder** of images -> :class:`FolderDataset` (no ``split``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from samwsss.data.base import SegmentationDataset
from samwsss.data.coco import COCODataset, annotation_file_for, coco_splits, is_coco_image_folder
from samwsss.data.folder import FolderDataset
from samwsss.data.indexed import DatasetError, MappingLike, check_gt_rule, check_label_source
from samwsss.data.voc import VOCDataset, find_voc_root
from samwsss.storage import AnyPath, as_path, is_folder

logger = logging.getLogger(__name__)

_COCO_LIKE_NAME = re.compile(r"^(train|val|test)20\d\d$")

_FORMS = (
    "a VOC root with a split (VOCdevkit/VOC2012 --split train_aug), a COCO image folder "
    "(coco/val2014, with coco/annotations/instances_val2014.json) or a COCO root with a "
    "split (coco --split val2014), or a folder of images"
)


def open_dataset(
    data: str | os.PathLike[str] | AnyPath | SegmentationDataset,
    split: str | None = None,
    *,
    mapping: MappingLike | None = None,
    labels: str | os.PathLike[str] | AnyPath | None = None,
    gt_dir: str | os.PathLike[str] | AnyPath | None = None,
    label_source: str = "xml",
    coco_gt_rule: str = "overwrite",
) -> SegmentationDataset:
    """Open a VOC split, a COCO split or a plain image folder, detected from ``data``.

    Args:
        data: a folder, local or an fsspec URL (``s3://``, ``gs://``, ``hf://``, ...; see
            the module docstring for what is detected), or an already opened dataset,
            returned as is.
        split: VOC: ``train``/``val``/``trainval``/``train_aug``/``test``/a list file;
            COCO root: ``val2014``/``train2014``; must be ``None`` for a plain folder.
        mapping: class mapping (``"voc"``, ``"coco"``, a YAML path, a ClassMapping or a
            list of class names). VOC/COCO: optional, must keep their class list (default
            the built-in ``"voc"``/``"coco"``). Folder: required with ``labels`` or
            ``gt_dir``; gives the class list.
        labels: plain folders only: JSON or CSV image-level labels file (path or URL).
        gt_dir: folder (path or URL) of ``<id>.png`` ground truth, replacing the dataset's
            own.
        label_source: ``"xml"`` (default; synonym ``"annotations"``: VOC XML, COCO JSON,
            the folder's labels file) or ``"gt"`` (classes present in the GT mask).
        coco_gt_rule: ``"overwrite"`` (default, the survey authors' rule) or ``"smallest"``;
            used by COCO only.

    Returns:
        A :class:`VOCDataset`, :class:`COCODataset` or :class:`FolderDataset`.

    Raises:
        DatasetError: (a ``ValueError``) the path or options do not fit; the message says
            what was looked for and what to change.
        ValueError: a URL whose file system package is not installed (the message names
            the package to install, e.g. s3fs).
    """
    if isinstance(data, SegmentationDataset):
        if split is not None or labels is not None or gt_dir is not None:
            raise DatasetError(
                f"{data!r} is already an opened dataset: split, labels and gt_dir cannot be "
                "applied to it; pass its path instead"
            )
        return data
    check_label_source(label_source)
    check_gt_rule(coco_gt_rule)
    path = as_path(data)
    if isinstance(path, Path):
        path = path.expanduser()
    if not is_folder(path):
        if not path.exists():
            raise DatasetError(f"data path {path} does not exist; give {_FORMS}")
        raise DatasetError(f"data path {path} is a file, not a folder; give {_FORMS}")

    voc_root = find_voc_root(path)
    if voc_root is not None:
        _no_labels_file(labels, "VOC")
        logger.info("%s: PASCAL VOC root %s, split %s", path, voc_root, split)
        return VOCDataset(
            voc_root, split or "", mapping=mapping, gt_dir=gt_dir, label_source=label_source
        )
    for candidate in (path, path / "VOC2012"):
        if is_folder(candidate / "JPEGImages") and not is_folder(candidate / "ImageSets"):
            raise DatasetError(
                f"{candidate} has JPEGImages/ but no ImageSets/: a VOC root needs "
                "ImageSets/Segmentation/<split>.txt (unpack the full VOCtrainval archive)"
            )

    if is_coco_image_folder(path):
        _no_labels_file(labels, "COCO")
        if split is not None and split != path.name:
            raise DatasetError(
                f"data {path} is the COCO {path.name!r} image folder but split={split!r}; "
                f"omit the split, or pass the COCO root {path.parent} with split={split!r}"
            )
        logger.info(
            "%s: COCO split %s (%s)", path, path.name, annotation_file_for(path.parent, path.name)
        )
        return COCODataset(
            path.parent,
            path.name,
            mapping=mapping,
            gt_dir=gt_dir,
            label_source=label_source,
            gt_rule=coco_gt_rule,
        )

    splits = coco_splits(path)
    if splits:
        _no_labels_file(labels, "COCO")
        if split not in splits:
            raise DatasetError(
                f"{path} is a COCO root; "
                + ("give a split" if split is None else f"split {split!r} not found")
                + f": available {', '.join(splits)} (each needs {path}/<split>/ and "
                f"{path}/annotations/instances_<split>.json); or pass {path}/<split> as data"
            )
        return COCODataset(
            path,
            split,
            mapping=mapping,
            gt_dir=gt_dir,
            label_source=label_source,
            gt_rule=coco_gt_rule,
        )

    if split is not None:
        raise DatasetError(
            f"split={split!r} applies to VOC and COCO only, and {path} is neither (no "
            "JPEGImages/ + ImageSets/, no annotations/instances_<split>.json); omit the split "
            "to read it as a plain image folder, or fix the path"
        )
    if _COCO_LIKE_NAME.match(path.name):
        logger.warning(
            "%s looks like a COCO image folder but %s is missing; reading it as a plain "
            "image folder without labels or ground truth",
            path,
            annotation_file_for(path.parent, path.name),
        )
    return FolderDataset(
        path, labels=labels, mapping=mapping, gt_dir=gt_dir, label_source=label_source
    )


def _no_labels_file(labels: str | os.PathLike[str] | AnyPath | None, kind: str) -> None:
    if labels is not None:
        raise DatasetError(
            f"a labels file ({labels}) is for plain image folders; {kind} labels come from "
            "its own annotations (label_source='xml') or its ground truth (label_source='gt')"
        )
