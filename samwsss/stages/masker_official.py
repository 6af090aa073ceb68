"""Meta's original SAM checkpoints (``sam_vit_h_4b8939.pth`` ...) via ``segment_anything``.

``segment-anything`` is an optional extra (``pip install 'samwsss[segment-anything]'``),
imported only when an official checkpoint is loaded.

Loading reads the state dict once (``torch.load(..., weights_only=True)``), reads the
architecture off the tensor shapes (:meth:`OfficialSamSpec.from_state_dict`) and builds
the model: the three released sizes through ``segment_anything.sam_model_registry[type]``
(the package's own builders), any other size (e.g. a tiny test model) from the same
``segment_anything.modeling`` classes with the read-off sizes; then ``load_state_dict``
with ``strict=True`` in both cases.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from samwsss.checkpoints import load_checkpoint, tensor_state
from samwsss.released import OFFICIAL_SAM_CHECKPOINTS, OFFICIAL_SAM_ROOT, official_sam_download
from samwsss.stages.masker_backend import Features, SamBackend, decode_each_image
from samwsss.stages.masker_transforms import InputGeometry, NormalizeFn

logger = logging.getLogger(__name__)

#: Where Meta publishes the released checkpoint files.
OFFICIAL_DOWNLOAD_ROOT = OFFICIAL_SAM_ROOT
#: Released checkpoint file -> segment_anything model type.
OFFICIAL_CHECKPOINTS: dict[str, str] = OFFICIAL_SAM_CHECKPOINTS

_INSTALL_HINT = (
    "official SAM checkpoints need Meta's segment-anything package: "
    "pip install 'samwsss[segment-anything]' (or use a transformers checkpoint such as "
    "'sam-vit-huge', which needs no extra)"
)


def import_segment_anything() -> Any:
    """Import ``segment_anything`` or raise ``ImportError`` saying how to install it."""
    try:
        import segment_anything
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return segment_anything


@dataclass(frozen=True)
class OfficialSamSpec:
    """Architecture sizes of a segment-anything ``Sam`` (arguments of ``_build_sam``)."""

    image_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    encoder_window_size: int = 14
    encoder_mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256

    @classmethod
    def released(cls, model_type: str) -> OfficialSamSpec:
        """The spec of a released model type ``"vit_h"``, ``"vit_l"`` or ``"vit_b"``."""
        if model_type not in RELEASED_SPECS:
            raise ValueError(
                f"unknown segment-anything model type {model_type!r}: use one of "
                f"{', '.join(RELEASED_SPECS)}"
            )
        return RELEASED_SPECS[model_type]

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], decoder_num_heads: int = 8
    ) -> OfficialSamSpec:
        """Read the sizes off an official-layout state dict.

        Everything is determined by tensor shapes except the mask decoder's head count,
        which no weight reveals (8 in every released checkpoint).

        Raises:
            ValueError: a key the official layout always has is missing.
        """
        try:
            patch = state["image_encoder.patch_embed.proj.weight"]
            grid = int(state["image_encoder.pos_embed"].shape[1])
            embed_dim = int(patch.shape[0])
            depth = _count_indexed(state, r"image_encoder\.blocks\.(\d+)\.")
            windows = [
                (int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2
                for i in range(depth)
            ]
            head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
            mlp_dim = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
            prompt_dim = int(state["image_encoder.neck.0.weight"].shape[0])
            mask_in_chans = int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0])
            decoder_depth = _count_indexed(state, r"mask_decoder\.transformer\.layers\.(\d+)\.")
            decoder_mlp = int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
            iou_hidden = int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
        except KeyError as error:
            raise ValueError(
                f"not an official segment-anything SAM state dict: key {error} is missing"
            ) from error
        global_indexes = tuple(i for i, size in enumerate(windows) if size == grid)
        local = {size for size in windows if size != grid}
        if len(local) > 1:
            raise ValueError(f"inconsistent attention window sizes in the checkpoint: {windows}")
        return cls(
            image_size=grid * int(patch.shape[-1]),
            patch_size=int(patch.shape[-1]),
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=global_indexes,
            encoder_window_size=local.pop() if local else 0,
            encoder_mlp_ratio=mlp_dim / embed_dim,
            prompt_embed_dim=prompt_dim,
            mask_in_chans=mask_in_chans,
            decoder_depth=decoder_depth,
            decoder_mlp_dim=decoder_mlp,
            decoder_num_heads=decoder_num_heads,
            iou_head_hidden_dim=iou_hidden,
        )

    def released_type(self) -> str | None:
        """``"vit_h"`` / ``"vit_l"`` / ``"vit_b"`` when this is a released architecture."""
        for name, spec in RELEASED_SPECS.items():
            if spec == self:
                return name
        return None


RELEASED_SPECS: dict[str, OfficialSamSpec] = {
    "vit_h": OfficialSamSpec(),
    "vit_l": OfficialSamSpec(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_b": OfficialSamSpec(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
    ),
}

_TYPE_BY_EMBED_DIM = {spec.encoder_embed_dim: name for name, spec in RELEASED_SPECS.items()}


def _count_indexed(state: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    indexes = {int(m.group(1)) for key in state if (m := regex.match(key))}
    if not indexes:
        raise KeyError(pattern)
    return max(indexes) + 1


def infer_model_type(state: dict[str, torch.Tensor]) -> str | None:
    """``"vit_h"`` / ``"vit_l"`` / ``"vit_b"`` from the image encoder's embed dim, else None."""
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    return _TYPE_BY_EMBED_DIM.get(int(weight.shape[0]))


