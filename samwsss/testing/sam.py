"""Random SAM models on disk, in their real formats.

Each builder writes a model in its real on-disk format and returns the path, so callers
exercise the same loading code as real weights:

* :func:`build_tiny_sam` — transformers ``SamModel`` + ``SamProcessor``
  (``save_pretrained``): ViT hidden 32, 2 layers, image size 256, processor longest edge
  256 padded to 256x256.
* :func:`build_tiny_sam_hq` — the same for ``SamHQModel`` (``vit_dim`` 32).
* :func:`build_tiny_sam2` — ``Sam2Model`` + ``Sam2Processor`` with a 4-stage Hiera of
  widths 16/32/64/128 at image size 256.
* :func:`build_tiny_official_sam` — a ``segment_anything.modeling.Sam`` with tiny sizes,
  saved as a plain state dict ``.pth`` like ``sam_vit_h_4b8939.pth``.
* :func:`write_sam_default_init` — any ``SamConfig`` (tiny, ViT-B, ViT-H: :func:`sam_config`)
  with transformers' own initialisation; :func:`write_sam` — the tiny SAM or ViT-H by size.

The ``build_tiny_*`` builders re-draw the weights from a seeded generator with fan-in
scaling (the library's own initialisation leaves the SAM logits at ~1e-5, which makes
thresholded masks flip on rounding noise); buffers drawn at construction (positional
encodings) come from a seeded RNG. Every builder writes identical files for a given
``seed`` and leaves the global RNG untouched. The tiny ones take well under a second on a
CPU.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch

from samwsss.testing import check_size

TINY_IMAGE_SIZE = 256
"""Input side of every tiny model (the processors resize the longest side to this)."""


def randomize_parameters(module: torch.nn.Module, seed: int = 0) -> None:
    """Overwrite every parameter of ``module`` in place with seeded random values.

    Matrices and convolution kernels get ``N(0, 1/fan_in)``; vectors (biases, norm
    scales, embeddings of one row) get ``N(0, 0.1)``, with norm scales centred at 1.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            is_norm = "norm" in type(submodule).__name__.lower()
            for name, parameter in submodule.named_parameters(recurse=False):
                if parameter.ndim >= 2:
                    fan_in = math.prod(parameter.shape[1:])
                    values = torch.randn(parameter.shape, generator=generator) / math.sqrt(fan_in)
                else:
                    values = torch.randn(parameter.shape, generator=generator) * 0.1
                    if is_norm and name == "weight":
                        values = values + 1.0
                parameter.copy_(values.to(parameter.dtype))


def tiny_sam_config(model_type: str = "sam") -> Any:
    """The tiny transformers config of ``model_type`` ``"sam"`` or ``"sam_hq"``."""
    vision: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "output_channels": 32,
        "image_size": TINY_IMAGE_SIZE,
        "window_size": 4,
        "global_attn_indexes": [1],
        "mlp_dim": 64,
        "num_pos_feats": 16,
    }
    prompt: dict[str, Any] = {
        "hidden_size": 32,
        "image_size": TINY_IMAGE_SIZE,
        "mask_input_channels": 8,
    }
    decoder: dict[str, Any] = {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 32,
    }
    if model_type == "sam":
        from transformers import (
            SamConfig,
            SamMaskDecoderConfig,
            SamPromptEncoderConfig,
            SamVisionConfig,
        )

        return SamConfig(
            vision_config=SamVisionConfig(**vision),
            prompt_encoder_config=SamPromptEncoderConfig(**prompt),
            mask_decoder_config=SamMaskDecoderConfig(**decoder),
        )
    if model_type == "sam_hq":
        from transformers import SamHQConfig
        from transformers.models.sam_hq.configuration_sam_hq import (
            SamHQMaskDecoderConfig,
            SamHQPromptEncoderConfig,
            SamHQVisionConfig,
        )

        return SamHQConfig(
            vision_config=SamHQVisionConfig(**vision),
            prompt_encoder_config=SamHQPromptEncoderConfig(**prompt),
            mask_decoder_config=SamHQMaskDecoderConfig(**decoder, vit_dim=32),
        )
    raise ValueError(f"model_type must be 'sam' or 'sam_hq', got {model_type!r}")


