"""Benchmark the RAM++ tagger: images/s and peak memory at several batch sizes.

Builds a full-size RAM++ (Swin-L at 384, 4,585 tags x 51 descriptions = a 233,835 x 512
label table) with seeded random weights (:func:`samwsss.testing.ram.random_ram_model`; the
cost does not depend on the values) and times :class:`samwsss.ram.tagger.RAMTagger` end to
end on 480x640 uint8 images (resize, normalise, forward, thresholds, results on the CPU),
in the same process for every batch size, after one warm-up call per batch size.

* CPU: float32, batch sizes 1 and 16 by default, 2 timed calls each.
* CUDA (when available or ``--device cuda``): bf16 autocast, batch sizes 1, 16 and 64,
  10 timed calls each.

Peak memory: CUDA ``torch.cuda.max_memory_allocated`` per batch size; CPU the process's
resident set, sampled. The speed-up is images/s against batch 1.

Usage::

    python benchmarks/tagger.py --device cpu --repeats 2
    python benchmarks/tagger.py --device cuda              # batch 1, 16, 64, bf16
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import _measure
from samwsss.ram.tagger import RAMTagger
from samwsss.ram.vocabulary import RAMVocabulary
from samwsss.testing.ram import random_ram_model


def build_tagger(device: torch.device, batch_size: int) -> RAMTagger:
    """Full-size RAM++ with random weights and a synthetic 4,585-tag vocabulary."""
    model = random_ram_model("ram_plus", seed=0)
    tags = model.config.num_tags
    vocabulary = RAMVocabulary(tuple(f"tag {i}" for i in range(tags)), (0.65,) * tags)
    return RAMTagger(model, vocabulary, batch_size=batch_size, name="random ram_plus").to(device)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the tagger, time every batch size, print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0], repeats=None)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="default: 1 16 on CPU, 1 16 64 on CUDA",
    )
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    cuda = device.type == "cuda"
    sizes = args.batch_sizes or ([1, 16, 64] if cuda else [1, 16])
    repeats = args.repeats or (10 if cuda else 2)

    start = time.perf_counter()
    tagger = build_tagger(device, max(sizes))
    build_seconds = time.perf_counter() - start
    params = sum(p.numel() for p in tagger.model.parameters())
    print(
        f"RAM++ tagger benchmark: {params / 1e6:.1f} M parameters, {device} "
        f"({_measure.hardware(device)}), {'bf16 autocast' if cuda else 'float32'}, "
        f"built in {build_seconds:.1f} s"
    )
    rng = np.random.default_rng(0)
    rows, per_second = [], {}
    for batch in sizes:
        images = [rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8) for _ in range(batch)]
        tagger.batch_size = batch
        result = _measure.interleave(
            {"tagger": functools.partial(tagger, images)}, device, repeats, warmup=1
        )["tagger"]
        per_second[batch] = batch / result.median
        base = per_second.get(1)
        rows.append(
            [
                str(batch),
                f"{result.median:.3f}",
                f"{per_second[batch]:.2f}",
                f"{result.peak_bytes / _measure.GIB:.2f}",
                "" if base is None or batch == 1 else f"{per_second[batch] / base:.2f}x",
            ]
        )
    header = ["batch", "s/batch", "images/s", "peak memory GiB", "vs batch 1"]
    print(_measure.markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