def build_official_sam(spec: OfficialSamSpec) -> torch.nn.Module:
    """An untrained ``segment_anything.modeling.Sam`` of the given sizes (eval mode).

    Released sizes use ``segment_anything.sam_model_registry`` itself.
    """
    segment_anything = import_segment_anything()
    released = spec.released_type()
    if released is not None:
        return segment_anything.sam_model_registry[released]().eval()
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = spec.image_size // spec.patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.encoder_depth,
            embed_dim=spec.encoder_embed_dim,
            img_size=spec.image_size,
            mlp_ratio=spec.encoder_mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes,
            window_size=spec.encoder_window_size,
            out_chans=spec.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_embed_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=spec.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


def official_download(name_or_url: str) -> tuple[str, Path] | None:
    """``(url, cache file)`` of a checkpoint :func:`resolve_official_checkpoint` downloads:
    an ``http(s)://`` URL or a released file name (``sam_vit_h_4b8939.pth``), cached as
    ``torch.hub.get_dir()/checkpoints/<file name>``; ``None`` for anything else."""
    download = official_sam_download(name_or_url)
    if download is None:
        return None
    url, filename = download
    return url, Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_official_checkpoint(name_or_path: str | Path) -> Path:
    """A local checkpoint path; released file names / URLs are downloaded once and cached.

    Known names (``sam_vit_h_4b8939.pth`` ...) and ``https://`` URLs go to
    ``torch.hub.get_dir()/checkpoints``.

    Raises:
        ValueError: a local path that does not exist and is not a released file name.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    download = official_download(text)
    if download is None:
        raise ValueError(
            f"SAM checkpoint {text!r} not found; give an existing .pth file or one of the "
            f"released names {', '.join(OFFICIAL_CHECKPOINTS)}"
        )
    url, cache = download
    if not cache.is_file():
        logger.info("downloading %s to %s", url, cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cache), progress=False)
        except OSError as error:  # URLError is an OSError
            raise OSError(
                f"could not download {url} ({error}); download it elsewhere and pass the "
                f"local file, or put it at {cache}"
            ) from error
    return cache


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official SAM ``.pth`` (flat, or under ``"model"``/``"state_dict"``).

    Raises:
        CheckpointError (a ``ValueError``): the file holds no SAM state dict.
    """
    expected = (
        "an official segment-anything .pth (sam_vit_h_4b8939.pth, ...: a state dict of tensors)"
    )
    loaded = load_checkpoint(path, kind="SAM", expected=expected)
    return tensor_state(loaded, path, kind="SAM", expected=expected, nested=("model", "state_dict"))


