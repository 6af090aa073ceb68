"""The RAM / RAM++ tagger stage and its registry entries.

>>> tagger = RAMTagger.from_pretrained("ram-plus-swin-large-14m").to("cuda")  # doctest: +SKIP
>>> tagger([image_a, image_b])[0].tags                                        # doctest: +SKIP
('dog', 'grass', 'lawn', ...)

Registry (kind ``"tagger"``): ``ram-plus-swin-large-14m`` (RAM++, the default) and
``ram-swin-large-14m`` (RAM, the survey's RAM-14M). ``registry.create("tagger", name,
weights=<local .pth>)`` skips the download; other keyword arguments go to
:meth:`RAMTagger.from_pretrained`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from samwsss.checks import check_choice, check_count
from samwsss.choices import IMAGE_RESIZES
from samwsss.mapping import ClassMapping
from samwsss.ram.checkpoint import (
    OFFICIAL_WEIGHTS,
    download_official_weights,
    infer_variant,
    load_official_checkpoint,
    read_checkpoint,
)
from samwsss.ram.config import VARIANTS, RAMConfig
from samwsss.ram.infer import infer_config
from samwsss.ram.model import RAMModel
from samwsss.ram.preprocess import normalize, preprocess_images
from samwsss.ram.thresholds import mapping_tag_thresholds, resolve_thresholds
from samwsss.ram.vocabulary import RAMVocabulary, load_vocabulary, read_thresholds
from samwsss.released import DEFAULT_TAGGER, TAGGER_MODELS
from samwsss.stages.contracts import ImageBatch, ModelSource, TagResult
from samwsss.stages.model_stage import ModelStage
from samwsss.stages.pil_resize import BICUBIC, PilResize

logger = logging.getLogger(__name__)

ImagesInput = Sequence[np.ndarray] | torch.Tensor


class RAMTagger(ModelStage):
    """Tags images with RAM or RAM++: per image, the tags whose probability passes its threshold.

    Args:
        model: a loaded :class:`RAMModel`.
        vocabulary: its tags (``len == model.config.num_tags``) and official thresholds.
        threshold: global threshold replacing every official one, or ``None``.
        tag_thresholds: ``{tag index: threshold}`` overrides (win over ``threshold``); see
            :func:`samwsss.ram.thresholds.mapping_tag_thresholds` for a mapping file's.
        batch_size: images per forward pass (larger inputs are split).
        name: registry name or checkpoint path (for logs and run manifests).
        image_resize: ``"torch"`` (bilinear with antialiasing on uint8, within one grey
            level of PIL bilinear) or ``"pil"``: the authors' ``image.resize((S, S))``
            (Pillow's default filter, bicubic) before the official normalisation.
        dtype: autocast dtype (``"bfloat16"``, ``"float16"``, ``"float32"``); ``None`` or
            ``"auto"``: bfloat16 on CUDA, float32 elsewhere.
    """

    model: RAMModel
    image_resize: str
    pil_resize: PilResize

    def __init__(
        self,
        model: RAMModel,
        vocabulary: RAMVocabulary,
        *,
        threshold: float | None = None,
        tag_thresholds: Mapping[int, float] | None = None,
        batch_size: int = 16,
        name: str = "ram",
        image_resize: str = "torch",
        dtype: torch.dtype | str | None = None,
    ) -> None:
        if len(vocabulary) != model.config.num_tags:
            raise ValueError(
                f"vocabulary has {len(vocabulary)} tags but the model outputs "
                f"{model.config.num_tags}: use the tag list the checkpoint was trained with"
            )
        self.model = model.eval()
        self.vocabulary = vocabulary
        self.batch_size = check_count("batch_size", batch_size)
        self.name = name
        self.image_resize = check_choice("image_resize", image_resize, IMAGE_RESIZES)
        self.pil_resize = PilResize("ram", "square", model.config.image_size, resample=BICUBIC)
        self._set_precision(dtype)
        self._thresholds = np.zeros(0, dtype=np.float32)
        self.set_thresholds(threshold, tag_thresholds)

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> RAMConfig:
        """The model's :class:`RAMConfig`."""
        return self.model.config

    @property
    def image_size(self) -> int:
        """Input side the images are resized to."""
        return self.model.config.image_size

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return next(self.model.parameters()).device

    @property
    def source(self) -> ModelSource:
        """The registry name (downloaded official weights) or the checkpoint file."""
        return ModelSource(self.name)

    @property
    def thresholds(self) -> np.ndarray:
        """(T,) float32 thresholds in effect (a copy)."""
        return self._thresholds.copy()

    def set_thresholds(
        self, threshold: float | None = None, tag_thresholds: Mapping[int, float] | None = None
    ) -> None:
        """Replace the thresholds in effect: official per tag, then ``threshold``, then
        ``tag_thresholds`` (see :func:`samwsss.ram.thresholds.resolve_thresholds`)."""
        self._thresholds = resolve_thresholds(self.vocabulary.thresholds, threshold, tag_thresholds)

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: ImagesInput) -> torch.Tensor:
        """Images -> (B, 3, S, S) float32 normalised pixels on the model's device.

        Accepts a list of (H, W, 3) uint8 RGB arrays, or an already preprocessed
        (B, 3, S, S) float tensor (moved to the device as it is).
        """
        if isinstance(images, torch.Tensor):
            size = self.image_size
            if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
                raise ValueError(
                    f"preprocessed images must be (B, 3, {size}, {size}), got "
                    f"{tuple(images.shape)}; or pass a list of (H, W, 3) uint8 arrays"
                )
            if not images.is_floating_point():
                raise ValueError(
                    f"preprocessed images must be float (normalised), got {images.dtype}; pass "
                    "uint8 images as a list of (H, W, 3) arrays instead"
                )
            return images.to(self.device, torch.float32)
        if isinstance(images, np.ndarray):
            raise ValueError(
                "images must be a list of (H, W, 3) arrays, got a single array: wrap it in a list"
            )
        if self.image_resize == "pil":
            return self._preprocess_resized([self.pil_resize(image) for image in images])
        return preprocess_images(list(images), self.image_size, self.device)

    def _preprocess_resized(self, resized: Sequence[np.ndarray]) -> torch.Tensor:
        """``(S, S, 3)`` uint8 images resized on the host -> normalised ``(B, 3, S, S)``."""
        stacked = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)
        return normalize(stacked.to(self.device, non_blocking=True))

    @torch.inference_mode()
    def logits(self, images: ImagesInput) -> torch.Tensor:
        """(B, T) float32 logits on the CPU (autocast to :attr:`compute_dtype`)."""
        return self._logits(self.preprocess(images))

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        device = pixels.device
        dtype = self.compute_dtype
        outputs = []
        for start in range(0, pixels.shape[0], self.batch_size):
            chunk = pixels[start : start + self.batch_size]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                outputs.append(self.model(chunk).float().cpu())
        return torch.cat(outputs)

    def probabilities(self, images: ImagesInput) -> torch.Tensor:
        """(B, T) float32 tag probabilities (sigmoid of the logits) on the CPU."""
        return torch.sigmoid(self.logits(images))

    def __call__(self, images: ImagesInput) -> list[TagResult]:
        """Tag a batch: one :class:`TagResult` per image, most probable tag first.

        Args:
            images: list of (H, W, 3) uint8 RGB arrays (any sizes), or a preprocessed
                (B, 3, S, S) float tensor.
        """
        return self._tag_rows(self.probabilities(images).numpy())

    def tag(self, images: ImageBatch) -> list[TagResult]:
        """:meth:`__call__` on a checked batch; images are resized on the CPU, as uploaded
        384x384 inputs cost less than full images."""
        if self.image_resize == "pil":
            pixels = self._preprocess_resized(
                [images.resized(i, self.pil_resize) for i in range(len(images))]
            )
            with torch.inference_mode():
                return self._tag_rows(torch.sigmoid(self._logits(pixels)).numpy())
        arrays = [image.numpy() for image in images.host]
        return self._tag_rows(self.probabilities(arrays).numpy())

    def _tag_rows(self, probabilities: np.ndarray) -> list[TagResult]:
        return [
            TagResult.from_scores(row, self._thresholds, self.vocabulary.tags)
            for row in probabilities
        ]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike[str] = DEFAULT_TAGGER,
        *,
        variant: str | None = None,
        vocabulary: RAMVocabulary | str | os.PathLike[str] | None = None,
        thresholds: str | os.PathLike[str] | Sequence[float] | None = None,
        threshold: float | None = None,
        tag_thresholds: Mapping[int, float] | None = None,
        mapping: ClassMapping | None = None,
        config: RAMConfig | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 16,
        cache_dir: str | os.PathLike[str] | None = None,
        allow_pickle: bool = False,
        image_resize: str = "torch",
        dtype: torch.dtype | str | None = None,
    ) -> RAMTagger:
        """Build a tagger from an official checkpoint.

        Args:
            checkpoint: a registry name (``"ram-plus-swin-large-14m"``, ``"ram-swin-large-14m"``:
                downloaded from the Hugging Face Hub and cached) or the path of an official
                ``.pth`` file.
            variant: ``"ram"`` or ``"ram_plus"``; default: the name's, or read off the file
                (RAM++ checkpoints carry ``reweight_scale``).
            vocabulary: a :class:`RAMVocabulary`, or the path of ``ram_tag_list.txt``;
                ``None`` fetches the official list (see :mod:`samwsss.ram.vocabulary`).
            thresholds: path of ``ram_tag_list_threshold.txt`` or one float per tag,
                replacing the vocabulary's official thresholds; ``None`` keeps/fetches them.
            threshold: global threshold override.
            tag_thresholds: ``{tag index: threshold}`` overrides.
            mapping: a class mapping whose per-tag thresholds apply too
                (:func:`samwsss.ram.thresholds.mapping_tag_thresholds`; ``tag_thresholds``
                win over them).
            config: architecture sizes; default: read off the checkpoint's tensor shapes
                (:func:`samwsss.ram.infer.infer_config`; the official files give the official
                Swin-L configurations). Pass it for a model whose tagging head does not have
                the official 4 attention heads (not readable from the weights).
            device: move the model there.
            batch_size: images per forward pass.
            cache_dir: cache root for the downloads (weights: Hugging Face cache layout;
                vocabulary: ``<cache_dir>/<commit>/``).
            allow_pickle: read the checkpoint with full unpickling (trusted files only).
            image_resize, dtype: see :class:`RAMTagger`.

        Raises:
            ValueError: unknown name, missing file, variant or size mismatches, bad checkpoint
                keys (:class:`samwsss.ram.checkpoint.CheckpointError`).
            OSError: a download failed while offline (the message says what to pass instead).
        """
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} unknown: use one of {VARIANTS}")
        text = os.fspath(checkpoint)
        if text in OFFICIAL_WEIGHTS and not Path(text).exists():
            official = OFFICIAL_WEIGHTS[text]
            if variant is not None and variant != official.variant:
                raise ValueError(
                    f"{text!r} is a {official.variant} checkpoint, not {variant}: drop variant= "
                    "or pick the other name"
                )
            path = download_official_weights(text, cache_dir=cache_dir)
            name = text
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"RAM checkpoint {text!r} is neither a registered name "
                    f"({', '.join(OFFICIAL_WEIGHTS)}) nor an existing file"
                )
            name = str(path)
        state = read_checkpoint(path, allow_pickle=allow_pickle)
        found = infer_variant(state)
        if variant is not None and variant != found:
            raise ValueError(
                f"{path} holds a {found} checkpoint ('reweight_scale' "
                f"{'present' if found == 'ram_plus' else 'absent'}) but variant={variant!r}: "
                "pass the matching variant"
            )
        variant = found

        if not isinstance(vocabulary, RAMVocabulary):
            vocabulary = load_vocabulary(vocabulary, thresholds, cache_dir=cache_dir)
        elif thresholds is not None:
            values = (
                read_thresholds(thresholds)
                if isinstance(thresholds, (str, os.PathLike))
                else tuple(float(t) for t in thresholds)
            )
            vocabulary = RAMVocabulary(vocabulary.tags, values, source=vocabulary.source)

        if config is None:
            config = infer_config(state, num_tags=len(vocabulary), source=str(path))
            logger.info("%s: architecture read off the checkpoint: %s", path, config)
        elif config.variant != variant:
            raise ValueError(
                f"config.variant is {config.variant!r} but {path} is a {variant} checkpoint"
            )
        model = RAMModel(config)
        load_official_checkpoint(model, state, source=str(path))
        del state
        if mapping is not None:
            tag_thresholds = {
                **mapping_tag_thresholds(mapping, vocabulary),
                **(tag_thresholds or {}),
            }
        tagger = cls(
            model,
            vocabulary,
            threshold=threshold,
            tag_thresholds=tag_thresholds or None,
            batch_size=batch_size,
            name=name,
            image_resize=image_resize,
            dtype=dtype,
        )
        if device is not None:
            tagger.to(device)
        return tagger


#: The official RAM / RAM++ weights, by registry name (downloaded on first use; declared
#: in :mod:`samwsss.released`).
MODELS = TAGGER_MODELS
