"""DeepLabV2 training speed: iterations/s, peak memory and the projected 20k-iteration time.

Times the trainer's own step (``arch_forward_loss`` -> backward -> SGD with the three
parameter groups and the poly schedule) of a ResNet-101 DeepLabV2 on synthetic 321x321
uint8 crops and labels already in memory, so the numbers are the model's cost without data
loading (DataLoader workers hide decoding in real runs). Weights are random (``init="none"``): the
cost is the same as with ImageNet weights.

* CPU (default there): batch 2, 1 warm-up and 3 timed iterations; peak memory is the
  process's resident set, sampled.
* CUDA: batch 10 (the COCO recipe; VOC uses 5) in bf16 autocast with channels-last,
  5 warm-up and 20 timed iterations; peak memory from ``torch.cuda.max_memory_allocated``.

Both print the projected wall time of 20,000 iterations (the VOC schedule) at the median
speed.

Usage (from the repository root)::

    python -m benchmarks.deeplab                      # CPU: batch 2, 3 timed iterations
    python -m benchmarks.deeplab --device cuda        # GPU: batch 10, bf16, 20 timed
    python -m benchmarks.deeplab --device cuda --batch 5 --repeats 50
"""

from __future__ import annotations

import functools
import statistics
import sys
from collections.abc import Sequence

import torch

from benchmarks import _measure
from samwsss.segnets.deeplab import DeepLabArch, build_deeplab, count_parameters
from samwsss.training.config import TrainConfig
from samwsss.training.train import arch_forward_loss, build_arch_optimizer, set_learning_rates

BACKBONE = "resnet101"
CROP = 321
NUM_CLASSES = 21
TARGET_ITERATIONS = 20_000


def step_times(
    device: torch.device, batch: int, iterations: int, warmup: int, seed: int = 0
) -> tuple[list[float], int, int]:
    """Seconds of each timed training step after ``warmup`` untimed ones, the peak memory
    (bytes) and the model's parameter count."""
    cuda = device.type == "cuda"
    torch.manual_seed(seed)
    config = TrainConfig(
        backbone=BACKBONE,
        init="none",
        iterations=max(TARGET_ITERATIONS, warmup + iterations),
        batch_size=batch,
        crop_size=CROP,
    ).resolve("voc")
    model = build_deeplab(NUM_CLASSES, backbone=BACKBONE, init="none").to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    model.train()
    arch = DeepLabArch.from_config(config)
    optimizer = build_arch_optimizer(arch, model, config)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, CROP, CROP, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(
        0, NUM_CLASSES, (batch, CROP, CROP), dtype=torch.uint8, generator=generator
    )
    labels[:, : CROP // 10] = 255  # some ignore pixels, as padded crops have
    if cuda:
        images, labels = images.pin_memory(), labels.pin_memory()

    def step(index: int) -> None:
        set_learning_rates(optimizer, config, index)
        loss = arch_forward_loss(
            arch, model, images, labels, config, device=device, amp=cuda, channels_last=cuda
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for index in range(warmup):
        step(index)
    with _measure.PeakMemory(device) as memory:
        times = [
            _measure.time_call(functools.partial(step, index), device)
            for index in range(warmup, warmup + iterations)
        ]
    return times, memory.peak, count_parameters(model)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the training steps and print the speed and the projection."""
    parser = _measure.parser(__doc__.split("\n\n")[0], repeats=None)
    parser.add_argument("--batch", type=int, default=None, help="images per step (CPU 2, CUDA 10)")
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    cuda = device.type == "cuda"
    batch = args.batch or (10 if cuda else 2)
    iterations = args.repeats or (20 if cuda else 3)
    times, peak, parameters = step_times(device, batch, iterations, warmup=5 if cuda else 1)
    per_iteration = statistics.median(times)
    memory = "peak GPU memory" if cuda else "peak RSS"
    sys.stdout.write(
        f"DeepLabV2 {BACKBONE} ({parameters / 1e6:.1f}M params) on {device} "
        f"[{_measure.hardware(device)}], {'bf16' if cuda else 'fp32'}, crop {CROP}, "
        f"batch {batch}:\n"
        f"  {per_iteration:.3f} s/iteration (median of {iterations}), "
        f"{1.0 / per_iteration:.3f} it/s, {batch / per_iteration:.2f} images/s, "
        f"{memory} {peak / _measure.GIB:.2f} GiB\n"
        f"  projected {TARGET_ITERATIONS} iterations: "
        f"{per_iteration * TARGET_ITERATIONS / 3600.0:.2f} h (model step only, no data loading)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