def load_official_sam(
    checkpoint: str | Path,
    model_type: str | None = None,
    spec: OfficialSamSpec | None = None,
    decoder_num_heads: int | None = None,
) -> tuple[torch.nn.Module, OfficialSamSpec]:
    """Build the segment-anything ``Sam`` of ``checkpoint`` and load its weights.

    Args:
        checkpoint: local ``.pth``, released file name or URL.
        model_type: ``"vit_h"`` / ``"vit_l"`` / ``"vit_b"``; inferred from the state dict
            when None. Given for a checkpoint of another size, it raises.
        spec: explicit sizes (overrides ``model_type`` and inference).
        decoder_num_heads: the mask decoder's head count, which no weight reveals: needed
            for a checkpoint whose sizes are not a released model's (every released one
            has 8).

    Raises:
        ValueError: unknown model type, a type that contradicts the weights, weights that
            do not fit the architecture, or a custom architecture without
            ``decoder_num_heads``.
    """
    path = resolve_official_checkpoint(checkpoint)
    state = load_official_state_dict(path)
    if spec is None:
        spec = OfficialSamSpec.from_state_dict(state, decoder_num_heads=decoder_num_heads or 8)
        if spec.released_type() is None and decoder_num_heads is None:
            raise ValueError(
                f"{path.name} holds a SAM of sizes no released model has "
                f"({spec.encoder_embed_dim}-d encoder, {spec.encoder_depth} blocks), and the "
                "mask decoder's head count is not in the weights: pass decoder_num_heads "
                "(8 in every released SAM) to SamMasker.from_pretrained"
            )
        if model_type is not None:
            expected = OfficialSamSpec.released(model_type)
            if spec != expected:
                inferred = spec.released_type() or f"custom ({spec.encoder_embed_dim}-d)"
                raise ValueError(
                    f"model_type {model_type!r} does not match {path.name}, which holds a "
                    f"{inferred} SAM; leave model_type out to infer it"
                )
    model = build_official_sam(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path.name} does not fit the SAM {asdict(spec)}: {error}") from error
    logger.info("loaded official SAM %s from %s", spec.released_type() or "custom", path)
    return model.eval(), spec


class OfficialSamBackend(SamBackend):
    """A segment-anything ``Sam``: same preprocessing, prompts and decoder calls as
    ``SamPredictor`` (one decoder call per image with all of its boxes)."""

    box_dtype = torch.float32
    family = "official"

    def __init__(self, model: torch.nn.Module, source: str = "") -> None:
        self.model = model.eval()
        side = int(model.image_encoder.img_size)  # type: ignore[union-attr,arg-type]
        self.geometry = InputGeometry("longest", side, (side, side))
        self.normalize = NormalizeFn(model.pixel_mean, model.pixel_std)  # type: ignore[arg-type]
        self.source = source

    @property
    def image_encoder(self) -> torch.nn.Module:
        return self.model.image_encoder  # type: ignore[return-value]

    def encode(self, pixel_values: torch.Tensor) -> Features:
        return (self.model.image_encoder(pixel_values),)  # type: ignore[operator]

    def decode(
        self,
        features: Features,
        image_index: torch.Tensor,
        boxes: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        prompt_encoder = self.model.prompt_encoder
        dense_pe = prompt_encoder.get_dense_pe()  # type: ignore[operator,union-attr]

        def decode_image(
            image: int, image_boxes: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            sparse, dense = prompt_encoder(  # type: ignore[operator]
                points=None, boxes=image_boxes, masks=None
            )
            low_res, iou = self.model.mask_decoder(  # type: ignore[operator]
                image_embeddings=features[0][image : image + 1],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            return low_res, iou

        return decode_each_image(image_index, boxes, decode_image)


def load_official_backend(
    checkpoint: str | Path,
    model_type: str | None = None,
    spec: OfficialSamSpec | None = None,
    decoder_num_heads: int | None = None,
) -> OfficialSamBackend:
    """:func:`load_official_sam` wrapped as a masker backend."""
    model, _ = load_official_sam(
        checkpoint, model_type=model_type, spec=spec, decoder_num_heads=decoder_num_heads
    )
    return OfficialSamBackend(model, source=str(checkpoint))
