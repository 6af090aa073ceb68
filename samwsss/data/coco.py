"""MS COCO 2014 (instances annotations) as a :class:`SegmentationDataset`.

Layout::

    coco/
      train2014/COCO_train2014_000000000009.jpg ...
      val2014/COCO_val2014_000000000042.jpg ...
      annotations/instances_{train2014,val2014}.json

Any split ``S`` with an image folder ``coco/S/`` and ``coco/annotations/instances_S.json``
works (e.g. ``val2017``). Image ids are the file stems (``COCO_val2014_000000000042``), in
file-name order. Every image listed in the JSON must be in the image folder; image files
the JSON does not list are ignored.

Image-level labels: the contiguous indices (1..80, :data:`samwsss.classes.COCO_CATEGORY_TO_INDEX`)
of the categories with at least one *non-crowd* annotation on the image; an image without
any is labelled ``()``. ``label_source="gt"`` takes the classes of the GT mask instead.

Semantic ground truth is built on the fly with ``pycocotools.mask`` (polygons, compressed
and uncompressed RLE) by an explicit rule; crowd annotations never take part, 0 is
background and there is no 255:

- ``"overwrite"`` (default; the survey authors' rule): annotations painted in annotation
  file order, a later one overwriting earlier ones.
- ``"smallest"``: where annotations overlap, the one with the smallest mask area (pixel
  count of the decoded mask) wins; equal areas fall back to file order (later wins).

Polygons with fewer than 3 points are skipped. With ``gt_dir`` the GT is read from
``gt_dir/<id>.png`` instead (e.g. masks precomputed once).

The instances JSON is read once at construction (for the ids and labels). The per-image
polygons/RLEs are dropped when the dataset is pickled (DataLoader workers with ``spawn``,
Ray) and reloaded from the JSON by each process on its first GT request.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from samwsss.classes import COCO_CATEGORY_TO_INDEX, COCO_CLASSES
from samwsss.data.indexed import (
    DatasetError,
    IndexedDataset,
    MappingLike,
    check_gt_complete,
    check_gt_rule,
    check_label_source,
    check_mapping_matches,
    coerce_mapping,
    format_some,
    labels_from_gt,
    list_images,
)
from samwsss.mapping import ClassMapping, normalize_tag
from samwsss.storage import AnyPath, as_path, is_folder, open_binary, scan_folder

logger = logging.getLogger(__name__)

#: One annotation kept for GT building: (contiguous class index, iscrowd, segmentation, id).
Annotation = tuple[int, bool, Any, Any]


_PREFIX, _SUFFIX = "instances_", ".json"


def annotation_file_for(root: AnyPath, split: str) -> AnyPath:
    """The instances file of ``split``: ``root/annotations/instances_<split>.json``."""
    return root / "annotations" / f"{_PREFIX}{split}{_SUFFIX}"


def coco_splits(root: AnyPath) -> list[str]:
    """Splits ``S`` under a COCO root (local or remote) with both ``root/S/`` and its
    instances JSON (one listing of ``root/annotations``)."""
    annotations = root / "annotations"
    if not is_folder(annotations):
        return []
    found = []
    for name in sorted(entry.name for entry in scan_folder(annotations)):
        if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
            continue
        split = name[len(_PREFIX) : -len(_SUFFIX)]
        if is_folder(root / split):
            found.append(split)
    return found


def is_coco_image_folder(path: AnyPath) -> bool:
    """Whether ``path`` (local or remote) is an image folder with
    ``../annotations/instances_<name>.json``."""
    return is_folder(path) and annotation_file_for(path.parent, path.name).is_file()


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode one COCO segmentation to an ``(H, W)`` bool mask.

    Args:
        segmentation: a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel
            coordinates), an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}``
            (column-major runs starting with background) or a compressed RLE
            ``{"size": [H, W], "counts": str}``.
        height, width: image size in pixels.

    Raises:
        ValueError: an unknown segmentation form or an RLE of another size.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [
            [float(v) for v in polygon]
            for polygon in segmentation
            if isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
        ]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} differs from the image size {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(counts, (str, bytes)):
            encoded = counts.encode("ascii") if isinstance(counts, str) else counts
            rle = {"size": size, "counts": encoded}
        else:
            raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    else:
        raise ValueError(
            "segmentation must be a list of polygons or an RLE dict with 'size' and 'counts', "
            f"got {type(segmentation).__name__}"
        )
    return np.asarray(mask_utils.decode(rle), dtype=bool)


def paint_semantic(
    annotations: list[Annotation], height: int, width: int, rule: str = "overwrite"
) -> np.ndarray:
    """Merge one image's instance annotations into an ``(H, W)`` uint8 semantic map.

    Crowd annotations are skipped; 0 is background; see the module docstring for ``rule``.

    Raises:
        DatasetError: an annotation cannot be decoded (its id is named).
    """
    check_gt_rule(rule)
    painted: list[tuple[int, np.ndarray]] = []
    for index, crowd, segmentation, ann_id in annotations:
        if crowd:
            continue
        try:
            painted.append((index, annotation_mask(segmentation, height, width)))
        except (ValueError, TypeError) as error:
            raise DatasetError(
                f"annotation id {ann_id}: cannot decode its segmentation: {error}"
            ) from error
    order = list(range(len(painted)))
    if rule == "smallest":
        areas = [int(mask.sum()) for _, mask in painted]
        order.sort(key=lambda position: (-areas[position], position))
    label = np.zeros((height, width), dtype=np.uint8)
    for position in order:
        index, mask = painted[position]
        label[mask] = index
    return label


#: ``load_instances`` result: images (file name, height, width), labels, annotations by id.
Instances = tuple[
    dict[str, tuple[str, int, int]], dict[str, tuple[int, ...]], dict[str, list[Annotation]]
]


def load_instances(path: AnyPath) -> Instances:
    """Read and check an instances JSON (a local path or a remote location).

    Returns:
        ``(images, labels, annotations)`` keyed by image id (file stem): ``images[id] =
        (file name, height, width)``; ``labels[id]`` sorted non-crowd class indices;
        ``annotations[id]`` in annotation-file order.

    Raises:
        DatasetError: unreadable, invalid JSON, not an instances file, unknown category id,
            an annotation of an unlisted image, duplicate image stems.
    """
    try:
        with open_binary(path) as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise DatasetError(f"COCO annotation file {path} not found") from error
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"COCO annotation file {path} is not valid JSON ({error}); it may be truncated: "
            "download and unpack it again"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read COCO annotation file {path}: {error}") from error
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"{path} is not a COCO instances file: expected a JSON object with lists "
            "'images', 'annotations' and 'categories' (use instances_<split>.json, not "
            "captions or keypoints)"
        )
    for category in data["categories"]:
        cid = category.get("id") if isinstance(category, dict) else None
        if cid not in COCO_CATEGORY_TO_INDEX:
            raise DatasetError(
                f"{path}: category {category!r} is not one of the 80 COCO 2014 categories "
                "(ids 1..90 with gaps); only the standard COCO categories are supported"
            )
        name = str(category.get("name", ""))
        expected = COCO_CLASSES[COCO_CATEGORY_TO_INDEX[cid]]
        if normalize_tag(name) != normalize_tag(expected):
            logger.warning("%s: category id %d is named %r, expected %r", path, cid, name, expected)

    images: dict[str, tuple[str, int, int]] = {}
    by_number: dict[Any, str] = {}
    for position, image in enumerate(data["images"]):
        try:
            number, file_name = image["id"], str(image["file_name"])
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(
                f"{path}: images[{position}] lacks a valid id/file_name/height/width ({error!r})"
            ) from error
        stem = os.path.splitext(os.path.basename(file_name))[0]
        if stem in images:
            raise DatasetError(
                f"{path}: two images have the file stem {stem!r}; ids must be unique"
            )
        images[stem] = (os.path.basename(file_name), height, width)
        by_number[number] = stem

    annotations: dict[str, list[Annotation]] = {stem: [] for stem in images}
    present: dict[str, set[int]] = {stem: set() for stem in images}
    for position, ann in enumerate(data["annotations"]):
        try:
            number, cid, segmentation = ann["image_id"], ann["category_id"], ann["segmentation"]
        except (KeyError, TypeError) as error:
            raise DatasetError(
                f"{path}: annotations[{position}] lacks image_id/category_id/segmentation"
            ) from error
        ann_id = ann.get("id", f"#{position}")
        owner = by_number.get(number)
        if owner is None:
            raise DatasetError(
                f"{path}: annotation id {ann_id} refers to unknown image_id {number}"
            )
        index = COCO_CATEGORY_TO_INDEX.get(cid)
        if index is None:
            raise DatasetError(f"{path}: annotation id {ann_id} has unknown category_id {cid}")
        crowd = bool(ann.get("iscrowd", 0))
        annotations[owner].append((index, crowd, segmentation, ann_id))
        if not crowd:
            present[owner].add(index)
    labels = {stem: tuple(sorted(found)) for stem, found in present.items()}
    return images, labels, annotations


class COCODataset(IndexedDataset):
    """A COCO split with semantic GT from instance annotations (see the module docstring).

    Args:
        root: the COCO root holding ``<split>/`` and ``annotations/``; a local path or an
            fsspec URL (``gs://bucket/coco``, see :func:`samwsss.storage.as_path`).
        split: image folder name, e.g. ``"val2014"`` or ``"train2014"``.
        mapping: optional class mapping used for prompts; its class list must be COCO's
            81 classes. ``None``: the built-in ``"coco"`` mapping, loaded on first use.
        gt_dir: folder (path or URL) of precomputed ``<id>.png`` GT; replaces building it
            from polygons.
        label_source: ``"annotations"`` (default; ``"xml"`` is accepted as a synonym) or
            ``"gt"``.
        gt_rule: ``"overwrite"`` (default) or ``"smallest"``.
        annotation_file: instances JSON (path or URL) to use instead of
            ``root/annotations/instances_<split>.json``.

    Raises:
        ValueError: a URL whose file system package is not installed (it is named).
        DatasetError: missing folder or file, invalid JSON, images listed but missing,
            incomplete ``gt_dir``, mapping with another class list, bad option values.
    """

    kind = "coco"
    class_names = COCO_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str] | AnyPath,
        split: str,
        *,
        mapping: MappingLike | None = None,
        gt_dir: str | os.PathLike[str] | AnyPath | None = None,
        label_source: str = "annotations",
        gt_rule: str = "overwrite",
        annotation_file: str | os.PathLike[str] | AnyPath | None = None,
    ) -> None:
        self.root = as_path(root)
        self.split = split
        self.gt_rule = check_gt_rule(gt_rule)
        self._label_source = check_label_source(label_source)
        self._mapping = coerce_mapping(mapping)
        if self._mapping is not None:
            check_mapping_matches(self._mapping, COCO_CLASSES, "COCO")
        self.image_dir = self.root / split
        if not is_folder(self.image_dir):
            splits = coco_splits(self.root)
            found = (
                ", ".join(splits)
                if splits
                else ("none (expected <split>/ and annotations/instances_<split>.json)")
            )
            raise DatasetError(
                f"COCO image folder {self.image_dir} not found; available splits under "
                f"{self.root}: {found}"
            )
        self.annotation_file = (
            as_path(annotation_file)
            if annotation_file is not None
            else annotation_file_for(self.root, split)
        )
        if not self.annotation_file.is_file():
            raise DatasetError(
                f"COCO annotation file {self.annotation_file} not found; put "
                f"instances_{split}.json from annotations_trainval2014.zip in "
                f"{self.root / 'annotations'}"
            )
        images, labels, annotations = load_instances(self.annotation_file)
        on_disk = list_images(self.image_dir)
        missing = [stem for stem in images if stem not in on_disk]
        if missing:
            raise DatasetError(
                f"{len(missing)} of the {len(images)} images listed in {self.annotation_file} "
                f"are not in {self.image_dir}: {format_some(sorted(missing))} (e.g. "
                f"{self.image_dir / images[sorted(missing)[0]][0]}); unpack the full image "
                "set or use a matching annotation file"
            )
        self._ids = sorted(images, key=lambda stem: images[stem][0])
        self._files = {stem: on_disk[stem] for stem in self._ids}
        self._sizes = {stem: (images[stem][1], images[stem][2]) for stem in self._ids}
        self._labels = labels
        self._annotations: dict[str, list[Annotation]] | None = annotations
        self.gt_dir = as_path(gt_dir) if gt_dir is not None else None
        if self.gt_dir is not None:
            check_gt_complete(self._ids, self.gt_dir, self._scope)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_annotations"] = None  # reloaded from the JSON on first GT request
        return state

    @property
    def _scope(self) -> str:
        return f"COCO split {self.split!r}"

    @property
    def mapping(self) -> ClassMapping:
        """The class mapping (prompts, tags); the built-in ``"coco"`` one unless given."""
        return self._builtin_mapping("coco", "COCO")

    def image_path(self, image_id: str) -> AnyPath:
        self._check_id(image_id)
        return self.image_dir / self._files[image_id]

    def image_size(self, image_id: str) -> tuple[int, int]:
        """``(height, width)`` recorded in the annotation file."""
        self._check_id(image_id)
        return self._sizes[image_id]

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        self._check_id(image_id)
        if self._label_source == "gt":
            gt = self.gt(image_id)
            return labels_from_gt(gt) if gt is not None else ()
        return self._labels[image_id]

    @property
    def has_gt(self) -> bool:
        return True

    def annotations(self, image_id: str) -> list[Annotation]:
        """The image's annotations ``(class index, iscrowd, segmentation, annotation id)``
        in file order (reloads the JSON once in a process that received a pickled copy)."""
        self._check_id(image_id)
        if self._annotations is None:
            logger.info("reloading %s for COCO ground truth", self.annotation_file)
            self._annotations = load_instances(self.annotation_file)[2]
        found = self._annotations.get(image_id)
        if found is None:
            raise DatasetError(
                f"image {image_id!r} is no longer in {self.annotation_file}; the file changed "
                "after the dataset was opened"
            )
        return found

    def gt(self, image_id: str) -> np.ndarray | None:
        if self.gt_dir is not None:
            return super().gt(image_id)
        self._check_id(image_id)
        height, width = self._sizes[image_id]
        try:
            return paint_semantic(self.annotations(image_id), height, width, self.gt_rule)
        except DatasetError as error:
            raise DatasetError(f"{self.annotation_file}, image {image_id!r}: {error}") from error

    def __repr__(self) -> str:
        gt = str(self.gt_dir) if self.gt_dir is not None else f"annotations, rule={self.gt_rule}"
        return (
            f"COCODataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"gt={gt!r}, labels={self.label_source!r})"
        )
