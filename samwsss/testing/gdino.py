"""Random Grounding DINO folders (model + processor), written with ``save_pretrained``.

:func:`build_tiny_grounding_dino` saves a seeded random ``GroundingDinoForObjectDetection``
(tiny Swin backbone, tiny BERT, d_model 32, 20 queries, max_text_len 32) and a
``GroundingDinoProcessor`` whose image processor has the real checkpoint's settings
(shortest edge 800, longest edge 1333, ImageNet mean/std) and whose tokenizer reads a
``vocab.txt`` written here. The folder then loads through the real path:
``AutoProcessor.from_pretrained(dir)`` / ``GroundingDinoForObjectDetection.from_pretrained(dir)``
(and so ``GroundingDinoBoxer.from_pretrained(dir)``). Nothing is downloaded.

The vocabulary keeps bert-base-uncased's ids for the tokens the model treats specially
(``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``.`` 1012, ``?`` 1029 — transformers'
Grounding DINO hard-codes 101/102/1012/1029 as phrase delimiters), has every ASCII letter
and digit as a word and as a ``##`` piece (so any lower-case prompt tokenizes), and whole
words for the VOC and COCO class names.

:func:`build_tiny_mm_grounding_dino` does the same for MM-Grounding-DINO (``model_type``
``mm-grounding-dino``, ``MMGroundingDinoForObjectDetection``; LLMDet checkpoints are of this
type too): the same tiny sizes, vocabulary and processor, and a chosen class-head bias.

:func:`write_grounding_dino` is the size-parametrised writer of the benchmarks: ``tiny`` or
``full`` (``GroundingDinoConfig()``: Swin-T + BERT-base, d_model 256, 900 queries, the
grounding-dino-tiny architecture), with the class logits tempered so that a box threshold
can cut them (see :func:`temper_class_logits`).

Typical use in a test module::

    @pytest.fixture(scope="session")
    def tiny_gdino_dir(tmp_path_factory):
        return build_tiny_grounding_dino(tmp_path_factory.mktemp("gdino"))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samwsss.testing import check_size

#: The real IDEA-Research/grounding-dino-tiny preprocessor settings (preprocessor_config.json).
REAL_PROCESSOR_SETTINGS: dict[str, object] = {
    "size": {"shortest_edge": 800, "longest_edge": 1333},
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "rescale_factor": 1 / 255,
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_pad": True,
    "resample": 2,  # PIL bilinear
}

_PUNCTUATION = "!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
_WORDS = (
    "aeroplane airplane bicycle bird boat bottle bus car cat chair cow dining table dog horse "
    "motorbike motorcycle person potted pottedplant plant sheep sofa train tv monitor wild "
    "traffic light fire hydrant stop sign parking meter bench elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports ball kite baseball "
    "bat glove skateboard surfboard tennis racket wine glass cup fork knife spoon bowl banana "
    "apple sandwich orange broccoli carrot hot pizza donut cake couch bed toilet laptop mouse "
    "remote keyboard cell phone microwave oven toaster sink refrigerator book clock vase "
    "scissors teddy hair drier toothbrush truck"
)
VOCAB_SIZE = 1280


def tiny_vocabulary() -> list[str]:
    """Tokens of the test vocabulary, index = token id (bert-base-uncased ids for specials)."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    while len(vocab) < 999:
        vocab.append(f"[unused{len(vocab) - 5}]")
    vocab.extend(_PUNCTUATION)  # "." lands on 1012 and "?" on 1029, as in bert-base-uncased
    vocab.extend(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789")
    seen = set(vocab)
    for word in _WORDS.split():
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    if len(vocab) > VOCAB_SIZE:
        raise RuntimeError(f"test vocabulary has {len(vocab)} tokens > {VOCAB_SIZE}")
    return vocab


def tiny_grounding_dino_config(vocab_size: int = VOCAB_SIZE, mm: bool = False) -> Any:
    """The tiny ``GroundingDinoConfig``: Swin embed 16 with one block per stage, BERT hidden
    32 with one layer, d_model 32, one encoder and two decoder layers, 20 queries.

    ``mm=True`` gives the same sizes as an ``MMGroundingDinoConfig``.
    """
    from transformers import BertConfig, GroundingDinoConfig, MMGroundingDinoConfig, SwinConfig

    swin: dict[str, Any] = {
        "embed_dim": 16,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 1, 1],
        "out_indices": [2, 3, 4],
    }
    backbone = SwinConfig(**swin)
    text = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config_class = MMGroundingDinoConfig if mm else GroundingDinoConfig
    return config_class(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        max_text_len=32,
    )


