"""Random-weight models for the pipeline benchmark: tiny ones for CPU, full-size ones for GPUs.

Every builder writes or builds a model through the same loading path as real weights, so
the benchmark times the code users run:

* Grounding DINO and SAM are written with ``save_pretrained`` into a folder that
  ``GroundingDinoBoxer.from_pretrained`` / ``SamMasker.from_pretrained`` (hence
  ``Pipeline.from_config``) load.
* The tiny RAM++ is saved as an official-layout ``.pth`` and loaded with
  ``RAMTagger.from_pretrained``; the full-size RAM++ (Swin-L, 4,585 tags x 51 descriptions)
  is built in memory (writing and re-reading 1.7 GB of random numbers measures nothing).

Sizes:

* ``tiny``: the tests' tiny configurations (``tests.gdino_fixtures``, ``tests.sam_fixtures``,
  ``tests.ram_fixtures``); the Grounding DINO processor's resize edges can be lowered to
  keep a CPU run short.
* ``full``: ``GroundingDinoConfig()`` (Swin-T + BERT-base, d_model 256, 900 queries = the
  grounding-dino-tiny architecture) with the real 800/1333 processor, SAM ViT-H (1280 wide,
  32 layers, 1024x1024 input) and RAM++ Swin-L at 384x384.

Weights are random: the work per forward does not depend on them, but the number of boxes
and tags does, which is why the benchmark calibrates its thresholds (see
``benchmarks.pipeline``). One adjustment makes that possible for Grounding DINO: its class
logits are dot products of two LayerNorm-ed ``d_model``-wide vectors, so with random
weights they spread like ``N(0, d_model)`` and most box scores round to exactly 1.0 in
float32 (a trained model's logits stay in a few units). The builder scales the decoder's
output LayerNorm (which feeds only the class and box heads, not the decoder's own box
refinement) by ``1 / sqrt(d_model)``, giving unit-spread logits that a threshold can cut.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

SIZES = ("tiny", "full")


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")


def write_grounding_dino(
    size: str, directory: Path, shortest_edge: int = 800, longest_edge: int = 1333, seed: int = 0
) -> Path:
    """Write a random Grounding DINO + processor loadable by ``GroundingDinoBoxer.from_pretrained``.

    Args:
        size: ``"tiny"`` (tests' config) or ``"full"`` (``GroundingDinoConfig()``, Swin-T).
        directory: created if missing.
        shortest_edge, longest_edge: the processor's resize (800/1333 is the real one).
        seed: weight seed.
    """
    _check_size(size)
    from transformers import GroundingDinoConfig

    from tests.gdino_fixtures import build_tiny_grounding_dino

    return build_tiny_grounding_dino(
        directory,
        seed=seed,
        shortest_edge=shortest_edge,
        longest_edge=longest_edge,
        config=None if size == "tiny" else GroundingDinoConfig(),
        prepare=temper_class_logits,
    )


def temper_class_logits(model: Any) -> None:
    """Scale a random Grounding DINO's decoder output LayerNorm by ``1 / sqrt(d_model)`` so
    its class logits have about unit spread (see the module docstring); in place."""
    norm = model.model.decoder.layer_norm
    scale = 1.0 / float(np.sqrt(model.config.d_model))
    with torch.no_grad():
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)


def sam_vit_h_config() -> Any:
    """transformers ``SamConfig`` of SAM ViT-H (sam_vit_h_4b8939): 1280 wide, 32 layers."""
    from transformers import SamConfig, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=1280,
        num_hidden_layers=32,
        num_attention_heads=16,
        global_attn_indexes=[7, 15, 23, 31],
    )
    return SamConfig(vision_config=vision)


def write_sam(size: str, directory: Path, seed: int = 0) -> Path:
    """Write a random SAM + processor loadable by ``SamMasker.from_pretrained``.

    ``tiny``: the tests' tiny SAM (256x256 input); ``full``: SAM ViT-H (1024x1024 input).
    """
    _check_size(size)
    if size == "tiny":
        from tests.sam_fixtures import build_tiny_sam

        return build_tiny_sam(directory, seed=seed)
    from transformers import SamModel

    from benchmarks.masker_bench import save_sam_processor

    directory = Path(directory)
    config = sam_vit_h_config()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    model.save_pretrained(directory)
    save_sam_processor(directory, int(config.vision_config.image_size))
    return directory


def class_tag_vocabulary(mapping: Any, num_tags: int, threshold: float = 0.5) -> Any:
    """A ``num_tags``-tag RAM vocabulary whose first tags are one curated tag per class of
    ``mapping`` (so exact matching reaches every class) and the rest neutral fillers."""
    from samwsss.ram.vocabulary import RAMVocabulary

    class_tags = [entry.tags[0] for entry in mapping.classes[1:] if entry.tags]
    if len(class_tags) > num_tags:
        raise ValueError(f"{len(class_tags)} class tags do not fit {num_tags} tags")
    fillers = [f"filler tag {i}" for i in range(num_tags - len(class_tags))]
    tags = tuple(class_tags + fillers)
    return RAMVocabulary(tags, (threshold,) * len(tags), source="benchmark")


def build_ram_tagger(size: str, mapping: Any, directory: Path, seed: int = 0) -> Any:
    """A RAM++ tagger with random weights.

    ``tiny``: the tests' tiny RAM++ (128x128, 7 tags: cat, dog, grass, person, car, table,
    sky) written as an official checkpoint ``directory/ram_plus_tiny.pth`` and loaded with
    ``RAMTagger.from_pretrained``. ``full``: RAM++ Swin-L 384 with 4,585 tags x 51
    descriptions, built in memory, whose vocabulary names one tag per class of ``mapping``.
    """
    _check_size(size)
    from samwsss.ram.tagger import RAMTagger

    if size == "tiny":
        from tests.ram_fixtures import official_state_dict, tiny_config, tiny_vocabulary, write_checkpoint

        config = tiny_config("ram_plus")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = write_checkpoint(directory / "ram_plus_tiny.pth", official_state_dict(config, seed=seed))
        return RAMTagger.from_pretrained(path, vocabulary=tiny_vocabulary(), config=config)

    from samwsss.ram.config import default_config
    from samwsss.ram.model import RAMModel

    config = default_config("ram_plus")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RAMModel(config)
        with torch.no_grad():
            model.label_embed.normal_(0.0, 0.05)
            if model.reweight_scale is not None:
                model.reweight_scale.fill_(float(np.log(1 / 0.07)))
    vocabulary = class_tag_vocabulary(mapping, config.num_tags)
    return RAMTagger(model, vocabulary, name="random ram_plus swin-l")


def scratch_directory(prefix: str = "samwsss-bench-") -> Path:
    """A fresh temporary folder (under ``$TMPDIR``); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR")))
