"""Export a run's instances (``instances/<id>.json``) as COCO results or YOLO-seg labels.

COCO (``--format coco``) writes, under the output folder:

* ``results.json``: a COCO *results* list (``image_id``, ``category_id``, ``segmentation``
  as compressed RLE, ``bbox``, ``score``, ``area``) that ``COCO.loadRes`` loads and
  ``COCOeval(..., "segm")`` evaluates;
* ``dataset.json``: ``images`` (numeric ``id``, ``file_name``, ``height``, ``width``,
  ``image_key`` = the run's image id) and ``categories``. For COCO datasets the ids are
  the original COCO image and category ids (so the results evaluate against the official
  annotation file); otherwise images are numbered 1..N in id order and categories 1..C in
  class order (background excluded).

YOLO-seg (``--format yolo-seg``) writes ``labels/<id>.txt`` (one line per instance:
``class x1 y1 x2 y2 ...`` with coordinates normalised to ``[0, 1]`` and ``class`` the
0-based object class: mapping index - 1), ``images/`` (symbolic links to the dataset's
images, when they can be found, so Ultralytics pairs ``images/`` with ``labels/``) and
``dataset.yaml`` (``path``, ``train``, ``val``, ``names``).

A YOLO polygon is a single ring, so masks are flattened into one ring each:

* every hole contour is spliced into its outer contour through a zero-width bridge (the
  nearest pair of points, walked there and back), so rasterising the ring with an
  even-odd or non-zero fill (``cv2.fillPoly``) leaves the hole empty;
* the parts of a multi-part mask are joined the same way, nearest points first (the idea
  of Ultralytics' ``merge_multi_segment``).

Parts smaller than three contour points (single pixels, one-pixel lines) are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from samwsss.atomic import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

FORMATS = ("coco", "yolo-seg")
INSTANCES_DIR = "instances"


class ExportError(ValueError):
    """The run folder cannot be exported; the message says why and how to fix it."""


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """``config.yaml`` of a run folder, or ``{}`` when absent or unreadable."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        logger.warning("cannot read %s: %s", path, error)
        return {}
    return loaded if isinstance(loaded, dict) else {}


