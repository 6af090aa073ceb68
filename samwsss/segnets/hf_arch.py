"""Helpers shared by the transformers-based architectures (SegFormer, Mask2Former, EoMT).

* :class:`HFSegmenterArch`: their common base (normalisation, checkpoint description,
  rebuild, parameter groups), so each architecture's module is about its model.
* :func:`unwrap_model`: the network inside a DDP / ``torch.compile`` wrapper.
* :func:`init_config`: the ``config.json`` of an ``init`` (hub id or local folder) as a
  transformers config, read before any weights are.
* :func:`refuse_segmentation_init`: the WSSS protocol's guard: weights trained on
  segmentation data are refused unless the caller allows them explicitly.
* :func:`global_normalizers`: loss normalisers summed over every process and divided by
  the world size, so that DDP's gradient averaging gives the global-batch gradient.
* :func:`split_param_groups`: backbone / head x decay / no-decay optimiser groups.
* :func:`config_to_json` / :func:`load_weights_into`: checkpoint-friendly descriptions.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samwsss.checks import check_count
from samwsss.imagenet import IMAGENET_MEAN, IMAGENET_STD
from samwsss.segnets.arch import SegmentationArch

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: Architecture class-name endings of models trained on segmentation data.
_SEGMENTATION_HEADS = (
    "ForSemanticSegmentation",
    "ForUniversalSegmentation",
    "ForInstanceSegmentation",
    "ForPanopticSegmentation",
    "ForMaskGeneration",
    "ForImageSegmentation",
)
#: Model types that exist only as segmentation models.
_SEGMENTATION_MODEL_TYPES = ("mask2former", "maskformer", "oneformer", "eomt", "upernet")
#: (number of labels, a label name) pairs that identify segmentation data sets' label maps:
#: Cityscapes (19, road), PASCAL VOC (21, aeroplane), PASCAL Context (59/60), COCO
#: panoptic (133), ADE20K (150, wall), COCO-Stuff (171/182).
_SEGMENTATION_LABEL_SETS = {
    19: {"road", "sidewalk"},
    21: {"aeroplane", "background"},
    59: {"aeroplane"},
    60: {"aeroplane", "background"},
    133: {"person"},
    150: {"wall"},
    171: {"person"},
    182: {"person"},
}

INIT_NONE = ("none", "")


def is_random_init(init: str | None) -> bool:
    """``True`` for ``None``/``"none"``/``""`` (a randomly initialised network)."""
    return init is None or str(init).strip().lower() in INIT_NONE


def init_config(init: str | os.PathLike[str]) -> Any:
    """The transformers config of ``init`` (a hub id or a local folder with ``config.json``).

    Raises:
        ValueError: a local path without ``config.json`` (the message says what is needed).
    """
    from transformers import AutoConfig

    path = Path(init)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"init {str(init)!r} has no config.json; pass a folder written by a transformers "
                "model's save_pretrained (or a hub id such as 'microsoft/swin-large-patch4-"
                "window12-384-in22k')"
            )
        return AutoConfig.from_pretrained(path)
    return AutoConfig.from_pretrained(str(init))


def segmentation_evidence(config: Any) -> str | None:
    """Why ``config`` looks like a model trained on segmentation data (``None``: it does not).

    Looks at ``architectures`` (``*ForSemanticSegmentation``, ``*ForUniversalSegmentation``,
    ...), ``model_type`` (``mask2former``, ``eomt``, ...) and ``id2label`` (the label map of
    a segmentation data set: VOC, ADE20K, Cityscapes, COCO panoptic/stuff).
    """
    for name in getattr(config, "architectures", None) or ():
        if str(name).endswith(_SEGMENTATION_HEADS):
            return f"its config.json names the architecture {name}"
    model_type = str(getattr(config, "model_type", ""))
    if model_type in _SEGMENTATION_MODEL_TYPES:
        return f"its model_type is {model_type!r}, a segmentation model"
    id2label = getattr(config, "id2label", None) or {}
    names = {str(v).strip().lower() for v in id2label.values()}
    signature = _SEGMENTATION_LABEL_SETS.get(len(id2label))
    if signature and signature & names:
        return f"its id2label has {len(id2label)} labels like a segmentation data set's ({', '.join(sorted(signature & names))})"
    return None


def refuse_segmentation_init(config: Any, init: str, allow_segmentation_init: bool) -> None:
    """Raise unless ``init`` is free of segmentation pretraining (or the caller allows it).

    Raises:
        ValueError: ``init`` looks trained on segmentation data and
            ``allow_segmentation_init`` is false; the message says how to allow it.
    """
    evidence = segmentation_evidence(config)
    if evidence is None:
        return
    if allow_segmentation_init:
        logger.warning(
            "init %s looks trained on segmentation data (%s); using it as asked: the "
            "results leave the WSSS protocol",
            init,
            evidence,
        )
        return
    raise ValueError(
        f"init {init!r} looks trained on segmentation data ({evidence}); the WSSS protocol "
        "allows image-classification or self-supervised pretraining only. Pass an ImageNet or "
        "self-supervised backbone, or allow_segmentation_init=True (--allow-segmentation-init) "
        "to use it anyway (the results are then not WSSS results)"
    )


def config_to_json(config: Any) -> dict[str, Any]:
    """A transformers config as a JSON-safe dict (``to_json_string`` round trip)."""
    return dict(json.loads(config.to_json_string(use_diff=False)))


def label_fields(num_classes: int) -> dict[str, Any]:
    """The config values of ``num_classes`` classes named by their index
    (``num_labels`` and ``id2label``)."""
    return {"num_labels": num_classes, "id2label": {i: str(i) for i in range(num_classes)}}


def unwrap_model(model: nn.Module) -> Any:
    """The network inside a DDP (``.module``) and/or ``torch.compile`` (``._orig_mod``)
    wrapper; ``model`` itself when it is not wrapped."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def global_normalizers(local: torch.Tensor, world_size: int = 1) -> torch.Tensor:
    """Loss normalisers of the global batch, per process.

    Args:
        local: float tensor of this process's normaliser(s) (valid pixels, target masks, ...).
        world_size: processes sharing the global batch. With more than one, ``local`` is
            summed over them (``torch.distributed.all_reduce``; a process group must exist).

    Returns:
        ``global_sum / world_size``: dividing this process's summed loss by it and letting
        DDP average the gradients gives the gradient of ``global_loss_sum / global_sum``.
    """
    import torch.distributed as dist

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    total = local.detach().clone()
    if world_size > 1:
        dist.all_reduce(total)
    return total / world_size


