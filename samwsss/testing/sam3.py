"""Random SAM 3 folders (model + processor), written with ``save_pretrained``.

:func:`build_tiny_sam3` saves a seeded random ``Sam3Model`` (or ``Sam3LiteTextModel``)
and a ``Sam3Processor`` into a folder that loads through the real path
(``Sam3Processor.from_pretrained(dir)``, ``Sam3Model.from_pretrained(dir)``, and so
``Sam3Segmenter.from_pretrained(dir)``). Nothing is downloaded.

The tiny model: ViT width 32 with 2 layers (one windowed, one global), patch 14 on a
112 x 112 input (8 x 8 patches; FPN maps 32/16/8/4), a CLIP text encoder of width 32 and
one layer (LiteText: its MobileCLIP-style encoder, RepMixer blocks included), detector width
32 with one encoder and two decoder layers, 20 queries; masks come out at 32 x 32. The
image processor keeps the released settings except the size (mean/std 0.5, bilinear,
``1 / 255``).

The tokenizer is a ``CLIPTokenizer`` built offline from a byte-level vocabulary: the two
special tokens (``<|startoftext|>`` 0, ``<|endoftext|>`` 1, also the padding) and every
byte, alone and as a word end (``</w>``), with no merges; so any prompt tokenizes, one
token per character. Weights are drawn with fan-in scaling
(:func:`samwsss.testing.sam.randomize_parameters`) so that scores spread over (0, 1)
instead of all sitting at 0.25. The same ``seed`` writes the same files; the global RNG is
left untouched. Building takes a fraction of a second once transformers is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from samwsss.testing import check_size
from samwsss.testing.sam import randomize_parameters

#: Input side of the tiny model (8 x 8 patches of 14 pixels).
TINY_SAM3_IMAGE_SIZE = 112
#: Tokens of the offline vocabulary: 2 specials + 256 bytes + 256 bytes ending a word.
TINY_SAM3_VOCAB_SIZE = 2 + 256 + 256


def tiny_clip_tokenizer() -> Any:
    """A ``CLIPTokenizer`` over single bytes (see the module docstring)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_sam3_config(lite_text: bool = False, image_size: int = TINY_SAM3_IMAGE_SIZE) -> Any:
    """The tiny ``Sam3Config`` (or ``Sam3LiteTextConfig`` when ``lite_text``) for an input
    of ``image_size`` pixels (a multiple of 14; 1008 is the released model's)."""
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    if image_size % 14:
        raise ValueError(f"image_size must be a multiple of the patch size 14, got {image_size}")
    side = image_size
    patches = side // 14
    backbone = Sam3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=side,
        patch_size=14,
        window_size=4,
        global_attn_indexes=[1],
        pretrain_image_size=56,
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone,
        fpn_hidden_size=32,
        backbone_feature_sizes=[[patches * 4] * 2, [patches * 2] * 2, [patches] * 2],
    )
    heads: dict[str, Any] = {
        "geometry_encoder_config": {
            "hidden_size": 32,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "detr_encoder_config": {
            "hidden_size": 32,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "detr_decoder_config": {
            "hidden_size": 32,
            "num_layers": 2,
            "num_queries": 20,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2},
    }
    text: dict[str, Any] = {
        "vocab_size": TINY_SAM3_VOCAB_SIZE,
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
    }
    if lite_text:
        from transformers import Sam3LiteTextConfig

        text.update(num_hidden_layers=3, repmixer_kernel_size=3)
        return Sam3LiteTextConfig(vision_config=vision, text_config=text, **heads)
    from transformers import CLIPTextConfig, Sam3Config

    clip = CLIPTextConfig(**text, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return Sam3Config(vision_config=vision, text_config=clip, **heads)


def build_tiny_sam3(
    directory: str | Path,
    seed: int = 0,
    lite_text: bool = False,
    image_size: int = TINY_SAM3_IMAGE_SIZE,
) -> Path:
    """Write a seeded tiny random SAM 3 (or SAM 3 LiteText) + processor; return the folder.

    ``image_size`` is the processor's square input (112 by default; 1008, the released
    model's, gives the real feature-map and mask sizes: 72 x 72 patches, 288 x 288 masks,
    for benchmarks). The folder holds ``config.json`` (``model_type`` ``sam3`` or ``sam3_lite_text``),
    ``model.safetensors``, ``processor_config.json`` and the tokenizer files.
    """
    from transformers import Sam3ImageProcessor, Sam3Processor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    side = image_size
    image_processor = Sam3ImageProcessor(size={"height": side, "width": side})
    Sam3Processor(image_processor=image_processor, tokenizer=tiny_clip_tokenizer()).save_pretrained(
        directory
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if lite_text:
            from transformers import Sam3LiteTextModel

            model: Any = Sam3LiteTextModel(tiny_sam3_config(lite_text=True, image_size=side))
        else:
            from transformers import Sam3Model

            model = Sam3Model(tiny_sam3_config(image_size=side))
    finally:
        torch.random.set_rng_state(state)
    randomize_parameters(model, seed)
    model.eval().save_pretrained(directory)
    return directory


def write_sam3(size: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a random SAM 3 + processor loadable by ``Sam3Segmenter.from_pretrained``, at the
    released input size (1008 x 1008).

    Args:
        size: ``"tiny"`` (:func:`tiny_sam3_config` at 1008: the real feature-map and mask
            sizes on a 2-layer, 32-wide model) or ``"full"`` (``Sam3Config()``: the released
            ViT + CLIP-L architecture, transformers' own seeded initialisation, ~3.4 GB).
        directory: created if missing.
        seed: weight seed.
    """
    check_size(size)
    if size == "tiny":
        return build_tiny_sam3(directory, seed=seed, image_size=1008)
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    Sam3Processor(
        image_processor=Sam3ImageProcessor(), tokenizer=tiny_clip_tokenizer()
    ).save_pretrained(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Sam3Model(Sam3Config()).eval()
    model.save_pretrained(directory)
    return directory
