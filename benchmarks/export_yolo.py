"""Benchmark ``samwsss export --format yolo-seg`` on fragmented instance masks.

Writes a synthetic run (``instances/<id>.json``, ``--per-image`` instances an image) of
``--instances`` (default 1,000) fragmented 500x375 masks: thresholded blurred noise, about
100 parts and 40 holes each, like a speckled SAM mask. Then, in the same run:

* times :func:`samwsss.runs.export.export_yolo` on all of them (the median of ``--repeats``
  runs; instances/s, parts/s, the size of the labels written; the peak resident memory,
  sampled, of a first untimed run: the sampling thread would slow the timed runs);
* times, on the first ``--baseline-instances`` (default 20) masks already decoded, the
  polygon and label line of each instance by the new code and by the baseline, a private
  copy of the code before the join was made near-linear (every part bridged into the
  growing ring through a full distance matrix: quadratic in the parts), taking turns within
  each repeat (``_measure.interleave``); prints the ratio and checks that both write the
  same lines, byte for byte.

Usage::

    python benchmarks/export_yolo.py                   # 1,000 instances, 20 for the baseline
    python benchmarks/export_yolo.py --instances 200 --baseline-instances 5 --repeats 1
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from benchmarks import _measure
from samwsss.runs.export import export_yolo, mask_to_polygon, yolo_line

HEIGHT, WIDTH = 375, 500


def fragmented_mask(rng: np.random.Generator) -> np.ndarray:
    """A ``(375, 500)`` bool mask in about 100 parts, some with small holes."""
    noise = cv2.GaussianBlur(rng.random((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 6.0)
    mask = noise > np.quantile(noise, 0.9)
    fine = cv2.GaussianBlur(rng.random((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 1.5)
    return mask & ~(fine > np.quantile(fine, 0.97))


def build_run(
    root: Path, instances: int, per_image: int, seed: int, keep: int
) -> tuple[list[np.ndarray], tuple[float, float, float]]:
    """Write ``root/instances/<id>.json`` (COCO RLE masks, classes 1..3).

    Returns:
        The first ``keep`` masks, and the mean parts, holes and contour points per mask.
    """
    rng = np.random.default_rng(seed)
    (root / "instances").mkdir(parents=True)
    kept: list[np.ndarray] = []
    parts = holes = points = made = 0
    for image in range((instances + per_image - 1) // per_image):
        annotations = []
        for number in range(min(per_image, instances - made)):
            mask = fragmented_mask(rng)
            made += 1
            if len(kept) < keep:
                kept.append(mask)
            contours, hierarchy = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
            )
            tree = hierarchy[0] if hierarchy is not None else []
            parts += sum(1 for row in tree if row[3] == -1)
            holes += sum(1 for row in tree if row[3] != -1)
            points += sum(len(contour) for contour in contours)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": number + 1,
                    "class_id": 1 + number % 3,
                    "category_name": f"class_{1 + number % 3}",
                    "segmentation": {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode()},
                    "bbox": [0.0, 0.0, float(WIDTH), float(HEIGHT)],
                    "score": 0.5,
                    "area": int(mask.sum()),
                }
            )
        record = {
            "image_id": f"img_{image:05d}",
            "height": HEIGHT,
            "width": WIDTH,
            "annotations": annotations,
        }
        (root / "instances" / f"img_{image:05d}.json").write_text(json.dumps(record))
    return kept, (parts / made, holes / made, points / made)


# --------------------------------------------------------------------------- BASELINE
# BASELINE ONLY, not used by the package: the YOLO-seg polygon and line code of
# samwsss/runs/export.py before the join was made near-linear, kept here to time against.
def baseline_bridge(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """BASELINE: splice ``other`` into ``ring`` at their nearest points, found with the
    full ``(len(ring), len(other))`` distance matrix against the whole growing ring."""
    distance = ((ring[:, None, :].astype(np.int64) - other[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


def baseline_mask_to_polygon(mask: np.ndarray) -> np.ndarray | None:
    """BASELINE: holes bridged into their part, then every part into the growing ring."""
    contours, hierarchy = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return None
    tree = hierarchy[0]
    parts: list[np.ndarray] = []
    for index, contour in enumerate(contours):
        if tree[index][3] != -1 or len(contour) < 3:
            continue
        ring = contour[:, 0, :]
        child = tree[index][2]
        while child != -1:
            if len(contours[child]) >= 3:
                ring = baseline_bridge(ring, contours[child][:, 0, :])
            child = tree[child][0]
        parts.append(ring)
    if not parts:
        return None
    parts.sort(key=lambda part: -len(part))
    joined = parts[0]
    for part in parts[1:]:
        joined = baseline_bridge(joined, part)
    return joined


def baseline_yolo_line(cls: int, points: np.ndarray, height: int, width: int) -> str:
    """BASELINE: ``class x1 y1 ...``, every coordinate formatted on its own."""
    scaled = points.astype(np.float64) / np.array([width, height], dtype=np.float64)
    coords = " ".join(f"{value:.6f}" for value in np.clip(scaled, 0.0, 1.0).reshape(-1))
    return f"{cls} {coords}"


# --------------------------------------------------------------------------- timing
def lines_new(masks: Sequence[np.ndarray]) -> list[str | None]:
    """The label line of each mask, by the package."""
    rings = [mask_to_polygon(mask) for mask in masks]
    return [None if r is None else yolo_line(0, r, HEIGHT, WIDTH) for r in rings]


def lines_baseline(masks: Sequence[np.ndarray]) -> list[str | None]:
    """The label line of each mask, by the baseline."""
    rings = [baseline_mask_to_polygon(mask) for mask in masks]
    return [None if r is None else baseline_yolo_line(0, r, HEIGHT, WIDTH) for r in rings]


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Build the run, time the export and the baseline, print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0], device=False, threads=False)
    parser.add_argument("--instances", type=int, default=1000, help="instances (1000)")
    parser.add_argument("--per-image", type=int, default=4, help="instances an image (4)")
    parser.add_argument(
        "--baseline-instances", type=int, default=20, help="instances for the baseline (20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.instances, args.per_image, args.baseline_instances, args.repeats) < 1:
        parser.error("--instances, --per-image, --baseline-instances, --repeats must be >= 1")
    subset_size = min(args.baseline_instances, args.instances)

    root = _measure.scratch_directory("samwsss-bench-yolo-")
    try:
        started = time.perf_counter()
        masks, (parts, holes, points) = build_run(
            root / "run", args.instances, args.per_image, args.seed, subset_size
        )
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"{args.instances} fragmented {WIDTH}x{HEIGHT} instance masks written in "
            f"{time.perf_counter() - started:.1f} s: {parts:.0f} parts, {holes:.0f} holes, "
            f"{points:.0f} contour points per mask on average\n"
            f"CPU {platform.processor() or platform.machine()}, {cpus} CPUs available "
            f"(load average {os.getloadavg()[0]:.2f}), python {sys.version.split()[0]}, "
            f"numpy {np.__version__}, opencv {cv2.__version__}"
        )
        out = root / "export"

        def run_export() -> None:
            export_yolo(root / "run", out, link_images=False)

        # the peak memory from a first, untimed export (also the warm-up: imports, the
        # tables of coordinate strings); then timed without the memory sampler, whose
        # thread takes turns with ours for the GIL
        with _measure.PeakMemory() as export_memory:
            run_export()
        seconds = [_measure.time_call(run_export) for _ in range(args.repeats)]
        export_median = statistics.median(seconds)
        labels = out / "labels"
        written = folder_bytes(labels)
        lines = sum(len(path.read_text().splitlines()) for path in labels.glob("*.txt"))
        assert lines == args.instances, f"{lines} label lines for {args.instances} instances"

        subset = [np.ascontiguousarray(mask, dtype=np.uint8) for mask in masks[:subset_size]]
        results: dict[str, list[str | None]] = {}
        calls = {
            "new": lambda: results.__setitem__("new", lines_new(subset)),
            "baseline": lambda: results.__setitem__("baseline", lines_baseline(subset)),
        }
        compared = _measure.interleave(calls, repeats=args.repeats)
        if results["new"] != results["baseline"]:
            print("ERROR: the new code and the baseline write different lines", file=sys.stderr)
            return 1
        subset_bytes = sum(len(line) + 1 for line in results["new"] if line is not None)

        new, old = compared["new"], compared["baseline"]
        rows = [
            [
                f"new: export_yolo, {args.instances} instances (read, decode, polygon, write)",
                f"{export_median:.2f}",
                f"{export_median / args.instances * 1e3:.2f}",
                f"{args.instances / export_median:.0f}",
                f"{args.instances * parts / export_median:.0f}",
                f"{export_memory.peak / _measure.MIB:.0f} "
                f"(+{export_memory.growth / _measure.MIB:.0f})",
                "",
            ],
            [
                f"new: polygon + line, {subset_size} decoded masks",
                f"{new.median:.3f}",
                f"{new.median / subset_size * 1e3:.2f}",
                f"{subset_size / new.median:.0f}",
                f"{subset_size * parts / new.median:.0f}",
                f"{new.peak_bytes / _measure.MIB:.0f} (+{new.growth_bytes / _measure.MIB:.0f})",
                _measure.speedup(old.median, new.median),
            ],
            [
                f"baseline (quadratic join): polygon + line, {subset_size} decoded masks",
                f"{old.median:.3f}",
                f"{old.median / subset_size * 1e3:.2f}",
                f"{subset_size / old.median:.1f}",
                f"{subset_size * parts / old.median:.0f}",
                f"{old.peak_bytes / _measure.MIB:.0f} (+{old.growth_bytes / _measure.MIB:.0f})",
                "1.00x",
            ],
        ]
        header = [
            "method",
            "median s",
            "ms/instance",
            "instances/s",
            "parts/s",
            "peak RSS MiB (growth)",
            "vs baseline",
        ]
        print("\n" + _measure.markdown_table(header, rows))
        print(
            f"\nlabels written: {written / 2**20:.1f} MiB for {args.instances} instances "
            f"({written / args.instances / 1024:.1f} KiB an instance); on the "
            f"{subset_size} baseline masks both write the same "
            f"{subset_bytes / 1024:.0f} KiB, byte for byte; load average "
            f"{os.getloadavg()[0]:.2f} at the end"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
