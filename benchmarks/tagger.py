"""Benchmark the RAM / RAM++ tagger: images/s and peak memory at several batch sizes.

Builds a full-size RAM++ (Swin-L at 384, 4,585 tags x 51 descriptions = a 233,835 x 512
label table) or RAM with random weights — the cost does not depend on the values — and
times :class:`samwsss.ram.tagger.RAMTagger` end to end on 480x640 uint8 images (resize,
normalise, forward, thresholds), in the same process for every batch size.

* CPU: float32, batch sizes 1 and 16 by default.
* CUDA (when available or ``--device cuda``): bf16 autocast, batch sizes 1, 16 and 64.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per batch size; on CPU the
process's peak resident set size during each batch size (Linux ``VmHWM``, reset between
sizes through ``/proc/self/clear_refs``; elsewhere the lifetime maximum).

Usage::

    python benchmarks/tagger.py --device cpu --iterations 2 --warmup 1
    python benchmarks/tagger.py --device cuda              # batch 1, 16, 64, bf16
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from samwsss.ram.config import default_config
from samwsss.ram.model import RAMModel
from samwsss.ram.tagger import RAMTagger
from samwsss.ram.vocabulary import RAMVocabulary


def build_tagger(variant: str, device: str, batch_size: int) -> RAMTagger:
    """Full-size tagger with random weights and a synthetic 4,585-tag vocabulary."""
    config = default_config(variant)
    model = RAMModel(config)
    with torch.no_grad():
        model.label_embed.normal_(0.0, 0.05)
        if model.reweight_scale is not None:
            model.reweight_scale.fill_(float(np.log(1 / 0.07)))
    vocabulary = RAMVocabulary(
        tuple(f"tag {i}" for i in range(config.num_tags)), (0.65,) * config.num_tags
    )
    return RAMTagger(model, vocabulary, batch_size=batch_size, name=f"random {variant}").to(device)


def _reset_cpu_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cpu_peak_bytes() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run(
    tagger: RAMTagger, batch: int, iterations: int, warmup: int, rng: np.random.Generator
) -> dict[str, float]:
    """Time ``iterations`` calls of ``tagger`` on ``batch`` images after ``warmup`` calls."""
    images = [rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8) for _ in range(batch)]
    cuda = tagger.device.type == "cuda"
    tagger.batch_size = batch
    for _ in range(warmup):
        tagger(images)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_cpu_peak()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        tagger(images)  # returns CPU results: includes the device -> host copy
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    peak = torch.cuda.max_memory_allocated() if cuda else _cpu_peak_bytes()
    return {
        "batch": batch,
        "seconds_per_batch": seconds,
        "images_per_second": batch / seconds,
        "peak_memory_gib": peak / 2**30,
        "weights_memory_gib": (base if cuda else 0) / 2**30,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--variant", default="ram_plus", choices=("ram_plus", "ram"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="default: 1 16 on CPU, 1 16 64 on CUDA")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed calls per batch size (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.startswith("cuda")
    sizes = args.batch_sizes or ([1, 16, 64] if cuda else [1, 16])
    iterations = args.iterations or (10 if cuda else 2)

    start = time.perf_counter()
    tagger = build_tagger(args.variant, device, max(sizes))
    build_seconds = time.perf_counter() - start
    params = sum(p.numel() for p in tagger.model.parameters())
    if cuda:
        hardware = torch.cuda.get_device_name()
    else:
        hardware = f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"RAM tagger benchmark: {args.variant}, {params / 1e6:.1f} M parameters, "
          f"{device} ({hardware}), {'bf16 autocast' if cuda else 'float32'}, "
          f"built in {build_seconds:.1f} s")
    rng = np.random.default_rng(0)
    results = []
    for batch in sizes:
        result = run(tagger, batch, iterations, args.warmup, rng)
        results.append(result)
        print(f"  batch {batch:3d}: {result['images_per_second']:8.2f} images/s "
              f"({result['seconds_per_batch']:.3f} s/batch), peak memory "
              f"{result['peak_memory_gib']:.2f} GiB")
    by_batch = {r["batch"]: r for r in results}
    if 1 in by_batch:
        for batch in sizes:
            if batch != 1:
                ratio = by_batch[batch]["images_per_second"] / by_batch[1]["images_per_second"]
                print(f"  throughput batch {batch} / batch 1: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(
            {"variant": args.variant, "device": device, "hardware": hardware,
             "parameters": params, "iterations": iterations, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
