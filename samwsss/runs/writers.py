"""Per-image outputs of a dataset run, each written atomically.

Layout under the run folder::

    masks/<id>.png         palette PNG semantic mask (default output)
    masks_plain/<id>.png   plain index PNG, as the authors' scripts wrote (optional)
    instances/<id>.json    COCO-style instances with RLE masks (optional)
    overlays/<id>.jpg      mask and boxes drawn over the image (a sample of images)

An image is complete when every output requested for it exists; since each file appears
only once fully written, a rerun can trust what it finds and redo the rest.
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samwsss.atomic import atomic_write_bytes, atomic_write_json
from samwsss.classes import COCO_CLASSES, COCO_INDEX_TO_CATEGORY
from samwsss.detections import Detections
from samwsss.labelio import write_label_png
from samwsss.mapping import ClassMapping
from samwsss.pipeline.overlay import draw_overlay
from samwsss.storage import AnyPath, list_file_names

MASKS_DIR = "masks"
PLAIN_DIR = "masks_plain"
INSTANCES_DIR = "instances"
OVERLAYS_DIR = "overlays"
#: Every per-image output folder.
OUTPUT_DIRS = (MASKS_DIR, PLAIN_DIR, INSTANCES_DIR, OVERLAYS_DIR)


#: Writer threads for a local run folder (encoding PNGs; the disk is fast).
LOCAL_WRITERS = 2
#: Writer threads for an object store: each put waits tens of milliseconds on the network.
REMOTE_WRITERS = 16


def writer_threads(root: AnyPath) -> int:
    """How many threads write a run's outputs into ``root`` (see :data:`REMOTE_WRITERS`)."""
    return LOCAL_WRITERS if isinstance(root, Path) else REMOTE_WRITERS


class OutputWriter:
    """Writes images' outputs (:func:`write_outputs`) in :func:`writer_threads` threads,
    overlapping the models; at most two batches of writes (or two per thread) wait, and a
    write's error is raised by a later :meth:`submit` or by :meth:`drain`.

    Use as a context manager: leaving the block normally waits for every write.

    Args:
        spec: what to write, and where.
        mapping: the run's classes (instance names, overlay legends).
        batch_size: the pipeline's batch size (bounds the writes waiting).
    """

    def __init__(self, spec: OutputSpec, mapping: ClassMapping, batch_size: int) -> None:
        threads = writer_threads(spec.root)
        self.spec = spec
        self.mapping = mapping
        self._limit = max(2 * batch_size, 2 * threads)
        self._pool = ThreadPoolExecutor(threads)
        self._in_flight: deque[Future[None]] = deque()

    def submit(self, image_id: str, image: np.ndarray | None, result: Any) -> None:
        """Queue the outputs of ``image_id`` from its
        :class:`~samwsss.pipeline.pipeline.PipelineResult` (``image`` is needed only for an
        overlay); waits while too many writes are queued."""
        self._in_flight.append(
            self._pool.submit(
                write_outputs, self.spec, image_id, image, result.mask, result.detections,
                self.mapping, result.tags, result.tag_sources,
            )
        )  # fmt: skip
        while len(self._in_flight) > self._limit:
            self._in_flight.popleft().result()

    def drain(self) -> None:
        """Wait for every queued write (raising the first error)."""
        while self._in_flight:
            self._in_flight.popleft().result()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if kind is None:
                self.drain()
        finally:
            self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class OutputSpec:
    """Which outputs a run writes.

    Attributes:
        root: the run folder (a local path or an fsspec location, see samwsss.storage).
        palette: write ``masks/<id>.png`` (palette PNG).
        plain: write ``masks_plain/<id>.png`` (plain index PNG).
        instances: write ``instances/<id>.json``.
        overlay_ids: ids that also get ``overlays/<id>.jpg``.
    """

    root: AnyPath
    palette: bool = True
    plain: bool = False
    instances: bool = False
    overlay_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (self.palette or self.plain):
            raise ValueError("a run must write palette or plain masks (or both)")

    @property
    def mask_dir(self) -> AnyPath:
        """The folder evaluated at the end of a run."""
        return self.root / (MASKS_DIR if self.palette else PLAIN_DIR)

    def paths(self, image_id: str) -> list[AnyPath]:
        """Every output path of ``image_id``; the semantic mask last (written last)."""
        out: list[AnyPath] = []
        if self.instances:
            out.append(self.root / INSTANCES_DIR / f"{image_id}.json")
        if image_id in self.overlay_ids:
            out.append(self.root / OVERLAYS_DIR / f"{image_id}.jpg")
        if self.plain:
            out.append(self.root / PLAIN_DIR / f"{image_id}.png")
        if self.palette:
            out.append(self.root / MASKS_DIR / f"{image_id}.png")
        return out

    def is_complete(self, image_id: str) -> bool:
        """Whether every output of ``image_id`` exists."""
        return all(path.is_file() for path in self.paths(image_id))

    def complete_ids(self, ids: list[str]) -> set[str]:
        """The ids of ``ids`` whose outputs all exist, listing each output folder once
        (instead of one ``stat`` per file: a resumed run checks tens of thousands)."""
        listed: dict[str, set[str]] = {}
        complete = set()
        for image_id in ids:
            paths = self.paths(image_id)
            for path in paths:
                if str(path.parent) not in listed:
                    listed[str(path.parent)] = list_file_names(path.parent)
            if all(path.name in listed[str(path.parent)] for path in paths):
                complete.add(image_id)
        return complete