def build_tiny_grounding_dino(
    directory: str | Path,
    seed: int = 0,
    shortest_edge: int = 800,
    longest_edge: int = 1333,
    config: Any | None = None,
    prepare: Callable[[Any], None] | None = None,
) -> Path:
    """Write a seeded tiny random Grounding DINO + processor into ``directory``; return it.

    Re-running with the same ``seed`` writes the same weights (the global torch RNG is
    restored afterwards). Takes well under a second after transformers is imported. The
    folder holds ``config.json``, ``model.safetensors``, ``processor_config.json`` (image
    processor settings), ``tokenizer.json``, ``tokenizer_config.json`` and ``vocab.txt``.

    ``shortest_edge``/``longest_edge`` default to the real checkpoint's 800/1333. A forward
    of the tiny model at 800x1066 takes ~0.25 s on one CPU core; tests that only check
    plumbing may save e.g. 128/213 instead (~15x faster) — the boxer reads the resize
    settings from the processor it loads.

    ``config`` replaces the tiny configuration (e.g. ``GroundingDinoConfig()`` for the full
    Swin-T architecture; the vocabulary keeps bert-base-uncased's special-token ids, so it
    fits the full BERT embedding table too); ``prepare(model)`` runs before saving.
    """
    from transformers import GroundingDinoForObjectDetection

    directory = _write_processor(directory, shortest_edge, longest_edge)
    model = _seeded(GroundingDinoForObjectDetection, config or tiny_grounding_dino_config(), seed)
    if prepare is not None:
        prepare(model)
    model.save_pretrained(directory)
    return directory


def build_tiny_mm_grounding_dino(
    directory: str | Path,
    seed: int = 0,
    shortest_edge: int = 128,
    longest_edge: int = 213,
    class_bias: float | None = -1.0,
    config: Any | None = None,
) -> Path:
    """Write a seeded tiny random MM-Grounding-DINO + processor into ``directory``; return it.

    The folder is what ``save_pretrained`` writes for ``MMGroundingDinoForObjectDetection``
    (``config.json`` with ``model_type`` ``mm-grounding-dino``) and the same
    ``GroundingDinoProcessor`` as :func:`build_tiny_grounding_dino` (offline BERT
    vocabulary; ``shortest_edge``/``longest_edge`` default to the fast 128/213). It loads
    through ``AutoModelForZeroShotObjectDetection`` / ``AutoProcessor`` and so through
    ``GroundingDinoBoxer.from_pretrained(dir)``. Same seed, same bytes.

    MM-Grounding-DINO's class head is ``<query, token> / sqrt(d_model) + bias``; the bias is
    initialised at ``-log(99)`` (every sigmoid near 0.01, so no threshold would keep a box
    of a random model). ``class_bias`` overwrites the decoder's and the encoder's class-head
    biases (default -1.0: scores spread over (0, 1), and a loader that dropped the bias
    would visibly score differently); ``None`` keeps the initialisation.

    ``config`` replaces the tiny ``MMGroundingDinoConfig``
    (:func:`tiny_grounding_dino_config` with ``mm=True``).
    """
    from transformers import MMGroundingDinoForObjectDetection

    directory = _write_processor(directory, shortest_edge, longest_edge)
    model = _seeded(
        MMGroundingDinoForObjectDetection, config or tiny_grounding_dino_config(mm=True), seed
    )
    if class_bias is not None:
        heads = [*model.class_embed, model.model.encoder_output_class_embed]
        with torch.no_grad():
            for head in heads:
                head.bias.fill_(class_bias)
    model.save_pretrained(directory)
    return directory


def _write_processor(directory: str | Path, shortest_edge: int, longest_edge: int) -> Path:
    """Save the test ``GroundingDinoProcessor`` (offline vocabulary) into ``directory``."""
    from transformers import BertTokenizer, GroundingDinoImageProcessor, GroundingDinoProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_path = directory / "vocab.txt"
    vocab_path.write_text("\n".join(tiny_vocabulary()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_path))
    settings = dict(REAL_PROCESSOR_SETTINGS)
    settings["size"] = {"shortest_edge": shortest_edge, "longest_edge": longest_edge}
    image_processor = GroundingDinoImageProcessor(**settings)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        directory
    )
    return directory


def _seeded(model_class: Any, config: Any, seed: int) -> Any:
    """``model_class(config)`` in eval mode, initialised under ``seed``; the global torch RNG
    is restored afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return model_class(config).eval()
    finally:
        torch.random.set_rng_state(state)


def temper_class_logits(model: Any) -> None:
    """Scale a random Grounding DINO's decoder output LayerNorm by ``1 / sqrt(d_model)``; in
    place.

    The class logits are dot products of two LayerNorm-ed ``d_model``-wide vectors, so with
    random weights they spread like ``N(0, d_model)`` and most box scores round to exactly
    1.0 in float32 (a trained model's logits stay within a few units). That LayerNorm feeds
    only the class and box heads, not the decoder's own box refinement; scaling it gives
    unit-spread logits that a threshold can cut.
    """
    norm = model.model.decoder.layer_norm
    scale = 1.0 / float(np.sqrt(model.config.d_model))
    with torch.no_grad():
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)


def write_grounding_dino(
    size: str,
    directory: str | Path,
    shortest_edge: int = 800,
    longest_edge: int = 1333,
    seed: int = 0,
) -> Path:
    """Write a random Grounding DINO + processor loadable by ``GroundingDinoBoxer.from_pretrained``,
    its class logits tempered (:func:`temper_class_logits`).

    Args:
        size: ``"tiny"`` (:func:`tiny_grounding_dino_config`) or ``"full"``
            (``GroundingDinoConfig()``, Swin-T).
        directory: created if missing.
        shortest_edge, longest_edge: the processor's resize (800/1333 is the real one).
        seed: weight seed.
    """
    check_size(size)
    from transformers import GroundingDinoConfig

    return build_tiny_grounding_dino(
        directory,
        seed=seed,
        shortest_edge=shortest_edge,
        longest_edge=longest_edge,
        config=None if size == "tiny" else GroundingDinoConfig(),
        prepare=temper_class_logits,
    )
