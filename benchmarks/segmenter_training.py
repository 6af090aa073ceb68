"""Segmenter training speed per architecture: iterations/s, peak memory, recipe projection.

Times one training step of each architecture the way the trainer runs it (``arch.loss`` ->
backward -> the recipe's optimiser over ``arch.param_groups``) on random normalised crops
and labels (a tenth of each crop ignored, 255) already in memory, so the numbers are the
model's cost without data loading. Weights are random (the cost is the same as with the
released initialisations), and DeepLabV2 ResNet-101 (SGD, 321 crops) is measured in the
same run as the baseline.

* ``--size tiny`` (CPU default): the tests' tiny backbones and heads at 64x64 crops
  (EoMT: 48), batch 2 — checks the machinery and relative overheads, not real speeds.
* ``--size full`` (CUDA default): the released sizes at their recipe crops (321 for
  DeepLabV2, 512, EoMT 518), bf16 autocast on CUDA. On a CPU one step of Mask2Former
  Swin-L takes minutes and ~20 GB; use ``--archs`` to pick.

It prints each architecture's median seconds per iteration, images/s, peak memory, the
ratio to DeepLabV2 and the projected wall time of its recipe's iterations (80k for the
new architectures, 20k for DeepLabV2) at the measured speed and the given batch.

``--flops`` counts instead of timing (``torch.utils.flop_counter``, one image at the recipe
crop, full size): the forward and the forward + backward TFLOP of a training step. These
counts are what ``samwsss reproduce --dry-run`` turns into its GPU time estimates
(:mod:`samwsss.reproduce.estimates`).

Usage (from the repository root)::

    python -m benchmarks.segmenter_training                              # CPU, tiny
    python -m benchmarks.segmenter_training --device cuda                # GPU, full, bf16
    python -m benchmarks.segmenter_training --size full --archs segformer-b5 --repeats 1
    python -m benchmarks.segmenter_training --flops --archs deeplabv2 mask2former-swin-large
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import _measure

ARCHS = (
    "deeplabv2",
    "segformer-b5",
    "mask2former-swin-base",
    "mask2former-swin-large",
    "eomt-dinov2-large",
)
NUM_CLASSES = 21
DEEPLAB_ITERATIONS = 20_000
TINY_BACKBONE = {"segformer": "mit", "mask2former": "swin", "eomt": "dinov2"}


def build(name: str, size: str, scratch: Path) -> tuple[Any, torch.nn.Module, Any, int, int]:
    """``(arch, model, config, crop, recipe iterations)`` of ``name`` at ``size``."""
    from samwsss.segnets.deeplab import DeepLabArch
    from samwsss.training.config import TrainConfig

    if name == "deeplabv2":
        layers: dict[str, Any] = (
            {"backbone": "resnet101"}
            if size == "full"
            else {"backbone": "custom", "backbone_layers": [1, 1, 1, 1], "width_per_group": 8}
        )
        config = TrainConfig(init="none", iterations=DEEPLAB_ITERATIONS, **layers).resolve("voc")
        arch = DeepLabArch.from_config(config)
        crop = 321 if size == "full" else 64
        return arch, arch.build(NUM_CLASSES, None), config, crop, DEEPLAB_ITERATIONS
    from samwsss.segnets.registry import ARCHS as CARDS
    from samwsss.segnets.registry import family, make_arch
    from samwsss.testing.segnets import tiny_arch, write_tiny_backbone

    card = CARDS[name]
    recipe = card.recipe
    config = TrainConfig(
        init="none",
        iterations=recipe.iterations,
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        backbone_lr_mult=recipe.backbone_lr_mult,
        weight_decay=recipe.weight_decay,
    ).resolve("voc")
    if size == "full":
        arch = make_arch(name, card.options)
        return arch, arch.build(NUM_CLASSES, None), config, recipe.crop_size, recipe.iterations
    kind = family(name)
    arch = tiny_arch(name)
    folder = write_tiny_backbone(TINY_BACKBONE[kind], scratch / kind)
    crop = int(getattr(arch, "image_size", 64))
    return arch, arch.build(NUM_CLASSES, str(folder)), config, crop, recipe.iterations


def step_times(
    name: str, size: str, device: torch.device, batch: int, repeats: int, scratch: Path
) -> dict[str, Any]:
    """Median seconds per step, peak memory (bytes), parameters and the recipe length."""
    from samwsss.training.optim import build_arch_optimizer, set_learning_rates

    cuda = device.type == "cuda"
    torch.manual_seed(0)
    arch, model, config, crop, iterations = build(name, size, scratch)
    model.to(device).train()
    optimizer = build_arch_optimizer(arch, model, config)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn((batch, 3, crop, crop), generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch, crop, crop), generator=generator)
    labels[:, : crop // 10] = 255
    labels = labels.to(device)

    def step(index: int) -> None:
        set_learning_rates(optimizer, config, index)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = arch.loss(model, pixels, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warmup = 3 if cuda else 1
    for index in range(warmup):
        step(index)
    with _measure.PeakMemory(device) as memory:
        times = [
            _measure.time_call(functools.partial(step, index), device)
            for index in range(warmup, warmup + repeats)
        ]
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "seconds": statistics.median(times),
        "peak": memory.peak,
        "parameters": parameters,
        "crop": crop,
        "iterations": iterations,
    }


def step_flops(name: str, scratch: Path) -> tuple[float, float]:
    """``(forward, forward + backward)`` FLOPs of one full-size training image of ``name``
    at its recipe crop (counted, not timed; CPU, fp32)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    arch, model, _, crop, _ = build(name, "full", scratch)
    model.train()
    pixels = torch.randn((1, 3, crop, crop))
    labels = torch.randint(0, NUM_CLASSES, (1, crop, crop))
    # the math attention: the counter has no rule for the fused CPU attention kernels
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss = arch.loss(model, pixels, labels)
    forward = counter.get_total_flops()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss.backward()
    return float(forward), float(forward + counter.get_total_flops())