def sam_image_processor(side: int = TINY_IMAGE_SIZE) -> Any:
    """A ``SamImageProcessor`` for a model of input ``side`` pixels (masks at ``side / 4``)."""
    from transformers import SamImageProcessor

    return SamImageProcessor(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        mask_size={"longest_edge": side // 4},
        mask_pad_size={"height": side // 4, "width": side // 4},
    )


def build_tiny_sam(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``SamModel`` and its ``SamProcessor`` to ``directory``.

    Returns:
        ``directory`` as a ``Path``; load it with ``SamModel.from_pretrained`` /
        ``SamMasker.from_pretrained``.
    """
    from transformers import SamModel, SamProcessor

    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # buffers drawn at construction
        model = SamModel(tiny_sam_config("sam")).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(directory)
    SamProcessor(sam_image_processor()).save_pretrained(directory)
    return directory


def build_tiny_sam_hq(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``SamHQModel`` and its ``SamHQProcessor`` to ``directory``."""
    from transformers import SamHQModel, SamHQProcessor

    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SamHQModel(tiny_sam_config("sam_hq")).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(directory)
    SamHQProcessor(sam_image_processor()).save_pretrained(directory)
    return directory


def tiny_sam2_config() -> Any:
    """A tiny ``Sam2Config``: Hiera widths 16/32/64/128, image 256, FPN/decoder width 32."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    side = TINY_IMAGE_SIZE
    backbone = Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[side, side],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[
            [side // 4, side // 4],
            [side // 8, side // 8],
            [side // 16, side // 16],
        ],
        fpn_hidden_size=32,
    )
    return Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=32, image_size=side, mask_input_channels=8
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )


def build_tiny_sam2(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``Sam2Model`` and its ``Sam2Processor`` to ``directory``."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Sam2Model(tiny_sam2_config()).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(directory)
    processor = Sam2Processor(
        Sam2ImageProcessor(
            size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
            mask_size={"height": TINY_IMAGE_SIZE // 4, "width": TINY_IMAGE_SIZE // 4},
        )
    )
    processor.save_pretrained(directory)
    return directory


#: Sizes of the tiny official-layout SAM (``segment_anything.modeling`` arguments).
TINY_OFFICIAL_SPEC: dict[str, Any] = {
    "image_size": TINY_IMAGE_SIZE,
    "patch_size": 16,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": (1,),
    "encoder_window_size": 4,
    "encoder_mlp_ratio": 2.0,
    "prompt_embed_dim": 32,
    "mask_in_chans": 8,
    "decoder_depth": 2,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 8,
    "iou_head_hidden_dim": 32,
}
"""``decoder_num_heads`` is 8 as in every released SAM checkpoint (it cannot be read off
a state dict)."""


def build_tiny_official_sam(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random official-layout SAM state dict to ``path`` (a ``.pth`` file).

    The model is assembled from ``segment_anything.modeling`` (``ImageEncoderViT``,
    ``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``) exactly as
    ``segment_anything.build_sam._build_sam`` does, with :data:`TINY_OFFICIAL_SPEC` sizes,
    and saved with ``torch.save(model.state_dict(), path)`` like the released files.
    """
    path = Path(path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_official_sam_module(TINY_OFFICIAL_SPEC)
    randomize_parameters(model, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def build_official_sam_module(spec: dict[str, Any]) -> torch.nn.Module:
    """A ``segment_anything.modeling.Sam`` with the sizes in ``spec`` (see TINY_OFFICIAL_SPEC).

    Built with ``segment_anything`` alone (no samwsss code), so tests can compare the
    library's loader against it.
    """
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    image_size = int(spec["image_size"])
    patch = int(spec["patch_size"])
    prompt_dim = int(spec["prompt_embed_dim"])
    grid = image_size // patch
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=int(spec["encoder_depth"]),
            embed_dim=int(spec["encoder_embed_dim"]),
            img_size=image_size,
            mlp_ratio=float(spec["encoder_mlp_ratio"]),
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=int(spec["encoder_num_heads"]),
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(spec["encoder_global_attn_indexes"]),
            window_size=int(spec["encoder_window_size"]),
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=int(spec["mask_in_chans"]),
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=int(spec["decoder_depth"]),
                embedding_dim=prompt_dim,
                mlp_dim=int(spec["decoder_mlp_dim"]),
                num_heads=int(spec["decoder_num_heads"]),
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=int(spec["iou_head_hidden_dim"]),
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


# -- full-size architectures (benchmarks) ----------------------------------------------------
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


#: Sizes :func:`sam_config` knows: the tiny SAM, ``SamConfig()`` (ViT-B), SAM ViT-H.
SAM_SIZES = ("tiny", "vit-b", "vit-h")


def sam_config(size: str) -> Any:
    """The transformers ``SamConfig`` of ``size``, one of :data:`SAM_SIZES`."""
    if size == "tiny":
        return tiny_sam_config("sam")
    if size == "vit-b":
        from transformers import SamConfig

        return SamConfig()
    if size == "vit-h":
        return sam_vit_h_config()
    raise ValueError(f"size must be one of {', '.join(SAM_SIZES)}, got {size!r}")


def write_sam_default_init(config: Any, directory: str | Path, seed: int = 0) -> Path:
    """Write a ``SamModel`` of ``config`` with transformers' own seeded initialisation and
    its ``SamProcessor`` (input side from the config) to ``directory``; return it."""
    from transformers import SamModel, SamProcessor

    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    model.save_pretrained(directory)
    side = int(config.vision_config.image_size)
    SamProcessor(sam_image_processor(side)).save_pretrained(directory)
    return directory


def write_sam(size: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a random SAM + processor loadable by ``SamMasker.from_pretrained``.

    ``tiny``: :func:`build_tiny_sam` (256x256 input); ``full``: SAM ViT-H (1024x1024 input)
    with transformers' initialisation.
    """
    check_size(size)
    if size == "tiny":
        return build_tiny_sam(directory, seed=seed)
    return write_sam_default_init(sam_vit_h_config(), directory, seed=seed)
