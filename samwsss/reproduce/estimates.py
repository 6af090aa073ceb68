"""How long a step of the plan is estimated to take on one H100, and where each figure
comes from. These are estimates, never measurements: ``--dry-run`` prints them as such.

* Labelling runs: images / images-per-second. The rate is the best public Grounded-SAM
  figure on an H100 (about 18 images/s, Grounding DINO + SAM ViT-H in bf16; the project's
  design notes, section 6), plus RAM++'s share for zero-shot (0.32 of about 7 TFLOP per
  image); the ``paper`` protocol computes in float32, which an H100 runs at half its bf16
  peak. No GPU rate has been measured for SAM 3, so its steps get no estimate.
* Training: iterations x batch x the FLOPs of one training image, counted by
  ``python -m benchmarks.segmenter_training --flops`` (:data:`TRAIN_TFLOP`), at a share of
  the H100's dense bf16 peak (:data:`UTILISATION`): 10% for DeepLabV2's convolutions
  (MLPerf-tuned ResNet-50 training reaches under 20% of it; a PyTorch run at batch 5 less),
  30% for the transformer architectures.
* ``predict``: images x the forward FLOPs x the inputs of the multi-scale + flip test
  (:data:`PREDICT_FORWARDS`), at the same share.
* ``evaluate``: images / :data:`EVALUATE_RATE` (CPU work).
"""

from __future__ import annotations

from samwsss.reproduce.plan import TTA_SCALES, Step
from samwsss.segnets.registry import ARCHS, family

#: The device the estimates assume.
ASSUMED_DEVICE = "one H100 SXM (989 TFLOP/s dense bf16)"
#: Dense bf16 peak of the assumed device, FLOP/s.
PEAK_FLOPS = 989e12
#: The share of the peak the training and predict estimates assume, per architecture
#: family (``samwsss.segnets.registry.family``); others get ``"default"``.
UTILISATION: dict[str, float] = {"deeplab": 0.10, "default": 0.30}
#: Labelling images/s: ``(route, protocol) -> (rate, source)``.
LABEL_RATES: dict[tuple[str, str], tuple[float, str]] = {
    ("text-input", "default"): (18.0, "public Grounded-SAM H100 figure (design notes 6), bf16"),
    ("zero-shot", "default"): (17.0, "Grounded-SAM H100 figure + RAM++'s FLOP share, bf16"),
    ("text-input", "paper"): (9.0, "Grounded-SAM H100 figure at float32 (half the bf16 peak)"),
    ("zero-shot", "paper"): (8.5, "Grounded-SAM + RAM++ H100 figure at float32"),
}
#: ``(forward, forward + backward)`` TFLOP of one training image at the recipe crop, from
#: ``python -m benchmarks.segmenter_training --flops`` (torch.utils.flop_counter, math
#: attention; counted 2026-12-07, CPU, fp32: DeepLabV2 at 321, EoMT at 518, others at 512).
#: For SegFormer-B5 and EoMT the counter's backward (2.10 and 6.61) is 9.5x and 4.9x the
#: forward, against the usual 2x: its convolution-backward rule does not divide by the
#: groups of their depthwise convolutions. Their step is taken as 3x the forward instead.
TRAIN_TFLOP: dict[str, tuple[float, float]] = {
    "deeplabv2": (0.151, 0.451),
    "segformer-b5": (0.220, 0.660),
    "mask2former-swin-large": (0.502, 1.502),
    "eomt-dinov2-large": (1.344, 4.032),
}
#: Images/s of ``samwsss evaluate`` (CPU).
EVALUATE_RATE = 200.0
#: Forward passes of one image in ``predict`` relative to one crop-sized forward: the sum of
#: the squared scales (each scale's area) x 2 (flip) x 1.8 (a 500x375 VOC image over a
#: 321x321 crop).
PREDICT_FORWARDS = sum(float(s) ** 2 for s in TTA_SCALES.split(",")) * 2 * 1.8


def _option(argv: tuple[str, ...], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def _train_size(step: Step, segmenter: str, dataset: str) -> tuple[int, int]:
    """``(iterations, global batch)`` of a training step: its options, else the recipe."""
    from samwsss.training.config import KIND_DEFAULTS  # imports torch

    card = ARCHS.get(segmenter)
    if card is not None and card.recipe is not None:
        iterations, batch = card.recipe.iterations, card.recipe.batch_size
    else:
        batch, iterations = KIND_DEFAULTS.get(dataset, KIND_DEFAULTS["voc"])
    given_iterations = _option(step.argv, "--iterations")
    given_batch = _option(step.argv, "--batch-size")
    return int(given_iterations or iterations), int(given_batch or batch)


def estimate_seconds(step: Step, segmenter: str, dataset: str = "voc") -> tuple[float | None, str]:
    """``(seconds, where the figure comes from)`` for ``step`` on :data:`ASSUMED_DEVICE`;
    ``seconds`` is ``None`` when no figure exists."""
    if step.kind == "label":
        protocol = _option(step.argv, "--preset") or "default"
        found = LABEL_RATES.get((step.argv[0], protocol))
        if found is None or step.images is None:
            return None, f"no GPU figure for {step.argv[0]} with --preset {protocol}"
        rate, source = found
        return step.images / rate, f"{step.images} images at {rate:g} images/s ({source})"
    if step.kind == "evaluate":
        images = step.images or 0
        return images / EVALUATE_RATE, f"{images} masks at {EVALUATE_RATE:g} masks/s (CPU)"
    tflop = TRAIN_TFLOP.get(segmenter)
    if tflop is None or tflop[1] <= 0:
        return None, f"no FLOP count for {segmenter} (benchmarks.segmenter_training --flops)"
    forward, step_flops = tflop
    share = UTILISATION.get(family(segmenter), UTILISATION["default"])
    flops = PEAK_FLOPS * share
    if step.kind == "train":
        iterations, batch = _train_size(step, segmenter, dataset)
        seconds = iterations * batch * step_flops * 1e12 / flops
        return seconds, (
            f"{iterations} iterations x batch {batch} x {step_flops:.2f} TFLOP/image "
            f"(benchmarks.segmenter_training --flops) at {share:.0%} of the bf16 peak"
        )
    images = step.images or 0
    seconds = images * forward * PREDICT_FORWARDS * 1e12 / flops
    return seconds, (
        f"{images} images x {forward:.2f} TFLOP x {PREDICT_FORWARDS:.1f} crop-sized forwards "
        f"(scales {TTA_SCALES} + flip) at {share:.0%} of the bf16 peak"
    )


def format_duration(seconds: float) -> str:
    """``"3 h 20 min"``, ``"12 min"``, ``"40 s"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