def split_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float,
    is_backbone: Callable[[str], bool],
    extra_no_decay: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Four optimiser groups: backbone / head, each with and without weight decay.

    Norm layers (LayerNorm, GroupNorm, batch norm: weight and bias) and embedding tables
    (``nn.Embedding``, and parameters whose name contains one of ``extra_no_decay``,
    e.g. ``relative_position_bias_table``) get no weight decay, as Mask2Former's and
    mmsegmentation's SegFormer recipes set them; every other parameter (biases included)
    decays.

    Returns:
        Non-empty groups among ``backbone``, ``backbone_no_decay``, ``head``,
        ``head_no_decay``, each with ``params``, ``name``, ``lr``, ``lr_mult`` and
        ``weight_decay``.
    """
    from torch import nn

    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
    no_decay_params: set[int] = set()
    for module in model.modules():
        if isinstance(module, norm_types) or isinstance(module, nn.Embedding):
            no_decay_params.update(id(p) for p in module.parameters(recurse=False))
    extras = tuple(extra_no_decay)
    groups: dict[str, list[nn.Parameter]] = {
        "backbone": [],
        "backbone_no_decay": [],
        "head": [],
        "head_no_decay": [],
    }
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "backbone" if is_backbone(name) else "head"
        no_decay = id(parameter) in no_decay_params or any(key in name for key in extras)
        groups[part + ("_no_decay" if no_decay else "")].append(parameter)
    result = []
    for group_name, params in groups.items():
        if not params:
            continue
        mult = backbone_lr_mult if group_name.startswith("backbone") else 1.0
        result.append(
            {
                "params": params,
                "name": group_name,
                "lr": lr * mult,
                "lr_mult": mult,
                "weight_decay": 0.0 if group_name.endswith("_no_decay") else weight_decay,
            }
        )
    return result


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` as an int >= 1 (background included).

    Raises:
        ValueError: not an integer >= 1.
    """
    return check_count("num_classes", num_classes, 1)


