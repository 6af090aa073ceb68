"""Pieces shared by the VOC, COCO and folder datasets: the error type, option checks,
class-mapping coercion, cheap folder listing, checked ground-truth reading and
:class:`IndexedDataset`, the common body of the three dataset classes.

Nothing here decodes images; everything is cheap enough to run at dataset construction.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from typing import Union

import numpy as np

from samwsss.classes import IGNORE_INDEX
from samwsss.data.base import SegmentationDataset
from samwsss.images import IMAGE_SUFFIXES
from samwsss.labelio import LabelReadError, read_label_png
from samwsss.mapping import ClassMapping, load_mapping, mapping_from_names, normalize_tag
from samwsss.storage import AnyPath, is_folder, scan_folder

#: What ``mapping=`` may be: a built-in name (``"voc"``/``"coco"``), a YAML path, a loaded
#: :class:`~samwsss.mapping.ClassMapping`, or a plain sequence of object class names.
MappingLike = Union[str, "os.PathLike[str]", "ClassMapping", Sequence[str]]

#: Accepted ``label_source`` values. ``"xml"`` and ``"annotations"`` are the same thing: the
#: dataset's own label files (VOC ``Annotations/*.xml``, COCO instances JSON, a folder's
#: labels file). ``"gt"``: the classes present in the ground-truth mask (not 0, not 255).
LABEL_SOURCES = ("xml", "annotations", "gt")

#: Accepted ``coco_gt_rule`` values (see :mod:`samwsss.data.coco`).
COCO_GT_RULES = ("overwrite", "smallest")

#: How many offending names an error message lists before saying "and N more".
_SHOWN = 5


class DatasetError(ValueError):
    """A dataset that cannot be opened or read as asked; the message says what to fix."""


def check_label_source(label_source: str) -> str:
    """Validate ``label_source``; return ``"annotations"`` or ``"gt"``.

    Raises:
        DatasetError: not one of :data:`LABEL_SOURCES`.
    """
    if label_source not in LABEL_SOURCES:
        raise DatasetError(
            f"label_source={label_source!r} is not supported: use 'xml' (or its synonym "
            "'annotations': the dataset's own label files) or 'gt' (classes in the GT mask)"
        )
    return "gt" if label_source == "gt" else "annotations"


def check_gt_rule(rule: str) -> str:
    """Validate a COCO GT rule name.

    Raises:
        DatasetError: not one of :data:`COCO_GT_RULES`.
    """
    if rule not in COCO_GT_RULES:
        raise DatasetError(
            f"coco_gt_rule={rule!r} is not supported: use 'overwrite' (the survey authors' "
            "rule, later annotation wins) or 'smallest' (smallest-area annotation wins)"
        )
    return rule


def coerce_mapping(mapping: MappingLike | None) -> ClassMapping | None:
    """Turn ``mapping=`` into a :class:`ClassMapping` (``None`` stays ``None``).

    Accepts a ClassMapping, ``"voc"``/``"coco"``, a YAML path, or a sequence of object
    class names (background is added as index 0).

    Raises:
        samwsss.mapping.MappingError: the name/path is not a valid mapping.
        DatasetError: ``mapping`` has an unsupported type.
    """
    if mapping is None or isinstance(mapping, ClassMapping):
        return mapping
    if isinstance(mapping, (str, os.PathLike)):
        return load_mapping(mapping)
    if isinstance(mapping, Sequence) and all(isinstance(name, str) for name in mapping):
        return mapping_from_names(list(mapping))
    raise DatasetError(
        f"mapping={mapping!r} is not supported: give 'voc', 'coco', the path of a mapping "
        "YAML file, a ClassMapping, or a list of class names"
    )


def check_mapping_matches(mapping: ClassMapping, expected: Sequence[str], dataset: str) -> None:
    """Require a user mapping for a built-in dataset to have that dataset's class list.

    The mapping may change prompts and tags, never the classes: the ground truth's indices
    are fixed by the dataset.

    Raises:
        DatasetError: the class names differ (the first difference is named).
    """
    names = mapping.class_names
    if len(names) != len(expected):
        raise DatasetError(
            f"mapping {mapping.name!r} ({mapping.source}) has {len(names)} classes but "
            f"{dataset} has {len(expected)} (background included); use a mapping with the "
            f"{dataset} class list, e.g. mapping='{dataset.lower()}'"
        )
    for index, (got, want) in enumerate(zip(names, expected, strict=True)):
        if normalize_tag(got) != normalize_tag(want):
            raise DatasetError(
                f"mapping {mapping.name!r} ({mapping.source}) names class {index} {got!r} but "
                f"{dataset} class {index} is {want!r}; a mapping for {dataset} must keep the "
                "dataset's class names and order (change prompts and tags instead)"
            )


def format_some(items: Sequence[str], shown: int = _SHOWN) -> str:
    """``"a, b, c and 4 more"`` for error messages."""
    head = ", ".join(str(item) for item in items[:shown])
    extra = len(items) - shown
    return f"{head} and {extra} more" if extra > 0 else head


def list_images(folder: AnyPath) -> dict[str, str]:
    """Map file stem -> file name for the image files directly in ``folder`` (one listing;
    ``folder`` may be remote, see :func:`samwsss.storage.scan_folder`).

    Hidden files (``.name``, e.g. temporaries) are skipped; subfolders are not entered.
    When one stem has several image files, ``.jpg`` is preferred, then the others in
    :data:`IMAGE_SUFFIXES` order.
    """
    found: dict[str, str] = {}
    rank = {suffix: position for position, suffix in enumerate(IMAGE_SUFFIXES)}
    for entry in scan_folder(folder):
        if entry.name.startswith("."):
            continue
        stem, suffix = os.path.splitext(entry.name)
        suffix = suffix.lower()
        if suffix not in rank or not entry.is_file():
            continue
        previous = found.get(stem)
        if previous is None or rank[suffix] < rank[os.path.splitext(previous)[1].lower()]:
            found[stem] = entry.name
    return found


def list_pngs(folder: AnyPath) -> set[str]:
    """Stems of the ``.png`` files directly in ``folder`` (one listing; may be remote)."""
    return {
        entry.name[:-4]
        for entry in scan_folder(folder)
        if entry.name.lower().endswith(".png") and not entry.name.startswith(".")
    }


def check_gt_complete(ids: Iterable[str], gt_dir: AnyPath, what: str) -> None:
    """Require ``gt_dir/<id>.png`` for every id (one folder listing, no decoding; ``gt_dir``
    may be remote).

    Raises:
        DatasetError: the folder is missing or some ids have no PNG (they are named).
    """
    if not is_folder(gt_dir):
        raise DatasetError(f"ground-truth folder {gt_dir} not found ({what})")
    present = list_pngs(gt_dir)
    missing = [image_id for image_id in ids if image_id not in present]
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) of {what} have no ground-truth PNG in {gt_dir}: "
            f"{format_some(missing)} (expected e.g. {gt_dir / (missing[0] + '.png')}); "
            "pass the right gt_dir or add the missing masks"
        )


def read_gt(path: AnyPath, image_id: str, num_classes: int) -> np.ndarray:
    """Read a ground-truth PNG (a local path or a remote location) and check its values.

    Returns:
        ``(H, W)`` uint8 label map; values are ``0..num_classes-1`` or 255 (ignore).

    Raises:
        LabelReadError (an ``ImageReadError``): the file cannot be opened or decoded.
        DatasetError: the file is missing, not a label PNG, or holds a value that is not a
            class index of this dataset.
    """
    try:
        label = read_label_png(path)
    except FileNotFoundError as error:
        raise DatasetError(f"ground truth of {image_id!r} not found: {path}") from error
    except LabelReadError as error:  # an image-open error: callers may skip the image
        raise LabelReadError(f"cannot read ground truth of {image_id!r}: {error}") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read ground truth of {image_id!r} ({path}): {error}") from error
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        value = int(label[bad][0])
        raise DatasetError(
            f"{path}: ground truth of {image_id!r} holds value {value}, which is not a class "
            f"index of this dataset (0..{num_classes - 1}, or 255 = ignore)"
        )
    return label


def labels_from_gt(label: np.ndarray) -> tuple[int, ...]:
    """Sorted object classes present in a label map: every value except 0 and 255."""
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    return tuple(int(value) for value in present if value not in (0, IGNORE_INDEX))


class IndexedDataset(SegmentationDataset):
    """What the VOC, COCO and folder datasets share: an id -> image file index built at
    construction, id checks, ground truth read from ``gt_dir/<id>.png`` and the
    mapping / label-source accessors.

    Subclasses set, in ``__init__``: ``_ids`` (ids in order), ``_files`` (id -> image file
    name), ``_label_source`` (from :func:`check_label_source`), ``_mapping`` (from
    :func:`coerce_mapping`) and ``gt_dir``; and say in :attr:`_scope` what the ids belong
    to, for error messages.
    """

    _ids: list[str]
    _files: dict[str, str]
    _label_source: str
    _mapping: ClassMapping | None
    gt_dir: AnyPath | None

    @property
    @abc.abstractmethod
    def _scope(self) -> str:
        """What the ids belong to, e.g. ``"VOC split 'val'"`` (used in messages)."""

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def label_source(self) -> str:
        """``"annotations"`` (the dataset's own label files) or ``"gt"``."""
        return self._label_source

    def _check_id(self, image_id: str) -> None:
        if image_id not in self._files:
            raise KeyError(f"image id {image_id!r} is not in {self._scope}")

    def _builtin_mapping(self, name: str, dataset: str) -> ClassMapping:
        """The mapping given, else the built-in ``name`` one, loaded on first use and checked
        against :attr:`class_names` (``dataset`` names the dataset in the error)."""
        if self._mapping is None:
            self._mapping = load_mapping(name)
            check_mapping_matches(self._mapping, self.class_names, dataset)
        return self._mapping

    @property
    def has_gt(self) -> bool:
        return self.gt_dir is not None

    def gt(self, image_id: str) -> np.ndarray | None:
        self._check_id(image_id)
        if self.gt_dir is None:
            return None
        return read_gt(self.gt_dir / f"{image_id}.png", image_id, self.num_classes)
