"""Per-stage benchmark: boxer, masker and merger, each against the authors' style.

Runs, in one process and on one device:

* ``boxer``  — :mod:`benchmarks.boxer_bench` (batched Grounding DINO vs one forward per
  image and class);
* ``masker`` — :mod:`benchmarks.masker_bench` (batched SAM vs one call per image and class);
* ``merger`` — the score rule on a batch of images (tensor code, on the device) vs the
  authors' per-mask numpy loop ``label = max(label, mask * class)``.

The tagger has its own script (``benchmarks/tagger.py``: a full-size RAM++ is slow to build
on a CPU). Run from the repository root::

    python -m benchmarks.stages --device cpu                 # tiny models (+ one full-size image)
    python -m benchmarks.stages --device cuda --boxer-sizes full --masker-sizes vit-h
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from samwsss.detections import Detections
from samwsss.stages.merger import MaskMerger


def _random_detections(count: int, height: int, width: int, device: torch.device, seed: int) -> Detections:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randint(0, width // 2, (count,), generator=generator)
    y1 = torch.randint(0, height // 2, (count,), generator=generator)
    x2 = x1 + torch.randint(8, width // 2, (count,), generator=generator)
    y2 = y1 + torch.randint(8, height // 2, (count,), generator=generator)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    masks = (ys >= y1[:, None, None]) & (ys < y2[:, None, None]) & (xs >= x1[:, None, None]) & (xs < x2[:, None, None])
    return Detections(
        image_size=(height, width),
        boxes=boxes,
        box_scores=torch.rand(count, generator=generator),
        class_ids=torch.randint(1, 21, (count,), generator=generator),
        prompts=("x",) * count,
        masks=masks,
        mask_scores=torch.rand(count, generator=generator),
    ).to(device)


def _authors_merge(detections: Detections) -> np.ndarray:
    masks = detections.masks.cpu().numpy()
    classes = detections.class_ids.cpu().numpy()
    label = np.zeros(detections.image_size, dtype=np.uint8)
    for mask, cls in zip(masks, classes):
        label = np.maximum(label, mask.astype(np.uint8) * cls)
    return label


def merger_benchmark(device: torch.device, batch_sizes: Sequence[int], masks_per_image: int, repeats: int) -> list[dict]:
    """Median images/s of the merger rules vs the authors' loop (masks already on ``device``)."""
    rows = []
    for batch in batch_sizes:
        dets = [_random_detections(masks_per_image, 375, 500, device, seed) for seed in range(batch)]
        timings: dict[str, list[float]] = {"authors_loop": [], "paper": [], "score": [], "score+uncertain": []}
        mergers = {"paper": MaskMerger("paper"), "score": MaskMerger("score"),
                   "score+uncertain": MaskMerger("score", uncertain_margin=0.1)}
        for _ in range(repeats):
            start = time.perf_counter()
            for det in dets:
                _authors_merge(det)
            timings["authors_loop"].append(time.perf_counter() - start)
            for name, merger in mergers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                out = [m.cpu() for m in merger(dets)]
                timings[name].append(time.perf_counter() - start)
                del out
        base = statistics.median(timings["authors_loop"])
        for name, values in timings.items():
            median = statistics.median(values)
            rows.append({"stage": "merger", "style": name, "batch": batch, "images_per_s": batch / median,
                         "vs_authors": base / median})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--stages", nargs="+", default=["boxer", "masker", "merger"], choices=["boxer", "masker", "merger"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--boxer-sizes", nargs="+", default=["tiny", "full"])
    parser.add_argument("--masker-sizes", nargs="+", default=["tiny", "vit-b"])
    parser.add_argument("--masks-per-image", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    sizes = [str(b) for b in args.batch_sizes]
    if "boxer" in args.stages:
        from benchmarks import boxer_bench

        boxer_bench.main(["--device", args.device, "--sizes", *args.boxer_sizes, "--batch-sizes", *sizes])
    if "masker" in args.stages:
        from benchmarks import masker_bench

        masker_bench.main(["--device", args.device, "--sizes", *args.masker_sizes, "--batch-sizes", *sizes])
    if "merger" in args.stages:
        print(f"\nmerger: {args.masks_per_image} masks per 500x375 image, median of {args.repeats}")
        print(f"{'style':<16}{'batch':>6}{'images/s':>12}{'x authors':>11}")
        for row in merger_benchmark(device, args.batch_sizes, args.masks_per_image, args.repeats):
            print(f"{row['style']:<16}{row['batch']:>6}{row['images_per_s']:>12.1f}{row['vs_authors']:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
