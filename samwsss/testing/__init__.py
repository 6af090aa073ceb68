"""Seeded random models in their real on-disk formats, for tests and benchmarks.

Nothing here is downloaded: each builder draws weights from a fixed seed and writes (or
builds) a model through the same loading path as real weights, so a test or benchmark
exercises the code users run. The same seed always writes the same bytes.

* :mod:`samwsss.testing.gdino` — Grounding DINO folders (``save_pretrained``): the tiny
  model of the tests and the full-size Swin-T architecture.
* :mod:`samwsss.testing.sam` — SAM, SAM-HQ and SAM 2 folders (``save_pretrained``), the
  official ``segment_anything`` state dict layout, and full-size SAM ViT-B / ViT-H.
* :mod:`samwsss.testing.ram` — RAM / RAM++ checkpoints in the authors' ``.pth`` layout and
  random taggers, tiny or full-size.

``import samwsss`` does not import this package; the submodules import torch and
transformers (transformers inside the builders), so import them only where a model is
wanted.
"""

from __future__ import annotations

#: Model sizes of the size-parametrised builders: ``tiny`` (the tests' configurations, fast
#: on a CPU) and ``full`` (the released architectures, for GPUs).
SIZES = ("tiny", "full")


def check_size(size: str) -> None:
    """Raise ``ValueError`` unless ``size`` is one of :data:`SIZES`."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
