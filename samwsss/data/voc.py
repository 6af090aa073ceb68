"""PASCAL VOC 2012 (and the SBD-augmented ``train_aug`` split) as a :class:`SegmentationDataset`.

Layout (``root`` is the ``VOC2012`` folder; its parent ``VOCdevkit`` or the folder holding
``VOCdevkit`` are accepted too)::

    VOC2012/
      JPEGImages/<id>.jpg
      Annotations/<id>.xml                    image-level labels (label_source="xml")
      SegmentationClass/<id>.png              palette PNG GT, 255 on object boundaries
      SegmentationClassAug/<id>.png           plain PNG GT of the SBD-augmented set
      ImageSets/Segmentation/{train,val,trainval,test}.txt
      ImageSets/Segmentation/train_aug.txt    (or ImageSets/SegmentationAug/, or the root)

Split files are looked up, in order, as ``ImageSets/Segmentation/<split>.txt``,
``ImageSets/SegmentationAug/<split>.txt`` and ``<root>/<split>.txt``; ``train_aug`` and
``trainaug`` are the same split. ``split`` may also be the path of a list file. Each line's
first whitespace-separated token is the id, or a path whose file stem is the id (so the
``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` lists of DeepLab ports work); blank lines
and ``#`` comments are skipped.

Ground truth: splits whose name contains ``aug`` read ``SegmentationClassAug/``, the others
``SegmentationClass/``; ``gt_dir`` overrides both. The ``test`` split has no GT and no
labels.

Image-level labels (default ``label_source="xml"``): every ``<object>`` of the XML,
*including* ``difficult`` and ``truncated`` ones, object parts (head, hand, ...) ignored.
This is how the standard WSSS ``cls_labels`` files were made, so results stay comparable.
``label_source="gt"`` uses the classes present in the GT mask (not 0, not 255) instead;
it can differ from the XML (small or difficult objects may be unlabelled in the mask).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET

from samwsss.classes import VOC_CLASSES
from samwsss.data.images import IMAGE_SUFFIXES
from samwsss.data.indexed import (
    DatasetError,
    IndexedDataset,
    MappingLike,
    check_gt_complete,
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

#: Folders searched for ``<split>.txt``, relative to the VOC2012 root, in order.
SPLIT_FOLDERS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug", ".")

#: Split names that mean the same list.
SPLIT_ALIASES = {"train_aug": ("train_aug", "trainaug"), "trainaug": ("trainaug", "train_aug")}

#: File suffixes stripped from list entries such as ``/JPEGImages/x.jpg``.
_LIST_SUFFIXES = frozenset((*IMAGE_SUFFIXES, ".png"))

_VOC_INDEX = {normalize_tag(name): index for index, name in enumerate(VOC_CLASSES)}


def is_voc_root(path: AnyPath) -> bool:
    """Whether ``path`` looks like a VOC2012 root (``JPEGImages/`` and ``ImageSets/``)."""
    return is_folder(path / "JPEGImages") and is_folder(path / "ImageSets")


def find_voc_root(path: str | os.PathLike[str] | AnyPath) -> AnyPath | None:
    """The VOC2012 root at ``path``, ``path/VOC2012`` or ``path/VOCdevkit/VOC2012``, or
    ``None``; ``path`` may be a URL (:func:`samwsss.storage.as_path`)."""
    base = as_path(path)
    for candidate in (base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"):
        if is_voc_root(candidate):
            return candidate
    return None


def _split_folder(root: AnyPath, folder: str) -> AnyPath:
    """``root / folder`` for one of :data:`SPLIT_FOLDERS` (``"."`` is ``root`` itself: a
    remote path keeps a ``/.`` it is joined with)."""
    return root if folder == "." else root / folder


def available_splits(root: AnyPath) -> list[str]:
    """Names of the split list files found in :data:`SPLIT_FOLDERS` under ``root`` (one
    listing per folder)."""
    names: set[str] = set()
    for folder in SPLIT_FOLDERS:
        directory = _split_folder(root, folder)
        if is_folder(directory):
            names.update(
                entry.name[: -len(".txt")]
                for entry in scan_folder(directory)
                if entry.name.endswith(".txt") and not entry.name.startswith(".")
            )
    return sorted(names)


def find_split_file(root: AnyPath, split: str) -> tuple[str, AnyPath]:
    """Locate the list file of ``split`` (a name, or the path or URL of a ``.txt`` list).

    Returns:
        ``(split name, path of the list file)``.

    Raises:
        DatasetError: no such split; the message lists the splits found and where.
    """
    if split.endswith(".txt"):
        list_file = as_path(split)
        if list_file.is_file():
            return list_file.stem, list_file
    for folder in SPLIT_FOLDERS:
        for name in SPLIT_ALIASES.get(split, (split,)):
            candidate = _split_folder(root, folder) / f"{name}.txt"
            if candidate.is_file():
                return split, candidate
    found = available_splits(root)
    where = ", ".join(str(_split_folder(root, folder)) for folder in SPLIT_FOLDERS)
    raise DatasetError(
        f"VOC split {split!r} not found: looked for {split}.txt in {where}. "
        + (f"Available splits: {', '.join(found)}. " if found else "No split files found. ")
        + "Pass one of them, or the path of a list file of image ids"
        + (
            " (train_aug.txt is not part of VOC2012: get the 10,582-id list of the "
            "SBD-augmented set and put it in ImageSets/Segmentation/)"
            if "aug" in split
            else ""
        )
    )


def read_id_list(path: AnyPath) -> list[tuple[str, int]]:
    """Read a split list: ``[(image id, line number), ...]`` in file order.

    Raises:
        DatasetError: unreadable or empty file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read split file {path}: {error}") from error
    entries: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        token = stripped.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        stem, suffix = os.path.splitext(token)
        image_id = stem if suffix.lower() in _LIST_SUFFIXES else token
        entries.append((image_id, number))
    if not entries:
        raise DatasetError(f"split file {path} lists no image ids; one id per line is expected")
    return entries


