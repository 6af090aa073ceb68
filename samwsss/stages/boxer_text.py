"""Text side of the Grounding DINO boxer: prompt normalisation, prompt packing, token spans.

A forward row of Grounding DINO reads one caption. In ``per-class`` mode the caption is one
class prompt (``"wild bird."``); in ``joint`` mode it is several prompts joined with a space
(``"cat. dog. wild bird."``). For every prompt of a caption we record the token span its
words occupy (the trailing ``"."`` separator excluded), so that a query's class can be read
off the span holding its largest logit — never off the decoded phrase string, which merges
neighbouring classes (``"cat dog"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def normalize_prompt(text: str) -> str:
    """The paper's caption rule: strip, lower-case, add a trailing ``"."`` if missing.

    Raises:
        ValueError: ``text`` is not a string or holds nothing besides spaces and dots.
    """
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__} {text!r}")
    caption = text.strip().lower()
    if not caption.strip(". \t\n"):
        raise ValueError(f"prompt {text!r} is empty: give the class name to look for, e.g. 'cat'")
    if not caption.endswith("."):
        caption += "."
    return caption


@dataclass(frozen=True)
class EncodedCaption:
    """One tokenized caption and where its prompts sit in it.

    Attributes:
        text: the caption, e.g. ``"cat. dog."``.
        input_ids: token ids including ``[CLS]`` and ``[SEP]``.
        spans: per prompt, ``(start, end)`` token positions (end exclusive) of its words.
    """

    text: str
    input_ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def encode_caption(tokenizer: Any, prompts: Sequence[str]) -> EncodedCaption:
    """Tokenize normalised ``prompts`` joined into one caption and locate each prompt's tokens.

    Args:
        tokenizer: a transformers tokenizer with offset mappings (BERT, as in Grounding DINO).
        prompts: normalised prompts (each ending in ``"."``), at least one.

    Raises:
        ValueError: a prompt has no token of its own (e.g. only punctuation).
    """
    starts = []
    position = 0
    for prompt in prompts:
        starts.append(position)
        position += len(prompt) + 1
    text = " ".join(prompts)
    encoding = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    spans = []
    for prompt, start in zip(prompts, starts, strict=True):
        end = start + len(prompt) - 1  # the trailing "." is a separator, not the class
        tokens = [
            index
            for index, (low, high) in enumerate(offsets)
            if high > low and low >= start and high <= end
        ]
        if not tokens:
            raise ValueError(
                f"prompt {prompt!r} produces no word token: use a class name made of words"
            )
        spans.append((tokens[0], tokens[-1] + 1))
    return EncodedCaption(text=text, input_ids=tuple(encoding["input_ids"]), spans=tuple(spans))


def pack_captions(
    tokenizer: Any, prompts: Sequence[str], max_text_len: int
) -> list[EncodedCaption]:
    """Split normalised ``prompts`` into as few captions as fit ``max_text_len`` tokens each.

    Prompts keep their order; a caption holds consecutive prompts. Used by ``joint`` mode
    (Grounding DINO reads at most ``config.max_text_len`` tokens, 256 for the real models,
    so e.g. all 80 COCO names do not fit one caption).

    Raises:
        ValueError: a single prompt is longer than ``max_text_len`` tokens.
    """
    captions: list[EncodedCaption] = []
    pending: list[str] = []
    for prompt in prompts:
        trial = encode_caption(tokenizer, [*pending, prompt])
        if len(trial.input_ids) <= max_text_len:
            pending.append(prompt)
            continue
        if not pending:
            raise ValueError(
                f"prompt {prompt!r} is {len(trial.input_ids)} tokens long, more than the model's "
                f"max_text_len {max_text_len}: shorten it"
            )
        captions.append(encode_caption(tokenizer, pending))
        pending = [prompt]
        single = encode_caption(tokenizer, pending)
        if len(single.input_ids) > max_text_len:
            raise ValueError(
                f"prompt {prompt!r} is {len(single.input_ids)} tokens long, more than the "
                f"model's max_text_len {max_text_len}: shorten it"
            )
    if pending:
        captions.append(encode_caption(tokenizer, pending))
    return captions


def span_probabilities(probs: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Per query and prompt, the largest token probability inside the prompt's span.

    Args:
        probs: ``(Q, T)`` float sigmoid scores of ``Q`` queries over ``T`` text positions.
        spans: ``P`` token ranges ``(start, end)``, end exclusive, inside ``[0, T)``.

    Returns:
        ``(Q, P)`` float: ``out[q, p] = max(probs[q, start_p:end_p])``.
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must be (queries, tokens), got shape {tuple(probs.shape)}")
    if not spans:
        raise ValueError("spans must hold at least one (start, end) token range")
    columns = []
    for start, end in spans:
        if not 0 <= start < end <= probs.shape[1]:
            raise ValueError(f"span ({start}, {end}) is outside the {probs.shape[1]} text tokens")
        columns.append(probs[:, start:end].amax(dim=1))
    return torch.stack(columns, dim=1)


def assign_spans(
    probs: torch.Tensor, spans: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign each query to the prompt whose token span holds its largest probability.

    Args:
        probs: ``(Q, T)`` float sigmoid scores.
        spans: ``P`` token ranges, one per prompt of the caption.

    Returns:
        ``(index, prob)``: ``(Q,)`` int64 prompt index in ``0..P-1`` (ties go to the earlier
        prompt) and ``(Q,)`` float that prompt's span maximum.
    """
    per_span = span_probabilities(probs, spans)
    index = per_span.argmax(dim=1)
    return index, per_span.gather(1, index[:, None])[:, 0]