def check_architecture(architecture: Any, kind: str) -> dict[str, Any]:
    """The ``config`` dict of an :meth:`architecture` description of ``kind``.

    Raises:
        ValueError: not a mapping of that kind with a ``config`` dict.
    """
    if (
        not isinstance(architecture, Mapping)
        or architecture.get("arch") != kind
        or not isinstance(architecture.get("config"), Mapping)
    ):
        found = (
            f"arch {architecture.get('arch')!r}"
            if isinstance(architecture, Mapping)
            else type(architecture).__name__
        )
        raise ValueError(
            f"not a {kind} architecture description (found {found}); expected "
            f"{{'arch': {kind!r}, 'config': {{...}}}} as written by architecture()"
        )
    return dict(architecture["config"])


class HFSegmenterArch(SegmentationArch):
    """What the transformers-based architectures share behind :class:`SegmentationArch`.

    A subclass sets ``name`` (its family, also the ``"arch"`` of :meth:`architecture`),
    returns its transformers classes from :meth:`model_classes`, says which parameters
    are the pretrained backbone's (:meth:`is_backbone`) and which besides norms and
    ``nn.Embedding`` tables take no weight decay (``no_decay_names``), and implements
    ``build``, ``loss`` and ``logits``. Inputs are normalised with ImageNet's mean and std
    (Swin, MiT and DINOv2 pretraining); any input size works unless a subclass sets
    ``fixed_input_size``.
    """

    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    fixed_input_size = False
    #: Parameter-name parts without weight decay besides norms and ``nn.Embedding`` tables.
    no_decay_names: tuple[str, ...] = ()

    @abstractmethod
    def model_classes(self) -> tuple[Any, Any]:
        """The transformers ``(config class, model class)`` of this architecture."""

    @abstractmethod
    def is_backbone(self, parameter: str) -> bool:
        """Whether the parameter named ``parameter`` (in the unwrapped model) belongs to the
        pretrained backbone, trained at ``lr * backbone_lr_mult``."""

    def new_model(self, config: Any) -> Any:
        """A randomly initialised float32 model (of :meth:`model_classes`) of ``config``."""
        _, model_class = self.model_classes()
        return model_class(config).float()

    def load_whole(self, init: str, num_classes: int, **overrides: Any) -> nn.Module:
        """The whole float32 model of the segmentation checkpoint ``init`` (allowed by the
        caller) with ``num_classes`` classes: a class head of another size is
        re-initialised. ``overrides`` are further config values."""
        import torch

        _, model_class = self.model_classes()
        logger.info("loading the whole %s (its head included) from %s", self.name, init)
        return model_class.from_pretrained(
            init,
            dtype=torch.float32,
            ignore_mismatched_sizes=True,
            **label_fields(num_classes),
            **overrides,
        )

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        """``{"arch": name, "config": <the model's transformers config as a dict>}``."""
        return {"arch": self.name, "config": config_to_json(unwrap_model(model).config)}

    def rebuild(self, architecture: Mapping[str, Any]) -> nn.Module:
        """A randomly initialised model of :meth:`architecture`'s description."""
        config_class, _ = self.model_classes()
        return self.new_model(config_class.from_dict(check_architecture(architecture, self.name)))

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float
    ) -> list[dict[str, Any]]:
        """The backbone (:meth:`is_backbone`) at ``lr * backbone_lr_mult``, the rest at
        ``lr``; no weight decay on norms, ``nn.Embedding`` tables and ``no_decay_names``
        (see :func:`split_param_groups`)."""
        return split_param_groups(
            unwrap_model(model),
            lr,
            weight_decay,
            backbone_lr_mult,
            is_backbone=self.is_backbone,
            extra_no_decay=self.no_decay_names,
        )
