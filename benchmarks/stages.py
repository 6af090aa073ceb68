"""Per-stage benchmark: boxer, masker and merger, each against the authors' style.

Runs, in one process and on one device, at batch sizes 1, 4 and 8 by default:

* ``boxer``  — :mod:`benchmarks.boxer_bench` (batched Grounding DINO vs one forward per
  image and class);
* ``masker`` — :mod:`benchmarks.masker_bench` (batched SAM vs one call per image and class);
* ``merger`` — the merge rules on a batch of images with 8 masks each (tensor code, on the
  device) vs the authors' per-mask numpy loop ``label = max(label, mask * class)``.

The tagger has its own script (``benchmarks/tagger.py``: a full-size RAM++ is slow to build
on a CPU). Run from the repository root::

    python -m benchmarks.stages --device cpu                 # tiny models (+ one full-size image)
    python -m benchmarks.stages --device cuda --boxer-sizes full --masker-sizes vit-h
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from benchmarks import _measure
from samwsss.detections import Detections
from samwsss.stages.merger import MaskMerger

STAGES = ("boxer", "masker", "merger")
MASKS_PER_IMAGE = 8


def random_detections(
    count: int, height: int, width: int, device: torch.device, seed: int
) -> Detections:
    """``count`` random boxes with their box-shaped masks, scores and VOC classes."""
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randint(0, width // 2, (count,), generator=generator)
    y1 = torch.randint(0, height // 2, (count,), generator=generator)
    x2 = x1 + torch.randint(8, width // 2, (count,), generator=generator)
    y2 = y1 + torch.randint(8, height // 2, (count,), generator=generator)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    inside_y = (ys >= y1[:, None, None]) & (ys < y2[:, None, None])
    inside_x = (xs >= x1[:, None, None]) & (xs < x2[:, None, None])
    return Detections(
        image_size=(height, width),
        boxes=boxes,
        box_scores=torch.rand(count, generator=generator),
        class_ids=torch.randint(1, 21, (count,), generator=generator),
        prompts=("x",) * count,
        masks=inside_y & inside_x,
        mask_scores=torch.rand(count, generator=generator),
    ).to(device)


def authors_merge(detections: Detections) -> np.ndarray:
    """The authors' merge: ``label = max(label, mask * class)`` mask by mask, in numpy."""
    assert detections.masks is not None
    masks = detections.masks.cpu().numpy()
    classes = detections.class_ids.cpu().numpy()
    label = np.zeros(detections.image_size, dtype=np.uint8)
    for mask, cls in zip(masks, classes, strict=True):
        label = np.maximum(label, mask.astype(np.uint8) * cls)
    return label


def authors_merge_batch(batch: Sequence[Detections]) -> list[np.ndarray]:
    """:func:`authors_merge` on each image."""
    return [authors_merge(detections) for detections in batch]


def merge_to_cpu(merger: MaskMerger, batch: Sequence[Detections]) -> list[torch.Tensor]:
    """``merger`` on the batch, the label maps copied to the CPU."""
    return [label.cpu() for label in merger(batch)]


def merger_rows(device: torch.device, batch_sizes: Sequence[int], repeats: int) -> list[list[str]]:
    """Median images/s of the merge rules vs the authors' loop (masks already on ``device``)."""
    mergers = {
        "paper": MaskMerger("paper"),
        "score": MaskMerger("score"),
        "score+uncertain": MaskMerger("score", uncertain_margin=0.1),
    }
    rows = []
    for batch in batch_sizes:
        dets = [random_detections(MASKS_PER_IMAGE, 375, 500, device, seed) for seed in range(batch)]
        calls: dict[str, Callable[[], object]] = {
            "authors_loop": functools.partial(authors_merge_batch, dets)
        }
        for name, merger in mergers.items():
            calls[name] = functools.partial(merge_to_cpu, merger, dets)
        results = _measure.interleave(calls, device, repeats)
        base = results["authors_loop"].median
        for name, result in results.items():
            rows.append(
                [
                    name,
                    str(batch),
                    f"{batch / result.median:.1f}",
                    _measure.speedup(base, result.median),
                ]
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen stages' benchmarks and print their tables."""
    parser = _measure.parser(__doc__.split("\n\n")[0], repeats=None)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--boxer-sizes", nargs="+", default=["tiny", "full"])
    parser.add_argument("--masker-sizes", nargs="+", default=["tiny", "vit-b"])
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    print(f"device: {device} ({_measure.hardware(device)})")
    common = ["--device", str(device), "--batch-sizes", *(str(b) for b in args.batch_sizes)]
    if args.repeats is not None:
        common += ["--repeats", str(args.repeats)]
    if "boxer" in args.stages:
        from benchmarks import boxer_bench

        print("\nboxer:")
        boxer_bench.main([*common, "--sizes", *args.boxer_sizes])
    if "masker" in args.stages:
        from benchmarks import masker_bench

        print("\nmasker:")
        masker_bench.main([*common, "--sizes", *args.masker_sizes])
    if "merger" in args.stages:
        repeats = args.repeats or 3
        print(f"\nmerger: {MASKS_PER_IMAGE} masks per 500x375 image, median of {repeats}")
        rows = merger_rows(device, args.batch_sizes, repeats)
        print(_measure.markdown_table(["style", "batch", "images/s", "x authors"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