def iter_instances(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every ``instances/<id>.json`` record of ``run_dir`` in id order.

    Raises:
        ExportError: the run has no instances folder (it ran without ``--instances``).
    """
    folder = run_dir / INSTANCES_DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise ExportError(
            f"{run_dir} has no instances ({folder} is missing or empty); "
            "run with --instances to write them"
        )
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ExportError(f"cannot read {path}: {error}; rerun that image") from error
        record.setdefault("image_id", path.stem)
        yield record


def run_class_names(run_dir: Path, records: list[dict[str, Any]] | None = None) -> list[str]:
    """Class names of a run, background first: from the mapping in ``config.yaml``, or
    (when that is unavailable) from the instances' ``class_id``/``category_name``."""
    from samwsss.mapping import load_mapping

    mapping = read_run_config(run_dir).get("data", {}).get("mapping")
    source = mapping.get("path") if isinstance(mapping, dict) else mapping
    if isinstance(source, str):
        try:
            return list(load_mapping(source).class_names)
        except (OSError, ValueError) as error:
            logger.warning(
                "cannot load the run's mapping %r (%s); names from instances", source, error
            )
    names: dict[int, str] = {0: "background"}
    for record in records if records is not None else iter_instances(run_dir):
        for ann in record.get("annotations", []):
            names[int(ann["class_id"])] = str(ann.get("category_name", ann["class_id"]))
    return [names.get(index, f"class_{index}") for index in range(max(names) + 1)]


def _open_run_dataset(run_dir: Path) -> Any | None:
    """The run's dataset (from ``config.yaml``) when it can be opened, else ``None``."""
    data = read_run_config(run_dir).get("data", {})
    if not isinstance(data, dict) or not data.get("data"):
        return None
    from samwsss.data import open_dataset

    mapping = data.get("mapping")
    source = mapping.get("path") if isinstance(mapping, dict) else mapping
    labels = data.get("labels")
    try:
        return open_dataset(
            data["data"],
            data.get("split"),
            mapping=source,
            labels=labels.get("path") if isinstance(labels, dict) else labels,
            gt_dir=data.get("gt_dir"),
        )
    except (OSError, ValueError) as error:
        logger.warning("cannot open the run's dataset %s: %s", data.get("data"), error)
        return None


def _coco_image_numbers(dataset: Any) -> dict[str, int]:
    """``{image stem: COCO image id}`` from a COCO dataset's annotation file."""
    path = getattr(dataset, "annotation_file", None)
    if path is None:
        return {}
    with open(path, "rb") as handle:
        images = json.load(handle).get("images", [])
    return {Path(str(image["file_name"])).stem: int(image["id"]) for image in images}


def export_coco(run_dir: Path, out: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``dataset.json`` (see the module docstring).

    Returns:
        ``{"results": path, "dataset": path}``.
    """
    from samwsss.classes import COCO_CLASSES, COCO_INDEX_TO_CATEGORY

    records = list(iter_instances(run_dir))
    names = run_class_names(run_dir, records)
    is_coco = tuple(names) == tuple(COCO_CLASSES)
    dataset = _open_run_dataset(run_dir)
    numbers = _coco_image_numbers(dataset) if is_coco and dataset is not None else {}
    categories = [
        {"id": COCO_INDEX_TO_CATEGORY[index] if is_coco else index, "name": name}
        for index, name in enumerate(names)
        if index > 0
    ]
    images: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for position, record in enumerate(records, start=1):
        key = str(record["image_id"])
        number = (numbers.get(key) or _number_in(key)) if is_coco else position
        file_name = f"{key}.jpg"
        if dataset is not None:
            try:
                file_name = dataset.image_path(key).name
            except (KeyError, ValueError):
                pass
        images.append(
            {
                "id": number,
                "file_name": file_name,
                "height": int(record["height"]),
                "width": int(record["width"]),
                "image_key": key,
            }
        )
        for ann in record.get("annotations", []):
            if "segmentation" not in ann:
                continue
            cls = int(ann["class_id"])
            results.append(
                {
                    "image_id": number,
                    "category_id": COCO_INDEX_TO_CATEGORY[cls] if is_coco else cls,
                    "segmentation": ann["segmentation"],
                    "bbox": ann["bbox"],
                    "score": ann["score"],
                    "area": ann.get("area"),
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "dataset": out / "dataset.json"}
    atomic_write_json(paths["results"], results, indent=None)
    atomic_write_json(
        paths["dataset"],
        {
            "info": {"description": f"samwsss run {run_dir}"},
            "images": images,
            "categories": categories,
            "annotations": [],
        },
        indent=None,
    )
    logger.info("COCO export: %d images, %d instances -> %s", len(images), len(results), out)
    return paths


def _number_in(key: str) -> int:
    """The trailing number of a COCO file stem (``COCO_val2014_000000000042`` -> 42)."""
    found = re.search(r"(\d+)$", key)
    if not found:
        raise ExportError(f"cannot tell the COCO image id of {key!r}; the stem ends in no number")
    return int(found.group(1))


def _bridge(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Splice ``other`` into ``ring`` through a zero-width bridge between their nearest
    points: ``ring[:i+1] + other[j:] + other[:j+1] + ring[i:]`` (both ``(N, 2)``)."""
    distance = ((ring[:, None, :].astype(np.int64) - other[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


def mask_to_polygon(mask: np.ndarray) -> np.ndarray | None:
    """One ring ``(N, 2)`` of pixel ``(x, y)`` points for a binary mask: holes and parts
    joined by zero-width bridges (module docstring); ``None`` for an empty mask."""
    import cv2

    contours, hierarchy = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return None
    tree = hierarchy[0]
    parts: list[np.ndarray] = []
    for index, contour in enumerate(contours):
        if tree[index][3] != -1 or len(contour) < 3:  # a hole, or a degenerate part
            continue
        ring = contour[:, 0, :]
        child = tree[index][2]
        while child != -1:  # the holes of this outer contour
            if len(contours[child]) >= 3:
                ring = _bridge(ring, contours[child][:, 0, :])
            child = tree[child][0]
        parts.append(ring)
    if not parts:
        return None
    parts.sort(key=lambda part: -len(part))
    joined = parts[0]
    for part in parts[1:]:
        joined = _bridge(joined, part)
    return joined


def polygon_to_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a ring of pixel points as Ultralytics does (``cv2.fillPoly``)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], color=1)
    return mask.astype(bool)


def yolo_line(cls: int, points: np.ndarray, height: int, width: int) -> str:
    """``class x1 y1 ...`` with coordinates normalised by the image size."""
    scaled = points.astype(np.float64) / np.array([width, height], dtype=np.float64)
    coords = " ".join(f"{value:.6f}" for value in np.clip(scaled, 0.0, 1.0).reshape(-1))
    return f"{cls} {coords}"


def export_yolo(run_dir: Path, out: Path, link_images: bool = True) -> dict[str, Path]:
    """Write ``labels/<id>.txt``, ``images/`` links and ``dataset.yaml``.

    Returns:
        ``{"labels": folder, "dataset": yaml path}``.
    """
    import yaml
    from pycocotools import mask as mask_utils

    records = list(iter_instances(run_dir))
    names = run_class_names(run_dir, records)
    dataset = _open_run_dataset(run_dir) if link_images else None
    labels_dir = out / "labels"
    images_dir = out / "images"
    labels_dir.mkdir(parents=True, exist_ok=True)
    lines_written = 0
    for record in records:
        key = str(record["image_id"])
        height, width = int(record["height"]), int(record["width"])
        lines = []
        for ann in record.get("annotations", []):
            segmentation = ann.get("segmentation")
            if segmentation is None or int(ann["class_id"]) < 1:
                continue
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
            ring = mask_to_polygon(mask_utils.decode(rle))
            if ring is None:
                logger.debug("%s: instance %s has no polygon (empty or tiny)", key, ann.get("id"))
                continue
            lines.append(yolo_line(int(ann["class_id"]) - 1, ring, height, width))
        text = "\n".join(lines) + ("\n" if lines else "")
        atomic_write_bytes(labels_dir / f"{key}.txt", text.encode("ascii"), fsync=False)
        lines_written += len(lines)
        if dataset is not None:
            _link_image(dataset, key, images_dir)
    spec = {
        "path": str(out.resolve()),
        "train": "images",
        "val": "images",
        "names": {index - 1: name for index, name in enumerate(names) if index > 0},
    }
    yaml_path = out / "dataset.yaml"
    atomic_write_bytes(yaml_path, yaml.safe_dump(spec, sort_keys=False).encode("utf-8"))
    logger.info("YOLO-seg export: %d images, %d polygons -> %s", len(records), lines_written, out)
    return {"labels": labels_dir, "dataset": yaml_path}


def _link_image(dataset: Any, key: str, images_dir: Path) -> None:
    """``images/<file name>`` -> the dataset's image (a symbolic link; skipped on failure)."""
    try:
        located = dataset.image_path(key)
    except (KeyError, ValueError):
        return
    if not isinstance(located, Path):
        return  # an image in an object store: nothing to link to (the labels still go)
    source = located.resolve()
    images_dir.mkdir(parents=True, exist_ok=True)
    target = images_dir / f"{key}{source.suffix}"
    if target.is_symlink() or target.exists():
        return
    try:
        os.symlink(source, target)
    except OSError as error:
        logger.warning("cannot link %s -> %s: %s", target, source, error)


def export_run(run_dir: Path, fmt: str, out: Path | None = None) -> dict[str, Path]:
    """Export ``run_dir`` in ``fmt`` (``coco`` or ``yolo-seg``) to ``out``
    (default ``<run_dir>/export/<fmt>``)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if not run_dir.is_dir():
        raise ExportError(f"run folder {run_dir} does not exist; give the --out of a run")
    target = out if out is not None else run_dir / "export" / fmt
    if fmt == "coco":
        return export_coco(run_dir, target)
    return export_yolo(run_dir, target)
