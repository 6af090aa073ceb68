"""What every model stage holds besides its model: device, compute dtype, source, hub options.

:class:`ModelStage` is the base of the stages that own a model (Grounding DINO boxer, SAM
masker, SAM 3 segmenter, RAM tagger): ``to(device)``, :attr:`~ModelStage.device`,
:attr:`~ModelStage.compute_dtype` (the given dtype, else bfloat16 on CUDA and float32
elsewhere), :attr:`~ModelStage.max_images_per_batch`, :attr:`~ModelStage.source` (the
checkpoint and revision it was loaded from) and :attr:`~ModelStage.host_resize`.
:class:`SharedStage` is the base of the taggers that run another stage's model (Grounding
DINO and SAM 3 presence taggers). :data:`HUB_KEYWORDS` names the ``from_pretrained``
keywords that say where files are on the Hugging Face Hub.

This module imports no torch at import time (the registry reads :data:`HUB_KEYWORDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from samwsss.checks import check_count, parse_dtype
from samwsss.stages.contracts import ModelSource

if TYPE_CHECKING:
    import torch
    from typing_extensions import Self

    from samwsss.stages.contracts import Stage
    from samwsss.stages.pil_resize import PilResize

#: ``from_pretrained`` keywords that say where a checkpoint's files are (passed on when only
#: a config is read).
HUB_KEYWORDS = (
    "revision",
    "cache_dir",
    "local_files_only",
    "token",
    "force_download",
    "proxies",
    "subfolder",
)


def hub_options(load_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`HUB_KEYWORDS` among ``load_kwargs`` (for reading a config alone)."""
    return {key: value for key, value in load_kwargs.items() if key in HUB_KEYWORDS}


class ModelStage:
    """Device, compute dtype, source and batch limit of a stage that owns ``self.model``.

    A subclass sets ``self.model``, calls :meth:`_set_precision` and then ``to(device)`` in
    its ``__init__``; it overrides :meth:`_moved` to move more than the model (SAM 3's text
    cache), and ``device``/``to``/``source`` where its model lives elsewhere (the masker's
    backend) or it names its weights otherwise (RAM).

    Attributes:
        checkpoint: hub id, folder or file the weights came from (``None``: given a model).
        revision: the hub revision asked for, else ``None``.
        image_resize: ``"torch"`` or ``"pil"`` for a stage that has the choice, else ``None``.
        pil_resize: the stage's own PIL resize (used when ``image_resize == "pil"``).
    """

    model: Any
    checkpoint: str | None = None
    revision: str | None = None
    image_resize: str | None = None
    pil_resize: PilResize | None = None
    _device: torch.device
    _dtype: torch.dtype | None = None
    _max_images_per_batch: int | None = None

    def _set_precision(
        self, dtype: torch.dtype | str | None, max_images_per_batch: int | None = None
    ) -> None:
        """Check and keep ``max_images_per_batch`` (``None``: by device), then ``dtype``.

        Raises:
            ValueError: ``max_images_per_batch`` < 1, or an unknown ``dtype``.
        """
        if max_images_per_batch is not None:
            self._max_images_per_batch = check_count("max_images_per_batch", max_images_per_batch)
        self._dtype = parse_dtype(dtype)

    def to(self, device: torch.device | str) -> Self:
        """Move the model to ``device``; returns ``self``."""
        import torch

        self._device = torch.device(device)
        self.model.to(self._device)
        self._moved()
        return self

    def _moved(self) -> None:
        """Called by :meth:`to` once the model is on :attr:`device` (nothing by default)."""

    @property
    def device(self) -> torch.device:
        """Device of the model (and of the returned tensors)."""
        return self._device

    @property
    def compute_dtype(self) -> torch.dtype:
        """Autocast dtype: the given ``dtype``, else bfloat16 on CUDA, float32 elsewhere."""
        import torch

        if self._dtype is not None:
            return self._dtype
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    @property
    def max_images_per_batch(self) -> int:
        """Images per image-encoder forward: the given value, else 8 on CUDA, 1 elsewhere
        (a CPU gains no speed from batching, only memory)."""
        if self._max_images_per_batch is not None:
            return self._max_images_per_batch
        return 8 if self.device.type == "cuda" else 1

    @property
    def source(self) -> ModelSource:
        """Where the weights came from (hub id or folder, and the revision asked for)."""
        return ModelSource(self.checkpoint or type(self.model).__name__, self.revision)

    @property
    def host_resize(self) -> PilResize | None:
        """The PIL resize this stage computes on the host (``image_resize == "pil"``), else
        ``None``."""
        return self.pil_resize if self.image_resize == "pil" else None


class SharedStage:
    """Source, device and ``to`` of a stage that runs another stage's model (a tagger over
    the pipeline's boxer or segmenter): the subclass names it in :attr:`shared`."""

    #: Written before the shared stage's weights in :attr:`source` (``name(weights)``).
    stage_name: ClassVar[str]
    #: A shared stage resizes nothing itself.
    host_resize: PilResize | None = None

    @property
    def shared(self) -> Stage:
        """The stage whose model this one runs."""
        raise NotImplementedError

    @property
    def source(self) -> ModelSource:
        """The shared stage's weights, as ``stage_name(weights)``."""
        weights = self.shared.source
        return ModelSource(f"{self.stage_name}({weights.weights})", weights.revision)

    @property
    def device(self) -> torch.device:
        """The shared stage's device."""
        return self.shared.device

    def to(self, device: torch.device | str) -> Self:
        """Move the shared stage; returns ``self``."""
        self.shared.to(device)
        return self
