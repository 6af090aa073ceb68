"""The values options accept, and the defaults shared by the library and the CLI, written
once.

The stage that implements an option checks it against the tuple here; the pipeline
config and the CLI offer the same tuple. Kept free of torch so that ``--help`` is fast.
"""

from __future__ import annotations

#: Grounding DINO prompting (:class:`samwsss.stages.boxer.GroundingDinoBoxer`):
#: one caption per (image, class), the paper; or all of an image's classes in one caption.
PROMPT_MODES = ("per-class", "joint")
#: Overlap rules of :class:`samwsss.stages.merger.MaskMerger`.
MERGE_RULES = ("score", "paper", "area")
#: Tag -> class matching of :class:`samwsss.stages.mapper.TagMapper`.
TAG_MATCHES = ("exact", "paper")
#: SAM output of :class:`samwsss.stages.masker.SamMasker`: the single mask, or the best of three.
MULTIMASK = ("single", "best")
#: Compute dtypes a stage accepts by name (``None`` = the stage's default for its device).
DTYPES = ("bfloat16", "float16", "float32")
#: A pipeline's precision choice: ``auto`` (bfloat16 autocast on CUDA, float32 elsewhere)
#: or one dtype for every stage.
PIPELINE_DTYPES = ("auto", *DTYPES)
#: ``predict --dtype``: ``auto`` (bfloat16 autocast on CUDA, float32 on the CPU) or float32
#: (:attr:`samwsss.training.predict.InferenceOptions.amp` on or off).
PREDICT_DTYPES = ("auto", "float32")
#: ``train-* --dtype`` -> the training config's ``amp`` value
#: (:attr:`samwsss.training.config.TrainConfig.amp`): ``auto`` (bfloat16 autocast on
#: CUDA, float32 on the CPU), bfloat16 autocast on any device, or float32.
TRAIN_AMP_OF_DTYPE = {"auto": "auto", "bfloat16": "bf16", "float32": "none"}
#: How stages resize images for their models: ``torch`` (antialiased torchvision resize on
#: the model's device, fast) or ``pil`` (Pillow on the CPU with each model's original
#: filter and size rounding, bit for bit as the survey authors' code).
IMAGE_RESIZES = ("torch", "pil")
#: Short names accepted for :data:`DTYPES`.
DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
}
#: The two routes of a dataset run.
ROUTES = ("text-input", "zero-shot")
#: Tagger name that reuses the pipeline's Grounding DINO instead of RAM.
GROUNDING_TAGGER = "grounding"
#: Tagger name that reuses the pipeline's SAM 3 segmenter: its presence score per class.
PRESENCE_TAGGER = "sam3-presence"
#: Pipeline presets (:data:`samwsss.pipeline.config.PRESETS`).
PRESET_NAMES = ("default", "paper", "sam3")
#: DataLoader worker processes decoding images ahead of the models in a dataset run, when
#: a library caller builds ``RunOptions`` without ``workers``. The commands' ``--workers``
#: default is the machine's instead: :func:`samwsss.workers.default_workers`.
DEFAULT_WORKERS = 4
