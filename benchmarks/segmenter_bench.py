"""Text segmenter cost: SAM 3 vs Grounding DINO + SAM on the same images and classes, and
what each extra class per image costs SAM 3.

Models (random weights, written by :mod:`samwsss.testing` and loaded through
``registry.create`` like real checkpoints):

* ``tiny`` (default) — the tests' tiny configurations at the released input sizes: SAM 3
  2-layer ViT of width 32 at 1008 x 1008 (72 x 72 patches, 288 x 288 masks); Grounding
  DINO tiny (Swin 16-wide, d_model 32) at 800/1333 with tempered logits; SAM tiny (ViT
  32-wide, 256 x 256 input);
* ``full`` — the released architectures (SAM 3 ``Sam3Config()``, Grounding DINO Swin-T,
  SAM ViT-H); for GPUs (a CPU needs minutes per image).

Two tables, every number a median over ``--repeats`` calls after one warm-up call (the
SAM 3 text cache is warm then, as it is for all but the first batch of a run):

1. **pipelines** — the same VOC-sized images with ``CLASSES_PER_IMAGE`` classes each:
   ``gdino+sam`` (boxer then masker, the paper's route; the baseline) and ``sam3`` (one
   ``Sam3Segmenter`` call). Reported: seconds per batch, images/s, instances found, peak
   memory growth (CUDA: max allocated; CPU: resident set, sampled) and the speed-up over
   the baseline.
2. **classes per image** — SAM 3 with 1, 2, 4, 8 classes per image: seconds per image,
   seconds inside the vision encoder per image, and the marginal cost of one more class
   (``(t_k - t_1) / (k - 1)``) as a fraction of a one-class image.

What the tiny numbers mean: the tiny SAM 3's ViT has 2 layers of width 32, as wide as its
detector and mask heads, so there the per-class heads (DETR encoder over 72 x 72 tokens and
the 288 x 288 pixel decoder) cost more than the image. In the released model, by a rough
FLOP count, the ViT backbone (32 layers of width 1024 over 72 x 72 tokens) is ~7 TFLOPs per
image and one prompt's heads (6-layer DETR encoder of width 256 over the same tokens, the
200-query decoder, the 256-channel pixel decoder up to 288 x 288) ~0.4 TFLOPs, so an extra
class should cost ~6% of an image. Run ``--size full`` on a GPU to measure it.

Run from the repository root::

    python -m benchmarks.segmenter_bench --device cpu --threads 1
    python -m benchmarks.segmenter_bench --size full --device cuda
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks import _measure

#: VOC-like image sizes (H, W), used round-robin.
IMAGE_SIZES = ((375, 500), (500, 375))
IMAGES = 2
CLASSES_PER_IMAGE = 2
CLASS_COUNTS = (1, 2, 4, 8)
PROMPTS = ("cat", "dog", "person", "wild bird", "dining table", "car", "bus", "potted plant")
#: Instance score threshold of SAM 3 here: its documented 0.5 keeps no instance of a random
#: model; 0.3 keeps some, so mask post-processing is part of the cost.
SAM3_THRESHOLD = 0.3


def make_images(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` uniform-noise uint8 RGB images of :data:`IMAGE_SIZES`."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (*IMAGE_SIZES[i % len(IMAGE_SIZES)], 3), dtype=np.uint8)
        for i in range(count)
    ]


def make_queries(count: int, classes: int) -> list[list[tuple[int, str]]]:
    """``classes`` ``(class id, prompt)`` pairs per image, cycling :data:`PROMPTS`."""
    return [
        [(1 + (i + c) % len(PROMPTS), PROMPTS[(i + c) % len(PROMPTS)]) for c in range(classes)]
        for i in range(count)
    ]


def load_models(size: str, device: torch.device) -> tuple[Any, Any, Any]:
    """``(segmenter, boxer, masker)`` of ``size``, written to scratch folders and loaded."""
    from samwsss.registry import create
    from samwsss.testing.gdino import write_grounding_dino
    from samwsss.testing.sam import write_sam
    from samwsss.testing.sam3 import write_sam3

    scratch = _measure.scratch_directory("samwsss-bench-segmenter-")
    try:
        segmenter = create(
            "segmenter",
            str(write_sam3(size, scratch / "sam3")),
            device=device,
            score_threshold=SAM3_THRESHOLD,
        )
        boxer = create("boxer", str(write_grounding_dino(size, scratch / "gdino")), device=device)
        masker = create("masker", str(write_sam(size, scratch / "sam")), device=device)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return segmenter, boxer, masker


def gdino_sam(boxer: Any, masker: Any, images: list[np.ndarray], queries: Any) -> int:
    """Boxer then masker on the batch; returns the number of instances."""
    from samwsss.stages.contracts import ImageBatch

    batch = ImageBatch(images, boxer.device)
    return sum(len(d) for d in masker.segment(batch, boxer.detect(batch, queries)))


def sam3(segmenter: Any, images: list[np.ndarray], queries: Any) -> int:
    """One segmenter call on the batch; returns the number of instances."""
    return sum(len(d) for d in segmenter(images, queries))


def pipelines(
    segmenter: Any, boxer: Any, masker: Any, device: torch.device, repeats: int
) -> list[list[str]]:
    """Table 1: gdino+sam (baseline) vs sam3 on the same images and classes."""
    images, queries = make_images(IMAGES), make_queries(IMAGES, CLASSES_PER_IMAGE)
    calls: dict[str, Callable[[], object]] = {
        "gdino+sam": functools.partial(gdino_sam, boxer, masker, images, queries),
        "sam3": functools.partial(sam3, segmenter, images, queries),
    }
    found = {name: int(call()) for name, call in calls.items()}  # the warm-up call
    results = _measure.interleave(calls, device, repeats)
    baseline = results["gdino+sam"].median
    rows = []
    for name, result in results.items():
        rows.append(
            [
                name,
                str(IMAGES),
                str(CLASSES_PER_IMAGE),
                f"{result.median:.3f}",
                f"{IMAGES / result.median:.3g}",
                str(found[name]),
                f"{result.growth_bytes / _measure.MIB:.0f}",
                _measure.speedup(None if name == "gdino+sam" else baseline, result.median),
            ]
        )
    return rows


def classes_per_image(segmenter: Any, device: torch.device, repeats: int) -> list[list[str]]:
    """Table 2: SAM 3 seconds per image with 1, 2, 4, 8 classes per image."""
    images = make_images(IMAGES, seed=1)
    calls: dict[str, Callable[[], object]] = {
        str(k): functools.partial(sam3, segmenter, images, make_queries(IMAGES, k))
        for k in CLASS_COUNTS
    }
    clock = _measure.ModelClock([segmenter.model.vision_encoder], device)
    try:
        results = _measure.interleave(calls, device, repeats, warmup=1, clock=clock)
    finally:
        clock.close()
    one = results[str(CLASS_COUNTS[0])].median / IMAGES
    rows = []
    for k in CLASS_COUNTS:
        result = results[str(k)]
        per_image = result.median / IMAGES
        marginal = (per_image - one) / (k - 1) if k > 1 else None
        rows.append(
            [
                str(k),
                f"{per_image:.3f}",
                f"{result.model_median / IMAGES:.3f}",
                "" if marginal is None else f"{marginal:.3f}",
                "" if marginal is None else f"{marginal / one:.2f}",
                f"{result.growth_bytes / _measure.MIB:.0f}",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, print both tables."""
    parser = _measure.parser(__doc__.split("\n")[0], repeats=3)
    parser.add_argument("--size", default="tiny", choices=("tiny", "full"))
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    segmenter, boxer, masker = load_models(args.size, device)
    dtype = str(segmenter.compute_dtype).replace("torch.", "")
    out = sys.stdout
    out.write(f"{args.size} models on {_measure.hardware(device)}, {dtype}\n\n")
    header = ["route", "images", "classes/image", "s/batch", "images/s", "instances"]
    header += ["peak MB", "speedup"]
    rows = pipelines(segmenter, boxer, masker, device, args.repeats)
    out.write(_measure.markdown_table(header, rows) + "\n\n")
    header = ["classes/image", "s/image", "vision s/image", "s/extra class"]
    header += ["extra class / 1-class image", "peak MB"]
    rows = classes_per_image(segmenter, device, args.repeats)
    out.write(_measure.markdown_table(header, rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