def instances_to_json(
    image_id: str,
    detections: Detections,
    mapping: ClassMapping,
    tags: dict[str, float] | None = None,
    tag_sources: dict[int, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """COCO-style record of one image's instances.

    Boxes are COCO ``[x, y, w, h]`` in pixels; masks are compressed RLE (pycocotools) with
    ``counts`` as a string; ``category_id`` is the COCO category id for the ``coco``
    mapping and the class index otherwise.
    """
    height, width = detections.image_size
    annotations = []
    masks = detections.masks.cpu().numpy() if detections.masks is not None else None
    rles: list[dict[str, Any]] = []
    if masks is not None and len(masks):
        # (N, H, W) C-order bool is (H, W, N) Fortran-order: no copy before the encoder
        rles = mask_utils.encode(np.asfortranarray(masks.view(np.uint8).transpose(1, 2, 0)))
    boxes = detections.boxes.cpu().numpy().tolist()
    box_scores = detections.box_scores.cpu().numpy().tolist()
    mask_scores = (
        detections.mask_scores.cpu().numpy().tolist()
        if detections.mask_scores is not None
        else None
    )
    scores = detections.scores.cpu().numpy().tolist()
    is_coco = mapping.class_names == COCO_CLASSES
    for index, cls in enumerate(detections.class_ids.cpu().tolist()):
        x1, y1, x2, y2 = boxes[index]
        record: dict[str, Any] = {
            "id": index + 1,
            "class_id": cls,
            "category_id": COCO_INDEX_TO_CATEGORY[cls] if is_coco else cls,
            "category_name": mapping.classes[cls].name,
            "prompt": detections.prompts[index],
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(scores[index], 5),
            "box_score": round(box_scores[index], 5),
        }
        if mask_scores is not None:
            record["mask_score"] = round(mask_scores[index], 5)
        if len(rles):
            rle = rles[index]
            record["segmentation"] = {
                "size": [height, width],
                "counts": rle["counts"].decode("ascii"),
            }
            record["area"] = int(mask_utils.area(rle))
        annotations.append(record)
    return {
        "image_id": image_id,
        "height": height,
        "width": width,
        "annotations": annotations,
        "tags": tags or {},
        "tag_sources": {mapping.classes[c].name: list(t) for c, t in (tag_sources or {}).items()},
    }


def write_outputs(
    spec: OutputSpec,
    image_id: str,
    image: np.ndarray | None,
    mask: np.ndarray,
    detections: Detections,
    mapping: ClassMapping,
    tags: dict[str, float] | None = None,
    tag_sources: dict[int, tuple[str, ...]] | None = None,
) -> None:
    """Write every requested output of one image, atomically, the semantic mask last
    (``image`` is drawn on for an overlay, and may be ``None`` for an image without one)."""
    if spec.instances:
        record = instances_to_json(image_id, detections, mapping, tags, tag_sources)
        atomic_write_json(
            spec.root / INSTANCES_DIR / f"{image_id}.json", record, indent=None, fsync=False
        )
    if image_id in spec.overlay_ids:
        if image is None:
            raise ValueError(f"{image_id} gets an overlay: write_outputs needs its image")
        picture = draw_overlay(image, mask, detections, class_names=mapping.class_names)
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=88)
        atomic_write_bytes(
            spec.root / OVERLAYS_DIR / f"{image_id}.jpg", buffer.getvalue(), fsync=False
        )
    if spec.plain:
        write_label_png(spec.root / PLAIN_DIR / f"{image_id}.png", mask, palette=False, fsync=False)
    if spec.palette:
        write_label_png(spec.root / MASKS_DIR / f"{image_id}.png", mask, palette=True, fsync=False)
