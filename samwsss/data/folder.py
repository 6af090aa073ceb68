"""A plain folder of images (the user's own data) as a :class:`SegmentationDataset`.

Images are the files directly in the folder whose suffix is one of
:data:`samwsss.data.images.IMAGE_SUFFIXES` (case-insensitive), sorted by file name;
subfolders and hidden files are not read. The image id is the file stem, so two files
with one stem (``a.jpg``, ``a.png``) are an error.

Optional image-level labels come from a labels file naming classes of the ``mapping``
(which is then required, because only the user knows their class list):

- JSON: ``{"a.jpg": ["cat", "dog"], "b": []}``: keys are file names or stems; values
  lists of class names (a single ``"cat;dog"`` string is accepted too).
- CSV: rows ``image,labels`` with the labels separated by ``;`` or ``|``, e.g.
  ``a.jpg,cat;dog``; an optional header row ``image,labels``; an empty labels cell means
  "no objects".

Class names match the mapping's names case- and space-insensitively. Images the labels
file does not mention get ``labels=None`` (unknown; a warning says how many); a labels
file naming an image that is not in the folder is an error. Optional ground truth:
``gt_dir/<stem>.png`` for every image.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable

from samwsss.data.images import IMAGE_SUFFIXES
from samwsss.data.indexed import (
    DatasetError,
    IndexedDataset,
    MappingLike,
    check_gt_complete,
    check_label_source,
    coerce_mapping,
    format_some,
    labels_from_gt,
)
from samwsss.mapping import ClassMapping
from samwsss.storage import AnyPath, as_path, is_folder, scan_folder

logger = logging.getLogger(__name__)

_HEADER_NAMES = frozenset(
    {"image", "images", "file", "filename", "file_name", "name", "id", "image_id"}
)
_SEPARATORS = re.compile(r"[;|]")


def scan_image_folder(folder: AnyPath) -> list[str]:
    """File names of the images directly in ``folder`` (local or remote), sorted; one
    listing.

    Every entry with an image suffix counts, also one that is not a readable file (a
    dangling symbolic link, a folder named ``x.jpg``): the run logs it as a failure.

    Raises:
        DatasetError: not a folder, no images in it (subfolders with images are named),
            or two images with the same stem.
    """
    if not is_folder(folder):
        raise DatasetError(f"{folder} is not a folder of images")
    names: list[str] = []
    subfolders: list[str] = []
    for entry in scan_folder(folder):
        if entry.name.startswith("."):
            continue
        if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            # kept even when not a readable file (a dangling link, a folder named
            # x.jpg): decoding then logs it as a failure with the reason
            names.append(entry.name)
        elif entry.is_dir():
            subfolders.append(entry.name)
    if not names:
        hint = (
            f"; subfolders are not searched: point at one of {format_some(sorted(subfolders))}"
            if subfolders
            else ""
        )
        raise DatasetError(
            f"{folder} is not a VOC root, a COCO image folder or root, and holds no images "
            f"({', '.join(IMAGE_SUFFIXES)}){hint}"
        )
    names.sort()
    by_stem: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in by_stem:
            raise DatasetError(
                f"{folder}: {by_stem[stem]!r} and {name!r} share the id {stem!r}; outputs are "
                "named by file stem, so rename or move one of them"
            )
        by_stem[stem] = name
    return names


def _split_labels(value: str) -> list[str]:
    return [part.strip() for part in _SEPARATORS.split(value) if part.strip()]


def _read_json_labels(path: AnyPath, text: str) -> list[tuple[str, list[str | int], str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"labels file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise DatasetError(
            f'labels file {path} must hold a JSON object {{"image name": ["class", ...]}}, '
            f"got {type(data).__name__}"
        )
    rows: list[tuple[str, list[str | int], str]] = []
    for key, value in data.items():
        offset = text.find(json.dumps(key, ensure_ascii=False))
        where = f"{path}:{text.count(chr(10), 0, offset) + 1}" if offset >= 0 else str(path)
        if isinstance(value, str):
            names: list[str | int] = list(_split_labels(value))
        elif isinstance(value, list) and all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
        ):
            names = list(value)
        else:
            raise DatasetError(
                f"{where}: labels of {key!r} must be a list of class names, got {value!r}"
            )
        rows.append((key, names, where))
    return rows


def _read_csv_labels(path: AnyPath, text: str) -> list[tuple[str, list[str | int], str]]:
    rows: list[tuple[str, list[str | int], str]] = []
    reader = csv.reader(io.StringIO(text))
    first = True
    for row in reader:
        where = f"{path}:{reader.line_num}"
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if first and cells[0].lower() in _HEADER_NAMES and len(cells) <= 2:
            first = False
            continue
        first = False
        if len(cells) > 2:
            raise DatasetError(
                f"{where}: expected 2 columns 'image,labels' but found {len(cells)}; separate "
                "the labels with ';' or '|', not ','"
            )
        rows.append((cells[0], list(_split_labels(cells[1])) if len(cells) == 2 else [], where))
    return rows


def read_labels_file(
    path: str | os.PathLike[str] | AnyPath, mapping: ClassMapping, names: Iterable[str]
) -> dict[str, tuple[int, ...]]:
    """Read a JSON or CSV labels file (a local path or an fsspec URL) for the images
    ``names`` (file names in one folder).

    Returns:
        image id (stem) -> sorted class indices of ``mapping``.

    Raises:
        DatasetError: unreadable file, unknown format, a class not in the mapping (file,
            line and name given), an image named twice, or images not in the folder.
    """
    source = as_path(path)
    suffix = source.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise DatasetError(
            f"labels file {source} must end in .json or .csv (see the FolderDataset docs "
            "for both formats)"
        )
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise DatasetError(f"labels file {source} not found") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read labels file {source}: {error}") from error
    rows = _read_json_labels(source, text) if suffix == ".json" else _read_csv_labels(source, text)

    lookup: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        lookup[name] = stem
        lookup.setdefault(stem, stem)
    result: dict[str, tuple[int, ...]] = {}
    first_seen: dict[str, str] = {}
    unknown: list[str] = []
    for key, class_names, where in rows:
        image_id = lookup.get(key.replace("\\", "/").rsplit("/", 1)[-1])
        if image_id is None:
            unknown.append(key)
            continue
        if image_id in first_seen:
            raise DatasetError(
                f"{where}: image {key!r} already has labels at {first_seen[image_id]}; give "
                "each image one entry"
            )
        first_seen[image_id] = where
        indices: set[int] = set()
        for class_name in class_names:
            try:
                indices.add(mapping.index_of(class_name))
            except ValueError as error:
                raise DatasetError(f"{where}: image {key!r}: {error}") from error
        result[image_id] = tuple(sorted(indices))
    if unknown:
        raise DatasetError(
            f"labels file {source} names {len(unknown)} image(s) that are not in the image "
            f"folder: {format_some(unknown)}; fix the names or remove those entries"
        )
    return result


class FolderDataset(IndexedDataset):
    """The images directly in one folder, with optional labels and ground truth.

    Args:
        folder: the image folder; a local path or an fsspec URL (``s3://bucket/photos``,
            see :func:`samwsss.storage.as_path`).
        labels: optional JSON or CSV labels file, path or URL (see the module docstring).
        mapping: the class list (a mapping name/path, a ClassMapping, or a list of class
            names). Required with ``labels``; without it ``class_names`` is just
            ``("background",)``.
        gt_dir: optional folder (path or URL) of ``<stem>.png`` ground-truth label maps.
        label_source: ``"annotations"`` (default; ``"xml"`` is a synonym: the labels file)
            or ``"gt"`` (classes in the ``gt_dir`` masks).

    Raises:
        ValueError: a URL whose file system package is not installed (it is named).
        DatasetError: see :func:`scan_image_folder` and :func:`read_labels_file`; labels
            without a mapping; ``label_source="gt"`` without ``gt_dir``; incomplete GT.
    """

    kind = "folder"

    def __init__(
        self,
        folder: str | os.PathLike[str] | AnyPath,
        *,
        labels: str | os.PathLike[str] | AnyPath | None = None,
        mapping: MappingLike | None = None,
        gt_dir: str | os.PathLike[str] | AnyPath | None = None,
        label_source: str = "annotations",
    ) -> None:
        self.root = as_path(folder)
        self.split: str | None = None
        self._label_source = check_label_source(label_source)
        self._mapping = coerce_mapping(mapping)
        names = scan_image_folder(self.root)
        self._files = {os.path.splitext(name)[0]: name for name in names}
        self._ids = [os.path.splitext(name)[0] for name in names]
        self.class_names = self._mapping.class_names if self._mapping else ("background",)
        self.gt_dir = as_path(gt_dir) if gt_dir is not None else None
        if self._label_source == "gt" and self.gt_dir is None:
            raise DatasetError("label_source='gt' needs gt_dir, the folder of ground-truth PNGs")
        if self.gt_dir is not None:
            if self._mapping is None:
                raise DatasetError(
                    "ground truth needs a class list: pass mapping (a mapping YAML, 'voc', "
                    "'coco' or a list of class names) along with gt_dir"
                )
            check_gt_complete(self._ids, self.gt_dir, f"image folder {self.root}")
        self.labels_file = as_path(labels) if labels is not None else None
        self._labels: dict[str, tuple[int, ...]] = {}
        if self.labels_file is not None:
            if self._label_source == "gt":
                raise DatasetError("give either a labels file or label_source='gt', not both")
            if self._mapping is None:
                raise DatasetError(
                    f"labels file {self.labels_file} names classes, so pass mapping (the path "
                    "of a mapping YAML, 'voc', 'coco', or a list of class names) to say which "
                    "class list they belong to"
                )
            self._labels = read_labels_file(self.labels_file, self._mapping, names)
            unlabelled = len(self._ids) - len(self._labels)
            if unlabelled:
                logger.warning(
                    "%d of %d images in %s are not in %s; their labels are unknown",
                    unlabelled,
                    len(self._ids),
                    self.root,
                    self.labels_file,
                )

    @property
    def _scope(self) -> str:
        return str(self.root)

    @property
    def mapping(self) -> ClassMapping | None:
        """The class mapping given, or ``None``."""
        return self._mapping

    def image_path(self, image_id: str) -> AnyPath:
        self._check_id(image_id)
        return self.root / self._files[image_id]

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        self._check_id(image_id)
        if self._label_source == "gt":
            gt = self.gt(image_id)
            return labels_from_gt(gt) if gt is not None else None
        return self._labels.get(image_id)

    def __repr__(self) -> str:
        labels = str(self.labels_file) if self.labels_file else None
        gt = str(self.gt_dir) if self.gt_dir else None
        return (
            f"FolderDataset(root={str(self.root)!r}, images={len(self)}, "
            f"classes={len(self.class_names)}, labels={labels!r}, gt={gt!r})"
        )
