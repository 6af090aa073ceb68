"""Tiny random SAM models on disk, for tests that must not download anything.

Each builder writes a model in its real on-disk format and returns the path, so tests
exercise the same loading code as real weights:

* :func:`build_tiny_sam` — transformers ``SamModel`` + ``SamProcessor``
  (``save_pretrained``), the DESIGN.md section 3 recipe (ViT hidden 32, 2 layers,
  image size 256, processor longest edge 256 padded to 256x256).
* :func:`build_tiny_sam_hq` — the same for ``SamHQModel`` (``vit_dim`` 32).
* :func:`build_tiny_sam2` — ``Sam2Model`` + ``Sam2Processor`` with a 4-stage Hiera of
  widths 16/32/64/128 at image size 256.
* :func:`build_tiny_official_sam` — a ``segment_anything.modeling.Sam`` with tiny sizes,
  saved as a plain state dict ``.pth`` like ``sam_vit_h_4b8939.pth``.

Weights are re-drawn from a seeded generator with fan-in scaling (the library's own
initialisation leaves the SAM logits at ~1e-5, which makes thresholded masks flip on
rounding noise) and buffers drawn at construction (positional encodings) come from a
seeded RNG, so every builder writes identical files for a given ``seed`` (the global RNG
is left untouched). Each takes well under a second on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tests.torch_fixtures import one_torch_thread as single_torch_thread  # noqa: F401

if TYPE_CHECKING:
    from samwsss.detections import Detections

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


def tiny_sam_config(model_type: str = "sam") -> object:
    """The tiny transformers config of ``model_type`` ``"sam"`` or ``"sam_hq"``."""
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        output_channels=32,
        image_size=TINY_IMAGE_SIZE,
        window_size=4,
        global_attn_indexes=[1],
        mlp_dim=64,
        num_pos_feats=16,
    )
    prompt = dict(hidden_size=32, image_size=TINY_IMAGE_SIZE, mask_input_channels=8)
    decoder = dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
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


def _tiny_sam_image_processor() -> object:
    from transformers import SamImageProcessor

    return SamImageProcessor(
        size={"longest_edge": TINY_IMAGE_SIZE},
        pad_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        mask_size={"longest_edge": TINY_IMAGE_SIZE // 4},
        mask_pad_size={"height": TINY_IMAGE_SIZE // 4, "width": TINY_IMAGE_SIZE // 4},
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
    SamProcessor(_tiny_sam_image_processor()).save_pretrained(directory)
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
    SamHQProcessor(_tiny_sam_image_processor()).save_pretrained(directory)
    return directory


def tiny_sam2_config() -> object:
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
        backbone_feature_sizes=[[side // 4, side // 4], [side // 8, side // 8], [side // 16, side // 16]],
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
TINY_OFFICIAL_SPEC: dict[str, object] = {
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


def build_official_sam_module(spec: dict[str, object]) -> torch.nn.Module:
    """A ``segment_anything.modeling.Sam`` with the sizes in ``spec`` (see TINY_OFFICIAL_SPEC).

    Independent of samwsss so tests can compare the library's loader against it.
    """
    from functools import partial

    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    image_size = int(spec["image_size"])  # type: ignore[arg-type]
    patch = int(spec["patch_size"])  # type: ignore[arg-type]
    prompt_dim = int(spec["prompt_embed_dim"])  # type: ignore[arg-type]
    grid = image_size // patch
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=int(spec["encoder_depth"]),  # type: ignore[arg-type]
            embed_dim=int(spec["encoder_embed_dim"]),  # type: ignore[arg-type]
            img_size=image_size,
            mlp_ratio=float(spec["encoder_mlp_ratio"]),  # type: ignore[arg-type]
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=int(spec["encoder_num_heads"]),  # type: ignore[arg-type]
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(spec["encoder_global_attn_indexes"]),  # type: ignore[arg-type]
            window_size=int(spec["encoder_window_size"]),  # type: ignore[arg-type]
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=int(spec["mask_in_chans"]),  # type: ignore[arg-type]
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=int(spec["decoder_depth"]),  # type: ignore[arg-type]
                embedding_dim=prompt_dim,
                mlp_dim=int(spec["decoder_mlp_dim"]),  # type: ignore[arg-type]
                num_heads=int(spec["decoder_num_heads"]),  # type: ignore[arg-type]
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=int(spec["iou_head_hidden_dim"]),  # type: ignore[arg-type]
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


# -- inputs for masker tests ----------------------------------------------------------------
def random_image(size: tuple[int, int], seed: int) -> np.ndarray:
    """A seeded random ``(H, W, 3)`` uint8 RGB image of ``size`` ``(H, W)``."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def random_boxes(size: tuple[int, int], count: int, seed: int) -> torch.Tensor:
    """``(count, 4)`` float32 xyxy boxes inside an image of ``size`` ``(H, W)``, >= 2 px wide."""
    height, width = size
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, width, (count, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (count, 2)), axis=1)
    x[:, 1] = np.minimum(np.maximum(x[:, 1], x[:, 0] + 2), width)
    y[:, 1] = np.minimum(np.maximum(y[:, 1], y[:, 0] + 2), height)
    return torch.tensor(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1), dtype=torch.float32)


def make_detections(
    size: tuple[int, int], boxes: torch.Tensor, classes: list[int] | None = None
) -> Detections:
    """Boxer-style :class:`~samwsss.detections.Detections` (no masks) for ``boxes``."""
    from samwsss.detections import Detections

    count = len(boxes)
    classes = classes if classes is not None else [1 + i % 3 for i in range(count)]
    return Detections(
        image_size=size,
        boxes=boxes,
        box_scores=torch.linspace(0.9, 0.5, count),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        prompts=tuple(f"class {c}" for c in classes),
        data={"source": "test"},
    )


def assert_same_masks(actual: torch.Tensor, expected: torch.Tensor, max_fraction: float = 1e-4) -> None:
    """Bool masks of equal shape that differ in at most ``max_fraction`` of their pixels.

    Batched and single-image runs can differ by ~1e-7 in a logit (BLAS blocking depends
    on the batch size); a random model has pixels whose logit is that close to the
    threshold 0, so a handful of pixels may flip. Anything more is a real difference.
    """
    assert actual.dtype == torch.bool and expected.dtype == torch.bool
    assert actual.shape == expected.shape, f"{tuple(actual.shape)} != {tuple(expected.shape)}"
    if actual.numel() == 0:
        return
    differing = int((actual != expected).sum())
    assert differing <= max_fraction * actual.numel(), (
        f"{differing} of {actual.numel()} mask pixels differ"
    )