def parse_voc_xml(path: AnyPath) -> tuple[int, ...]:
    """Image-level labels of one VOC XML (a local path or a remote location): sorted VOC
    indices of all ``<object>`` names.

    Difficult and truncated objects count; part names are ignored.

    Raises:
        DatasetError: missing or malformed file, or an object name that is not a VOC class.
    """
    try:
        with open_binary(path) as handle:
            root = ET.parse(handle).getroot()
    except FileNotFoundError as error:
        raise DatasetError(
            f"annotation {path} not found; restore Annotations/ or use label_source='gt' to "
            "take labels from the ground-truth masks"
        ) from error
    except (ET.ParseError, OSError) as error:
        raise DatasetError(f"annotation {path} is not valid XML: {error}") from error
    found: set[int] = set()
    for number, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        index = _VOC_INDEX.get(normalize_tag(name))
        if not index:
            raise DatasetError(
                f"{path}: object {number} has name {name!r}, which is not a VOC class; "
                f"valid names: {', '.join(VOC_CLASSES[1:])}"
            )
        found.add(index)
    return tuple(sorted(found))


class VOCDataset(IndexedDataset):
    """PASCAL VOC 2012 segmentation split (see the module docstring for the layout).

    Args:
        root: the VOC2012 folder (or ``VOCdevkit``, or its parent); a local path or an
            fsspec URL (``s3://bucket/VOCdevkit``, see :func:`samwsss.storage.as_path`).
        split: ``"train"``, ``"val"``, ``"trainval"``, ``"train_aug"``, ``"test"``, any
            other list name found in the split folders, or the path or URL of a list file.
        mapping: optional class mapping (name, path, ClassMapping or names) used for
            prompts; its class list must be VOC's 21 classes. ``None``: the built-in
            ``"voc"`` mapping, loaded on first use of :attr:`mapping`.
        gt_dir: folder (path or URL) of ``<id>.png`` ground truth, overriding the default
            folder.
        label_source: ``"xml"`` (default) or ``"gt"``.

    Raises:
        ValueError: a URL whose file system package is not installed (it is named).
        DatasetError: not a VOC root, unknown split, listed ids without images, missing
            annotations, incomplete GT folder, mapping with another class list.
    """

    kind = "voc"
    class_names = VOC_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str] | AnyPath,
        split: str,
        *,
        mapping: MappingLike | None = None,
        gt_dir: str | os.PathLike[str] | AnyPath | None = None,
        label_source: str = "xml",
    ) -> None:
        found = find_voc_root(root)
        if found is None:
            base = as_path(root)
            raise DatasetError(
                f"{root} is not a PASCAL VOC root: looked for JPEGImages/ and ImageSets/ in "
                f"it, in {base / 'VOC2012'} and in {base / 'VOCdevkit' / 'VOC2012'}"
            )
        self.root = found
        self._label_source = check_label_source(label_source)
        self._mapping = coerce_mapping(mapping)
        if self._mapping is not None:
            check_mapping_matches(self._mapping, VOC_CLASSES, "VOC")
        if not split:
            splits = available_splits(self.root)
            raise DatasetError(
                f"VOC root {self.root} needs a split; available: "
                f"{', '.join(splits) if splits else 'none found in ImageSets/Segmentation/'}"
            )
        self.split, self.split_file = find_split_file(self.root, split)

        entries = read_id_list(self.split_file)
        ids: list[str] = []
        seen: set[str] = set()
        for image_id, _ in entries:
            if image_id not in seen:
                seen.add(image_id)
                ids.append(image_id)
        if len(ids) != len(entries):
            logger.warning(
                "%s lists %d duplicate id(s); each image is used once",
                self.split_file,
                len(entries) - len(ids),
            )
        images = list_images(self.root / "JPEGImages")
        missing = [(i, n) for i, n in entries if i not in images]
        if missing:
            first, line = missing[0]
            raise DatasetError(
                f"{len(missing)} id(s) listed in {self.split_file} have no image in "
                f"{self.root / 'JPEGImages'}: {format_some([m[0] for m in missing])}; e.g. "
                f"{first!r} (line {line}) expects {self.root / 'JPEGImages' / (first + '.jpg')}. "
                "Check the split file matches this VOC root"
            )
        self._ids = ids
        self._files = {image_id: images[image_id] for image_id in ids}

        is_test = self.split == "test"
        if gt_dir is not None:
            self.gt_dir: AnyPath | None = as_path(gt_dir)
        elif is_test:
            self.gt_dir = None
        else:
            folder = "SegmentationClassAug" if "aug" in self.split.lower() else "SegmentationClass"
            self.gt_dir = self.root / folder
            if not is_folder(self.gt_dir):
                logger.warning(
                    "no ground truth for VOC %s: %s not found (evaluation needs it; pass "
                    "gt_dir to point elsewhere)",
                    self.split,
                    self.gt_dir,
                )
                self.gt_dir = None
        if self.gt_dir is not None:
            check_gt_complete(ids, self.gt_dir, self._scope)

        if self._label_source == "gt" and self.gt_dir is None:
            raise DatasetError(
                f"label_source='gt' needs ground truth, but VOC split {self.split!r} has none; "
                "use label_source='xml' or pass gt_dir"
            )
        self._labels_known = not (is_test and self._label_source == "annotations")
        if self._label_source == "annotations" and self._labels_known:
            annotations = self.root / "Annotations"
            if not is_folder(annotations):
                raise DatasetError(
                    f"{annotations} not found: image-level labels come from the VOC XML "
                    "annotations; restore it or use label_source='gt'"
                )
            xml_ids = {e.name[:-4] for e in scan_folder(annotations) if e.name.endswith(".xml")}
            no_xml = [image_id for image_id in ids if image_id not in xml_ids]
            if no_xml:
                raise DatasetError(
                    f"{len(no_xml)} image(s) of VOC split {self.split!r} have no XML in "
                    f"{annotations}: {format_some(no_xml)}; restore them or use "
                    "label_source='gt'"
                )
        self._label_cache: dict[str, tuple[int, ...]] = {}

    @property
    def _scope(self) -> str:
        return f"VOC split {self.split!r}"

    @property
    def mapping(self) -> ClassMapping:
        """The class mapping (prompts, tags); the built-in ``"voc"`` one unless given."""
        return self._builtin_mapping("voc", "VOC")

    @property
    def label_source(self) -> str:
        """``"xml"`` or ``"gt"``."""
        return "gt" if self._label_source == "gt" else "xml"

    def image_path(self, image_id: str) -> AnyPath:
        self._check_id(image_id)
        return self.root / "JPEGImages" / self._files[image_id]

    def labels(self, image_id: str) -> tuple[int, ...] | None:
        self._check_id(image_id)
        if not self._labels_known:
            return None
        cached = self._label_cache.get(image_id)
        if cached is None:
            if self._label_source == "gt":
                gt = self.gt(image_id)
                cached = labels_from_gt(gt) if gt is not None else ()
            else:
                cached = parse_voc_xml(self.root / "Annotations" / f"{image_id}.xml")
            self._label_cache[image_id] = cached
        return cached

    def __repr__(self) -> str:
        gt = self.gt_dir.name if self.gt_dir is not None else "none"
        return (
            f"VOCDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"gt={gt!r}, labels={self.label_source!r})"
        )
