"""Benchmark ``evaluate_folder``: masks/s and peak memory against a naive baseline.

Generates N (default 500) structured 500x375 prediction / ground-truth palette PNG pairs
(background, a few blob-shaped objects of random VOC classes, 255 borders on the GT, the
prediction a shifted and partly relabelled copy with some 255 pixels) in a temporary
folder, then times, in the same run, the methods taking turns within each repeat:

* ``evaluate_folder`` with the process backend, the thread backend, and in one thread;
* a naive baseline in the style of research scripts: one thread, PIL decode, then a
  Python loop over the classes computing intersection and union with boolean masks.

Each timing is the median of ``--repeats`` runs (files are in the page cache after a
warm-up read); peak memory is the proportional set size of this process and its worker
processes, sampled. The script checks that every method gives the baseline's IoUs.

Usage::

    python benchmarks/evaluate.py               # 500 pairs, 3 repeats, all CPUs
    python benchmarks/evaluate.py --num 2000 --workers 2 --repeats 5
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from benchmarks import _measure
from samwsss.classes import VOC_CLASSES
from samwsss.evaluation import EvaluationReport, GroundTruthFolder, evaluate_folder
from samwsss.labelio import encode_label_png

NUM_CLASSES = len(VOC_CLASSES)

HEIGHT, WIDTH = 375, 500


def make_pair(rng: np.random.Generator, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One structured ``(gt, pred)`` pair of ``(375, 500)`` uint8 label maps."""
    gt = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    pred = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, num_classes))
        cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
        ry, rx = rng.uniform(20, 150), rng.uniform(20, 200)
        y0, y1 = max(0, int(cy - 1.2 * ry)), min(HEIGHT, int(cy + 1.2 * ry) + 1)
        x0, x1 = max(0, int(cx - 1.2 * rx)), min(WIDTH, int(cx + 1.2 * rx) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        dy, dx = (yy - cy).astype(np.float32), (xx - cx).astype(np.float32)
        wobble = 1.0 + 0.15 * np.sin(np.arctan2(dy, dx) * int(rng.integers(2, 6)))
        blob = (dy / ry) ** 2 + (dx / rx) ** 2 <= wobble
        gt[y0:y1, x0:x1][blob] = cls
        sy, sx = (int(v) for v in rng.integers(-12, 13, size=2))
        wrong = rng.random() < 0.2
        label = int(rng.integers(1, num_classes)) if wrong else cls
        ty0, ty1 = min(max(y0 + sy, 0), HEIGHT), min(max(y1 + sy, 0), HEIGHT)
        tx0, tx1 = min(max(x0 + sx, 0), WIDTH), min(max(x1 + sx, 0), WIDTH)
        if ty0 < ty1 and tx0 < tx1:
            part = blob[ty0 - y0 - sy : ty1 - y0 - sy, tx0 - x0 - sx : tx1 - x0 - sx]
            pred[ty0:ty1, tx0:tx1][part] = label
    # 255 boundary band on the GT (as in VOC SegmentationClass)
    edge = np.zeros(gt.shape, dtype=bool)
    edge[1:, :] |= gt[1:, :] != gt[:-1, :]
    edge[:, 1:] |= gt[:, 1:] != gt[:, :-1]
    for _ in range(2):
        edge[1:, :] |= edge[:-1, :].copy()
        edge[:, 1:] |= edge[:, :-1].copy()
    gt[edge] = 255
    # a few "unsure" predicted pixels
    if rng.random() < 0.5:
        y0, x0 = int(rng.integers(0, HEIGHT - 40)), int(rng.integers(0, WIDTH - 40))
        pred[y0 : y0 + 40, x0 : x0 + 40] = 255
    return gt, pred


def build_fixture(root: Path, num: int, num_classes: int, seed: int) -> list[str]:
    """Write ``num`` pairs as ``root/gt/<id>.png`` and ``root/pred/<id>.png`` (palette)."""
    rng = np.random.default_rng(seed)
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir(parents=True)
    ids = [f"{index:06d}" for index in range(num)]
    for image_id in ids:
        gt, pred = make_pair(rng, num_classes)
        (root / "gt" / f"{image_id}.png").write_bytes(encode_label_png(gt))
        (root / "pred" / f"{image_id}.png").write_bytes(encode_label_png(pred))
    return ids


def naive_miou(pred_dir: Path, gt_dir: Path, ids: list[str], num_classes: int) -> np.ndarray:
    """Research-script style: one thread, per-class Python loop with boolean masks."""
    intersection = np.zeros(num_classes, dtype=np.int64)
    union = np.zeros(num_classes, dtype=np.int64)
    for image_id in ids:
        gt = np.array(Image.open(gt_dir / f"{image_id}.png"))
        pred = np.array(Image.open(pred_dir / f"{image_id}.png"))
        pred[pred == 255] = 0
        valid = gt != 255
        for cls in range(num_classes):
            p = (pred == cls) & valid
            g = gt == cls
            intersection[cls] += np.sum(p & g)
            union[cls] += np.sum(p | g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the masks, time every method, check they agree, print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0], device=False, threads=False)
    parser.add_argument("--num", type=int, default=500, help="mask pairs (default 500)")
    parser.add_argument("--workers", type=int, default=None, help="default: all CPUs (max 8)")
    args = parser.parse_args(argv)
    if args.num < 1 or args.repeats < 1:
        parser.error("--num and --repeats must be >= 1")

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="samwsss-bench-eval-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        ids = build_fixture(root, args.num, NUM_CLASSES, seed=0)
        print(f"generated {args.num} pairs of {WIDTH}x{HEIGHT} palette PNGs in "
              f"{time.perf_counter() - start:.1f} s; {cpus} CPUs available, "
              f"python {sys.version.split()[0]}, numpy {np.__version__}")  # fmt: skip
        pred_dir, gt_dir = root / "pred", root / "gt"
        for path in list(pred_dir.iterdir()) + list(gt_dir.iterdir()):
            path.read_bytes()  # warm the page cache for every method alike
        dataset = GroundTruthFolder(gt_dir, VOC_CLASSES)

        results: dict[str, object] = {}

        def keep(name: str, function: Callable[[], object]) -> Callable[[], object]:
            def call() -> object:
                results[name] = function()
                return results[name]

            return call

        methods = {
            "evaluate_folder process": lambda: evaluate_folder(
                pred_dir, dataset, workers=args.workers, backend="process"
            ),
            "evaluate_folder thread": lambda: evaluate_folder(
                pred_dir, dataset, workers=args.workers, backend="thread"
            ),
            "evaluate_folder 1 thread": lambda: evaluate_folder(pred_dir, dataset, workers=1),
            "naive baseline": lambda: naive_miou(pred_dir, gt_dir, ids, NUM_CLASSES),
        }
        calls = {name: keep(name, function) for name, function in methods.items()}
        measured = _measure.interleave(calls, repeats=args.repeats, tree=True)

        reference = results["naive baseline"]
        for name, result in results.items():
            if name == "naive baseline":
                continue
            assert isinstance(result, EvaluationReport) and isinstance(reference, np.ndarray)
            if not np.allclose(result.metrics.iou, reference, equal_nan=True):
                print(f"ERROR: {name} and the baseline disagree", file=sys.stderr)
                return 1
        base = measured["naive baseline"].median
        rows = [
            [
                name,
                f"{m.median:.3f}",
                f"{args.num / m.median:.0f}",
                _measure.speedup(base, m.median) if name != "naive baseline" else "",
                f"{m.peak_bytes / _measure.MIB:.0f}",
            ]
            for name, m in measured.items()
        ]
        header = ["method", "median s", "masks/s", "vs naive", "peak PSS MiB"]
        print("\n" + _measure.markdown_table(header, rows))
        ours = results["evaluate_folder process"]
        assert isinstance(ours, EvaluationReport)
        print(f"mIoU {ours.miou * 100:.2f}% over {args.num} images (identical to the baseline's)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
