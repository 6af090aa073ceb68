"""SAM, SAM-HQ and SAM 2 through transformers (``SamModel``, ``SamHQModel``, ``Sam2Model``).

The model type is read from the checkpoint's ``config.json`` (``model_type`` ``sam``,
``sam_hq``, ``sam2`` or ``sam2_video``; SAM 2.1 hub repositories ship the video config,
whose image part ``Sam2Model`` loads). Preprocessing constants (longest edge, pad size,
mean/std) come from the checkpoint's image processor config.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD
from samwsss.stages.masker_backend import Features, SamBackend, decode_each_image
from samwsss.stages.masker_transforms import InputGeometry, NormalizeFn

logger = logging.getLogger(__name__)

#: config ``model_type`` -> backend family.
MODEL_TYPES: dict[str, str] = {
    "sam": "sam",
    "sam_hq": "sam_hq",
    "sam2": "sam2",
    "sam2_video": "sam2",
}


class TransformersSamBackend(SamBackend):
    """A transformers SAM-family model (``family`` ``"sam"``, ``"sam_hq"`` or ``"sam2"``).

    Decoding: for SAM and SAM 2 every box of the chunk becomes one batch entry with its
    image's features gathered (one decoder call for all images, no padding boxes); for
    SAM-HQ, whose decoder derives per-image high-resolution features from the ViT
    activations, each image is decoded with all its boxes on its own features.
    """

    box_dtype = torch.float64

    def __init__(
        self,
        model: torch.nn.Module,
        family: str,
        geometry: InputGeometry,
        normalize: NormalizeFn,
        source: str = "",
        hq_token_only: bool = False,
    ) -> None:
        if family not in ("sam", "sam_hq", "sam2"):
            raise ValueError(f"family must be 'sam', 'sam_hq' or 'sam2', got {family!r}")
        self.model = model.eval()
        self.family = family
        self.geometry = geometry
        self.normalize = normalize
        self.source = source
        self.hq_token_only = hq_token_only

    @property
    def image_encoder(self) -> torch.nn.Module:
        return self.model.vision_encoder  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> TransformersSamBackend:
        super().to(device)
        if torch.device(device).type == "mps":
            self.box_dtype = torch.float32  # MPS has no float64
        return self

    def encode(self, pixel_values: torch.Tensor) -> Features:
        model = self.model
        if self.family == "sam":
            return (model.get_image_embeddings(pixel_values),)  # type: ignore[operator]
        if self.family == "sam_hq":
            embeddings, intermediate = model.get_image_embeddings(pixel_values)  # type: ignore[operator]
            return (embeddings, intermediate[0])
        return tuple(model.get_image_embeddings(pixel_values))  # type: ignore[operator]

    def decode(
        self,
        features: Features,
        image_index: torch.Tensor,
        boxes: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.family == "sam_hq":
            return self._decode_per_image(features, image_index, boxes, multimask_output)
        gathered = [feature.index_select(0, image_index) for feature in features]
        embeddings: torch.Tensor | list[torch.Tensor] = (
            gathered[0] if self.family == "sam" else gathered
        )
        output = self.model(
            image_embeddings=embeddings,
            input_boxes=boxes[:, None, :],
            multimask_output=multimask_output,
        )
        return output.pred_masks[:, 0], output.iou_scores[:, 0]

    def _decode_per_image(
        self,
        features: Features,
        image_index: torch.Tensor,
        boxes: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def decode_image(
            image: int, image_boxes: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            output = self.model(
                image_embeddings=features[0][image : image + 1],
                intermediate_embeddings=[features[1][image : image + 1]],
                input_boxes=image_boxes[None],
                multimask_output=multimask_output,
                hq_token_only=self.hq_token_only,
            )
            return output.pred_masks[0], output.iou_scores[0]

        return decode_each_image(image_index, boxes, decode_image)


def load_transformers_backend(
    name_or_path: str, *, hq_token_only: bool = False, **hub_kwargs: Any
) -> TransformersSamBackend:
    """Load a SAM / SAM-HQ / SAM 2 checkpoint (hub id or local directory).

    Args:
        name_or_path: hub id (``facebook/sam-vit-huge``) or a ``save_pretrained`` folder.
        hq_token_only: SAM-HQ only: use the HQ mask alone instead of SAM + HQ masks.
        hub_kwargs: passed to every ``from_pretrained`` (``revision``, ``cache_dir``,
            ``local_files_only``, ...).

    Raises:
        ValueError: the checkpoint is not a SAM-family model, or cannot be found.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot load a SAM config from {name_or_path!r} ({error}); give a registered "
            "masker name, a hub id such as 'facebook/sam-vit-huge', a save_pretrained "
            "directory or an official .pth checkpoint"
        ) from error
    family = MODEL_TYPES.get(config.model_type)
    if family is None:
        raise ValueError(
            f"{name_or_path!r} is a {config.model_type!r} model; the masker needs one of "
            f"{', '.join(sorted(MODEL_TYPES))}"
        )
    if family == "sam":
        from transformers import SamModel as model_class
    elif family == "sam_hq":
        from transformers import SamHQModel as model_class  # type: ignore[assignment]
    else:
        from transformers import Sam2Model as model_class  # type: ignore[assignment]
    model = model_class.from_pretrained(name_or_path, **hub_kwargs)
    geometry, normalize = _processor_settings(name_or_path, family, model.config, hub_kwargs)
    logger.info("loaded %s (%s) from %s", type(model).__name__, family, name_or_path)
    return TransformersSamBackend(
        model,
        family,
        geometry,
        normalize,
        source=str(name_or_path),
        hq_token_only=hq_token_only,
    )


def _processor_settings(
    name_or_path: str, family: str, config: object, hub_kwargs: dict[str, Any]
) -> tuple[InputGeometry, NormalizeFn]:
    """Geometry and normalisation from the checkpoint's image processor config."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, **hub_kwargs)
    except (OSError, ValueError) as error:
        side = _model_side(family, config)
        logger.warning(
            "no image processor config in %s (%s); using SAM defaults: side %d, ImageNet mean/std",
            name_or_path,
            error,
            side,
        )
        geometry = InputGeometry("square" if family == "sam2" else "longest", side, (side, side))
        return geometry, NormalizeFn.from_processor_values(IMAGENET_MEAN, IMAGENET_STD, 1 / 255)

    size = processor.size
    if family == "sam2":
        height, width = int(size["height"]), int(size["width"])
        geometry = InputGeometry("square", max(height, width), (height, width))
    else:
        if not getattr(processor, "do_pad", True):
            raise ValueError(
                f"the image processor of {name_or_path!r} has do_pad=False; SAM needs its "
                "inputs padded to pad_size"
            )
        pad = processor.pad_size
        geometry = InputGeometry(
            "longest", int(size["longest_edge"]), (int(pad["height"]), int(pad["width"]))
        )
    normalize = NormalizeFn.from_processor_values(
        processor.image_mean,
        processor.image_std,
        float(processor.rescale_factor),
        do_rescale=bool(processor.do_rescale),
        do_normalize=bool(processor.do_normalize),
    )
    return geometry, normalize


def _model_side(family: str, config: object) -> int:
    if family == "sam2":
        return int(config.prompt_encoder_config.image_size)  # type: ignore[attr-defined]
    return int(config.vision_config.image_size)  # type: ignore[attr-defined]
