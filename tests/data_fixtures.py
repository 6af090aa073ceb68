"""Tiny datasets in their real on-disk formats, written into a temporary folder.

* :func:`make_voc_tree` -> the ``VOC2012`` root of a 5-image VOCdevkit (JPEG images,
  palette PNG GT with 255 borders, plain SegmentationClassAug PNGs, XML annotations,
  split lists incl. ``train_aug``).
* :func:`make_coco_tree` -> a COCO root (``val2014/``, ``annotations/instances_val2014.json``)
  with polygon, compressed-RLE, uncompressed-RLE and crowd annotations that overlap.
* :func:`make_image_folder` -> a plain folder with RGB/RGBA/grayscale/EXIF-rotated images,
  plus a mapping YAML, JSON and CSV labels files and a GT folder beside it.

The module-level constants give what the datasets should read back, so other tests can
assert against them. Use::

    from tests.data_fixtures import make_voc_tree, make_coco_tree, make_image_folder

    def test_something(tmp_path):
        voc_root = make_voc_tree(tmp_path)        # .../VOCdevkit/VOC2012
        dataset = open_dataset(voc_root, "val")

Every builder is deterministic and takes a few milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from samwsss.classes import COCO_CATEGORY_IDS, COCO_CATEGORY_TO_INDEX, COCO_CLASSES, VOC_CLASSES
from samwsss.labelio import write_label_png

# --------------------------------------------------------------------------- VOC

#: VOC image id -> (height, width).
VOC_SIZES: dict[str, tuple[int, int]] = {
    "2007_000032": (40, 56),
    "2007_000039": (48, 36),
    "2008_000002": (36, 48),
    "2010_000005": (44, 40),
    "2011_000010": (32, 32),
}

#: VOC image id -> objects (class name, (y0, y1, x0, x1) half-open box, difficult, truncated,
#: drawn in the GT). The bottle of 2007_000039 is a difficult object absent from the GT, so
#: the "xml" and "gt" label sources differ there.
VOC_OBJECTS: dict[str, list[tuple[str, tuple[int, int, int, int], bool, bool, bool]]] = {
    "2007_000032": [
        ("aeroplane", (5, 25, 5, 40), False, False, True),
        ("person", (26, 38, 40, 52), False, False, True),
    ],
    "2007_000039": [
        ("tvmonitor", (10, 40, 5, 30), False, False, True),
        ("bottle", (2, 8, 30, 35), True, False, False),
    ],
    "2008_000002": [
        ("dog", (4, 30, 4, 24), False, False, True),
        ("cat", (10, 34, 22, 44), False, True, True),
    ],
    "2010_000005": [
        ("diningtable", (20, 44, 0, 40), False, True, True),
        ("chair", (5, 25, 5, 18), False, False, True),
    ],
    "2011_000010": [("horse", (4, 28, 6, 26), False, False, True)],
}

#: Split name -> ids, as written to the split lists.
VOC_SPLITS: dict[str, list[str]] = {
    "train": ["2007_000032", "2008_000002"],
    "val": ["2007_000039", "2010_000005"],
    "trainval": ["2007_000032", "2007_000039", "2008_000002", "2010_000005"],
    "train_aug": ["2007_000032", "2008_000002", "2011_000010"],
}

#: Ids with a SegmentationClass PNG (2011_000010 only has SegmentationClassAug, like SBD ids).
VOC_SEGMENTATION_CLASS_IDS = ["2007_000032", "2007_000039", "2008_000002", "2010_000005"]


def _voc_index(name: str) -> int:
    return VOC_CLASSES.index(name)


#: Image-level labels from the XML (every object, difficult included).
VOC_XML_LABELS: dict[str, tuple[int, ...]] = {
    image_id: tuple(sorted({_voc_index(obj[0]) for obj in objects}))
    for image_id, objects in VOC_OBJECTS.items()
}


def voc_expected_gt(image_id: str, aug: bool = False) -> np.ndarray:
    """The ``(H, W)`` uint8 GT the VOC fixture writes for ``image_id``.

    Objects are filled in list order (later on top). ``aug=False`` (SegmentationClass): the
    one-pixel outer ring of every drawn object box is 255, like VOC's boundaries.
    ``aug=True`` (SegmentationClassAug): no 255.
    """
    height, width = VOC_SIZES[image_id]
    label = np.zeros((height, width), dtype=np.uint8)
    for name, (y0, y1, x0, x1), _, _, drawn in VOC_OBJECTS[image_id]:
        if not drawn:
            continue
        label[y0:y1, x0:x1] = _voc_index(name)
        if not aug:
            ring = np.zeros_like(label, dtype=bool)
            ring[y0:y1, x0:x1] = True
            ring[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = False
            label[ring] = 255
    return label


#: Image-level labels derived from the SegmentationClass GT (no 0, no 255).
VOC_GT_LABELS: dict[str, tuple[int, ...]] = {
    image_id: tuple(sorted({_voc_index(obj[0]) for obj in objects if obj[4]}))
    for image_id, objects in VOC_OBJECTS.items()
}


def _noise_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(base, mode="RGB")


def _voc_xml(image_id: str) -> str:
    height, width = VOC_SIZES[image_id]
    objects = []
    for name, (y0, y1, x0, x1), difficult, truncated, _ in VOC_OBJECTS[image_id]:
        part = (
            "<part><name>head</name><bndbox><xmin>41</xmin><ymin>27</ymin><xmax>45</xmax>"
            "<ymax>31</ymax></bndbox></part>"
            if name == "person"
            else ""
        )
        objects.append(
            f"""  <object>
    <name>{name}</name>
    <pose>Unspecified</pose>
    <truncated>{int(truncated)}</truncated>
    <difficult>{int(difficult)}</difficult>
    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
    {part}
  </object>"""
        )
    return f"""<annotation>
  <folder>VOC2012</folder>
  <filename>{image_id}.jpg</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  <segmented>1</segmented>
{chr(10).join(objects)}
</annotation>
"""


def make_voc_tree(
    root: Path,
    *,
    aug_list_dir: str = "ImageSets/Segmentation",
    aug_list_style: str = "ids",
) -> Path:
    """Write a 5-image VOCdevkit under ``root`` and return its ``VOC2012`` root.

    Args:
        root: a temporary folder; ``root/VOCdevkit/VOC2012`` is created.
        aug_list_dir: folder (relative to VOC2012) of ``train_aug.txt``.
        aug_list_style: ``"ids"`` (one id per line) or ``"paths"`` (DeepLab-port lines
            ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``).

    Writes JPEGImages/*.jpg (seeded noise), Annotations/*.xml (:data:`VOC_OBJECTS`),
    SegmentationClass/*.png (palette, :func:`voc_expected_gt`), SegmentationClassAug/*.png
    (plain grayscale, ``aug=True``) and the lists of :data:`VOC_SPLITS`.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    for name in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug"):
        (voc / name).mkdir(parents=True, exist_ok=True)
    for seed, (image_id, (height, width)) in enumerate(VOC_SIZES.items()):
        _noise_image(height, width, seed).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id), encoding="utf-8")
        if image_id in VOC_SEGMENTATION_CLASS_IDS:
            write_label_png(
                voc / "SegmentationClass" / f"{image_id}.png", voc_expected_gt(image_id)
            )
        write_label_png(
            voc / "SegmentationClassAug" / f"{image_id}.png",
            voc_expected_gt(image_id, aug=True),
            palette=False,
        )
    segmentation = voc / "ImageSets" / "Segmentation"
    segmentation.mkdir(parents=True, exist_ok=True)
    for split, ids in VOC_SPLITS.items():
        if split == "train_aug":
            folder = voc / aug_list_dir
            folder.mkdir(parents=True, exist_ok=True)
            if aug_list_style == "paths":
                lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]
            else:
                lines = list(ids)
            (folder / "train_aug.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            (segmentation / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return voc


# --------------------------------------------------------------------------- COCO


def _cat_index(category_id: int) -> int:
    return COCO_CATEGORY_TO_INDEX[category_id]


#: COCO image number -> (height, width).
COCO_SIZES: dict[int, tuple[int, int]] = {42: (30, 40), 73: (24, 32), 74: (20, 20), 133: (16, 24)}

#: Image-level labels (non-crowd categories, contiguous indices) by image id.
COCO_LABELS: dict[str, tuple[int, ...]] = {
    "COCO_val2014_000000000042": (1, 16, 17),  # person, cat, dog (the crowd car excluded)
    "COCO_val2014_000000000073": (1, 2),  # person, bicycle
    "COCO_val2014_000000000074": (),  # no annotation
    "COCO_val2014_000000000133": (),  # only a crowd annotation
}

#: Polygons used by the COCO fixture (pixel coordinates, x then y).
COCO_DOG_POLYGON = [[10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0]]
COCO_BICYCLE_POLYGONS = [
    [2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0],
    [16.0, 2.0, 26.0, 2.0, 26.0, 10.0, 16.0, 10.0],
]
COCO_PERSON73_POLYGON = [[8.0, 6.0, 20.0, 6.0, 20.0, 22.0, 8.0, 22.0]]


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``(H, W)`` bool mask of the half-open box ``[y0:y1, x0:x1]``."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO uncompressed RLE of a bool mask: column-major run lengths, background first."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    counts: list[int] = []
    current, run = 0, 0
    for value in flat.tolist():
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE (``counts`` as a JSON string) of a bool mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


#: Box masks of the RLE annotations of image 42 (person, crowd car, cat) and image 133.
COCO_PERSON42_BOX = (5, 25, 5, 35)
COCO_CAR42_BOX = (0, 4, 0, 40)
COCO_CAT42_BOX = (20, 30, 30, 40)


def coco_file_name(split: str, number: int) -> str:
    """``COCO_<split>_<12-digit id>.jpg``."""
    return f"COCO_{split}_{number:012d}.jpg"


def make_coco_tree(root: Path, split: str = "val2014") -> Path:
    """Write a 4-image COCO split under ``root/coco`` and return the COCO root.

    Image 42 (30x40), annotations in file order: dog polygon (10..20 square), person as an
    uncompressed RLE box :data:`COCO_PERSON42_BOX` covering the dog, a crowd car
    (uncompressed RLE, ``iscrowd=1``), a cat as a compressed RLE box
    :data:`COCO_CAT42_BOX` overlapping the person. With the ``overwrite`` rule the dog
    vanishes under the person; with ``smallest`` it stays. Image 73: a two-part bicycle
    polygon, then a person polygon on top (an annotation of image 42 sits between them in
    the file). Image 74: no annotation. Image 133: only a crowd person. The JSON lists the
    images out of order and holds all 80 categories.
    """
    coco = Path(root) / "coco"
    images_dir = coco / split
    images_dir.mkdir(parents=True, exist_ok=True)
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    images = []
    for seed, number in enumerate((73, 42, 133, 74)):
        height, width = COCO_SIZES[number]
        name = coco_file_name(split, number)
        _noise_image(height, width, 100 + seed).save(images_dir / name, quality=90)
        images.append({"id": number, "file_name": name, "height": height, "width": width})
    h42, w42 = COCO_SIZES[42]
    h133, w133 = COCO_SIZES[133]
    person = box_mask(h42, w42, *COCO_PERSON42_BOX)
    car = box_mask(h42, w42, *COCO_CAR42_BOX)
    cat = box_mask(h42, w42, *COCO_CAT42_BOX)
    crowd133 = box_mask(h133, w133, 2, 10, 3, 20)
    annotations = [
        {"id": 101, "image_id": 42, "category_id": 18, "iscrowd": 0,
         "segmentation": COCO_DOG_POLYGON, "area": 100.0, "bbox": [10, 10, 10, 10]},
        {"id": 201, "image_id": 73, "category_id": 2, "iscrowd": 0,
         "segmentation": COCO_BICYCLE_POLYGONS, "area": 160.0, "bbox": [2, 2, 24, 8]},
        {"id": 102, "image_id": 42, "category_id": 1, "iscrowd": 0,
         "segmentation": uncompressed_rle(person), "area": float(person.sum()),
         "bbox": [5, 5, 30, 20]},
        {"id": 202, "image_id": 73, "category_id": 1, "iscrowd": 0,
         "segmentation": COCO_PERSON73_POLYGON, "area": 192.0, "bbox": [8, 6, 12, 16]},
        {"id": 103, "image_id": 42, "category_id": 3, "iscrowd": 1,
         "segmentation": uncompressed_rle(car), "area": float(car.sum()), "bbox": [0, 0, 40, 4]},
        {"id": 104, "image_id": 42, "category_id": 17, "iscrowd": 0,
         "segmentation": compressed_rle(cat), "area": float(cat.sum()), "bbox": [30, 20, 10, 10]},
        {"id": 301, "image_id": 133, "category_id": 1, "iscrowd": 1,
         "segmentation": uncompressed_rle(crowd133), "area": float(crowd133.sum()),
         "bbox": [3, 2, 17, 8]},
    ]  # fmt: skip
    categories = [
        {"id": cid, "name": COCO_CLASSES[_cat_index(cid)], "supercategory": "thing"}
        for cid in COCO_CATEGORY_IDS
    ]
    payload = {
        "info": {"description": "samwsss test fixture"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    annotation_file = coco / "annotations" / f"instances_{split}.json"
    annotation_file.write_text(json.dumps(payload), encoding="utf-8")
    return coco


# --------------------------------------------------------------------------- folder


class FolderFixture(NamedTuple):
    """Paths written by :func:`make_image_folder`."""

    images: Path
    mapping: Path
    labels_json: Path
    labels_csv: Path
    gt_dir: Path


#: Class list of the folder fixture's mapping (background first).
FOLDER_CLASSES = ("background", "cat", "dog", "traffic cone")

#: Image file name -> shape that load_rgb returns.
FOLDER_SHAPES: dict[str, tuple[int, int, int]] = {
    "a.jpg": (30, 40, 3),  # RGB
    "b.png": (24, 24, 3),  # RGBA on disk
    "c.jpg": (20, 28, 3),  # grayscale on disk
    "d.jpg": (40, 30, 3),  # stored 40 wide x 30 high with EXIF orientation 6
}

#: Labels both labels files give (d is not in them: unknown).
FOLDER_LABELS: dict[str, tuple[int, ...] | None] = {"a": (1, 2), "b": (3,), "c": (), "d": None}

_FOLDER_MAPPING_YAML = """\
name: pets
classes:
  - index: 0
    name: background
  - index: 1
    name: cat
  - index: 2
    name: dog
    prompt: dog
  - index: 3
    name: traffic cone
"""


def folder_expected_gt(stem: str) -> np.ndarray:
    """The ``(H, W)`` uint8 GT the folder fixture writes for image ``stem``."""
    name = next(n for n in FOLDER_SHAPES if n.startswith(stem + "."))
    height, width, _ = FOLDER_SHAPES[name]
    label = np.zeros((height, width), dtype=np.uint8)
    known = FOLDER_LABELS[stem]
    labels = (1,) if known is None else known
    for position, index in enumerate(labels):
        label[2 + 4 * position : 6 + 4 * position, 2:10] = index
    label[0, :] = 255
    return label


def make_image_folder(root: Path) -> FolderFixture:
    """Write ``root/images`` (+ mapping, labels and GT beside it) and return the paths.

    ``images/`` holds a.jpg (RGB), b.png (RGBA), c.jpg (grayscale), d.jpg (EXIF orientation
    6: its left half is red and its right half blue on disk, so after rotation the top half
    is red), plus ``notes.txt`` and ``extra/e.jpg`` which a folder dataset must ignore.
    ``pets.yaml`` is a 4-class mapping (:data:`FOLDER_CLASSES`); ``labels.json`` and
    ``labels.csv`` both give :data:`FOLDER_LABELS`; ``gt/<stem>.png`` holds
    :func:`folder_expected_gt`.
    """
    base = Path(root)
    images = base / "images"
    (images / "extra").mkdir(parents=True, exist_ok=True)
    _noise_image(30, 40, 7).save(images / "a.jpg", quality=90)
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 60
    Image.fromarray(rgba, mode="RGBA").save(images / "b.png")
    gray = Image.fromarray(np.full((20, 28), 90, dtype=np.uint8), mode="L")
    gray.save(images / "c.jpg", quality=95)
    stored = np.zeros((30, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored, mode="RGB").save(images / "d.jpg", quality=95, exif=exif)
    (images / "notes.txt").write_text("not an image\n", encoding="utf-8")
    _noise_image(8, 8, 9).save(images / "extra" / "e.jpg")

    mapping = base / "pets.yaml"
    mapping.write_text(_FOLDER_MAPPING_YAML, encoding="utf-8")
    labels_json = base / "labels.json"
    labels_json.write_text(
        json.dumps({"a.jpg": ["cat", "dog"], "b": ["Traffic Cone"], "c.jpg": []}, indent=2),
        encoding="utf-8",
    )
    labels_csv = base / "labels.csv"
    labels_csv.write_text("image,labels\na.jpg,cat;dog\nb.png,traffic cone\nc,\n", encoding="utf-8")
    gt_dir = base / "gt"
    for name in FOLDER_SHAPES:
        stem = name.rsplit(".", 1)[0]
        write_label_png(gt_dir / f"{stem}.png", folder_expected_gt(stem))
    return FolderFixture(images, mapping, labels_json, labels_csv, gt_dir)