def main(argv: Sequence[str] | None = None) -> int:
    """Time every architecture's training step and print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0], repeats=None)
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--size", choices=("tiny", "full"), default=None)
    parser.add_argument("--batch", type=int, default=None, help="images per step (2; CUDA 8)")
    parser.add_argument("--flops", action="store_true", help="count TFLOP per image instead")
    args = parser.parse_args(argv)
    if args.flops:
        rows = []
        with tempfile.TemporaryDirectory(prefix="samwsss-bench-") as scratch:
            for name in args.archs:
                forward, step = step_flops(name, Path(scratch))
                rows.append([name, f"{forward / 1e12:.3f}", f"{step / 1e12:.3f}"])
        header = ["arch", "forward TFLOP/image", "training step TFLOP/image"]
        sys.stdout.write(
            "full-size models, one image at the recipe crop (torch.utils.flop_counter)\n\n"
            + _measure.markdown_table(header, rows)
            + "\n"
        )
        return 0
    device = _measure.resolve_device(args, cpu_threads=1)
    cuda = device.type == "cuda"
    size = args.size or ("full" if cuda else "tiny")
    batch = args.batch or (8 if cuda else 2)
    repeats = args.repeats or (10 if cuda else 3)
    names = list(dict.fromkeys(["deeplabv2", *args.archs]))  # the baseline first
    rows, baseline = [], None
    with tempfile.TemporaryDirectory(prefix="samwsss-bench-") as scratch:
        for name in names:
            result = step_times(name, size, device, batch, repeats, Path(scratch))
            seconds = result["seconds"]
            baseline = baseline or seconds
            memory = result["peak"] / (_measure.GIB if cuda else _measure.MIB)
            rows.append(
                [
                    name,
                    f"{result['parameters'] / 1e6:.2f}M",
                    result["crop"],
                    f"{seconds:.3f}",
                    f"{batch / seconds:.2f}",
                    f"{memory:.{2 if cuda else 0}f}",
                    f"{seconds / baseline:.2f}",
                    f"{result['iterations'] // 1000}k: {seconds * result['iterations'] / 3600:.1f} h",
                ]
            )
    memory_header = "peak GPU GiB" if cuda else "peak RSS MiB"
    header = ["arch", "params", "crop", "s/it", "images/s", memory_header, "x DeepLabV2",
              "recipe projection"]  # fmt: skip
    sys.stdout.write(
        f"{size} models on {device} [{_measure.hardware(device)}], "
        f"{'bf16 autocast' if cuda else 'fp32'}, batch {batch}, median of {repeats} steps "
        "(model step only, no data loading)\n\n" + _measure.markdown_table(header, rows) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
