"""A synthetic run folder (masks, instances, manifest, config) without running models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from samwsss.labelio import write_label_png


def ring_mask(height: int, width: int) -> np.ndarray:
    """A square ring: a filled square with a square hole."""
    mask = np.zeros((height, width), dtype=bool)
    mask[8:40, 10:44] = True
    mask[18:30, 20:34] = False
    return mask


def two_part_mask(height: int, width: int, left: int = 0) -> np.ndarray:
    """Two disjoint parts: a disc and a rectangle, from column ``left`` on."""
    yy, xx = np.mgrid[:height, :width]
    mask = (yy - 15) ** 2 + (xx - 15 - left) ** 2 <= 81
    mask[30:44, left + 34 : left + 56] = True
    return mask


def _encode(mask: np.ndarray) -> dict[str, object]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode()}


def make_run(
    root: Path,
    num_images: int = 3,
    size: tuple[int, int] = (48, 112),
    with_gt: bool = True,
) -> tuple[Path, Path | None, dict[str, list[np.ndarray]]]:
    """Write a run folder (VOC classes) and, with ``with_gt``, a GT folder of the same ids.

    Returns ``(run_dir, gt_dir, {image id: instance masks})``. Image ``i`` has a ring
    (class 12, dog) and a two-part mask (class 15, person), shifted per image.
    """
    height, width = size
    run = root / "run"
    gt_dir = root / "gt" if with_gt else None
    images = root / "images"
    for folder in (run / "masks", run / "instances", run / "failures", images):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    masks_of: dict[str, list[np.ndarray]] = {}
    for index in range(num_images):
        image_id = f"img_{index:05d}"
        ring = np.roll(ring_mask(height, width), index % 5, axis=1)
        parts = two_part_mask(height, width, left=52)
        semantic = np.zeros((height, width), dtype=np.uint8)
        semantic[ring] = 12
        semantic[parts] = 15
        write_label_png(run / "masks" / f"{image_id}.png", semantic, fsync=False)
        if gt_dir is not None:
            gt = np.roll(semantic, 1 + index % 4, axis=0)  # per-image mIoU differs
            gt[0, :] = 255
            write_label_png(gt_dir / f"{image_id}.png", gt, palette=False, fsync=False)
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{image_id}.jpg")
        annotations = []
        for ann_id, (cls, name, mask) in enumerate(
            [(12, "dog", ring), (15, "person", parts)], start=1
        ):
            ys, xs = np.nonzero(mask)
            annotations.append(
                {
                    "id": ann_id,
                    "class_id": cls,
                    "category_id": cls,
                    "category_name": name,
                    "prompt": name,
                    "bbox": [float(xs.min()), float(ys.min()),
                             float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                    "score": 0.5 + 0.1 * ann_id,
                    "box_score": 0.5,
                    "segmentation": _encode(mask),
                    "area": int(mask.sum()),
                }
            )  # fmt: skip
        masks_of[image_id] = [ring, parts]
        record = {
            "image_id": image_id,
            "height": height,
            "width": width,
            "annotations": annotations,
            "tags": {"dog": 0.9, "person": 0.8},
            "tag_sources": {"dog": ["dog"], "person": ["man", "person"]},
        }
        (run / "instances" / f"{image_id}.json").write_text(json.dumps(record))
    config = {
        "route": "zero-shot",
        "data": {"data": str(images), "split": None, "mapping": "voc"},
        "pipeline": {"preset": "test", "box_threshold": 0.2},
        "outputs": {"palette": True, "instances": True},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    manifest = {
        "config": config,
        "environment": {
            "models": {"boxer": {"name": "tiny-gdino"}, "masker": {"name": "tiny-sam"}}
        },
        "counts": {"images": num_images + 1, "complete": num_images, "failed": 1},
        "timing": {"seconds": 1.5, "images_per_second": 2.0},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "failures" / "failures.jsonl").write_text(
        json.dumps({"image_id": "broken", "reason": "cannot decode image"}) + "\n"
    )
    return run, gt_dir, masks_of
