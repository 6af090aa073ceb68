"""Mapper: an image's RAM tags -> the class indices of a mapping, with the tags behind each.

Two matching modes:

- ``exact`` (default): a tag reaches a class when the whole tag, normalised by
  :func:`samwsss.mapping.normalize_tag` (lower case, single spaces), is one of the class's
  curated ``tags``. A tag reaches at most one class (the mapping file guarantees it).
- ``paper``: the survey authors' substring test, kept for reproduction: a tag reaches a
  class when one of the class's ``paper_synonyms`` is a substring of the normalised tag
  (``synonym in tag``). It over-matches (``"bush"`` -> bus, ``"card"`` -> car,
  ``"batman"`` -> person) and misses (``"motorcycle"`` never reaches VOC motorbike), as in
  their scripts. Two rules, both theirs:

  - ``"first"`` (their VOC script): per tag, only the first class in index order whose
    synonym matches;
  - ``"all"`` (their COCO script): every class whose synonym matches.

  The default rule follows the mapping's ``name``: ``"first"`` for ``voc``, ``"all"`` for
  every other mapping (``coco`` and user mappings).

When tag probabilities are given (a ``{tag: probability}`` dict or a tagger result with
``tags`` and ``probabilities``), a class with a ``threshold`` in the mapping keeps a tag
only when its probability exceeds that threshold; the tag is then reported in
``below_threshold`` for that class instead. Without probabilities, thresholds are not used.

Example::

    >>> mapper = TagMapper(load_mapping("voc"))            # exact mode
    >>> mapper.map(["man", "motorcycle", "bush"]).class_ids
    (14, 15)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from samwsss.checks import check_choice
from samwsss.choices import TAG_MATCHES
from samwsss.mapping import ClassMapping, load_mapping, normalize_tag

logger = logging.getLogger(__name__)

MATCH_MODES = TAG_MATCHES
"""Tag matching modes: whole curated tags, or the authors' substring test."""

PAPER_RULES = ("first", "all")
"""Paper-mode rules: first matching class in index order per tag, or every matching class."""

TagsLike = Sequence[str] | Mapping[str, float] | Any
"""One image's tags: a list of tags, a ``{tag: probability}`` dict, or an object with
``tags`` (and optionally ``probabilities``) attributes such as a tagger result."""


@dataclass(frozen=True)
class MappedClasses:
    """The classes one image's tags reached.

    Attributes:
        class_ids: the class indices reached, sorted, unique, in ``1..C`` (never 0).
        class_names: the names of ``class_ids``, in the same order.
        sources: ``{class id: the tags (as given) that reached it}``, tags in input order.
        unmapped: the tags (as given) that reached no class.
        below_threshold: ``{class id: tags that matched it but whose probability did not
            exceed the class's threshold}``; empty unless probabilities and thresholds exist.
    """

    class_ids: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()
    sources: dict[int, tuple[str, ...]] = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()
    below_threshold: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for run reports: classes with their tags, unmapped tags."""
        names = dict(zip(self.class_ids, self.class_names, strict=True))
        return {
            "classes": [
                {"index": index, "name": names[index], "tags": list(self.sources[index])}
                for index in self.class_ids
            ],
            "unmapped": list(self.unmapped),
            "below_threshold": {str(k): list(v) for k, v in sorted(self.below_threshold.items())},
        }


class TagMapper:
    """Map RAM tags to the classes of a mapping.

    Args:
        mapping: a :class:`~samwsss.mapping.ClassMapping`, or ``"voc"``, ``"coco"`` or the
            path of a mapping YAML file (loaded with :func:`~samwsss.mapping.load_mapping`).
        mode: ``"exact"`` (default; curated whole tags) or ``"paper"`` (the authors'
            substring test over ``paper_synonyms``).
        paper_rule: paper mode only: ``"first"`` or ``"all"`` (see the module docstring);
            ``None`` picks ``"first"`` for a mapping named ``voc`` and ``"all"`` otherwise.
            Ignored in exact mode.

    Raises:
        ValueError: an unknown mode or paper rule (the message lists the valid ones).
        samwsss.mapping.MappingError: ``mapping`` is a name or path that does not load.

    Call :meth:`map` for one image, :meth:`map_batch` for a list of images, or the mapper
    itself with either (a list of strings is one image; a list of lists is a batch).
    """

    def __init__(
        self,
        mapping: ClassMapping | str | os.PathLike[str] = "voc",
        mode: str = "exact",
        paper_rule: str | None = None,
    ) -> None:
        if not isinstance(mapping, ClassMapping):
            mapping = load_mapping(mapping)
        check_choice("tag match mode", mode, TAG_MATCHES)
        if paper_rule is None:
            paper_rule = "first" if normalize_tag(mapping.name) == "voc" else "all"
        if paper_rule not in PAPER_RULES:
            raise ValueError(
                f"unknown paper rule {paper_rule!r}: use one of "
                f"{', '.join(map(repr, PAPER_RULES))} (or None for the mapping's default)"
            )
        self.mapping = mapping
        self.mode = mode
        self.paper_rule = paper_rule
        self._synonyms = tuple(
            (entry.index, entry.paper_synonyms) for entry in mapping.classes if entry.index != 0
        )
        self._cache: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        rule = f", paper_rule={self.paper_rule!r}" if self.mode == "paper" else ""
        return f"TagMapper(mapping={self.mapping.name!r}, mode={self.mode!r}{rule})"

    def classes_of_tag(self, tag: str) -> tuple[int, ...]:
        """The class indices one tag reaches under this mapper's mode and rule (ascending).

        Exact mode gives at most one class; paper mode with rule ``"all"`` may give several.
        """
        if not isinstance(tag, str):
            raise ValueError(f"a tag must be a string, got {tag!r} ({type(tag).__name__})")
        key = normalize_tag(tag)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self.mode == "exact":
            index = self.mapping.class_of_tag(key)
            found: tuple[int, ...] = () if index is None else (index,)
        else:
            matches = [
                index
                for index, synonyms in self._synonyms
                if key and any(synonym in key for synonym in synonyms)
            ]
            found = tuple(matches[:1]) if self.paper_rule == "first" else tuple(matches)
        self._cache[key] = found
        return found

    def map(self, tags: TagsLike) -> MappedClasses:
        """Map one image's tags.

        Args:
            tags: a sequence of tag strings; or a ``{tag: probability}`` mapping; or an
                object with a ``tags`` sequence and optionally a ``probabilities`` sequence
                of the same length (a tagger result). A tag repeated (after normalisation)
                counts once, with its first probability.

        Returns:
            the classes reached, the tags behind each, and the tags that reached nothing.

        Raises:
            ValueError: ``tags`` is a bare string, holds a non-string, or its
                probabilities do not match its tags.
        """
        pairs = _tag_probabilities(tags)
        sources: dict[int, list[str]] = {}
        below: dict[int, list[str]] = {}
        unmapped: list[str] = []
        for tag, probability in pairs:
            reached = self.classes_of_tag(tag)
            if not reached:
                unmapped.append(tag)
                continue
            for index in reached:
                threshold = self.mapping.classes[index].threshold
                if (
                    threshold is not None
                    and probability is not None
                    and not probability > threshold
                ):
                    below.setdefault(index, []).append(tag)
                else:
                    sources.setdefault(index, []).append(tag)
        class_ids = tuple(sorted(sources))
        if unmapped:
            logger.debug("tags reaching no class of %r: %s", self.mapping.name, unmapped)
        return MappedClasses(
            class_ids=class_ids,
            class_names=tuple(self.mapping.classes[index].name for index in class_ids),
            sources={index: tuple(sources[index]) for index in class_ids},
            unmapped=tuple(unmapped),
            below_threshold={index: tuple(below[index]) for index in sorted(below)},
        )

    def map_batch(self, batch: Iterable[TagsLike]) -> list[MappedClasses]:
        """Map the tags of several images (each item as :meth:`map` takes it)."""
        if isinstance(batch, (str, Mapping)):
            raise ValueError(
                "map_batch takes one tag list per image, e.g. [['dog', 'man'], ['car']]; "
                "use map() for a single image"
            )
        return [self.map(tags) for tags in batch]

    def __call__(self, tags: TagsLike | Sequence[TagsLike]) -> MappedClasses | list[MappedClasses]:
        """Map one image (a list of strings, a dict, a tagger result) or a batch (a list of
        those). An empty list is one image with no tags; use :meth:`map_batch` to be explicit.
        """
        if isinstance(tags, str):
            raise ValueError(
                f"give a list of tags, not the single string {tags!r}: e.g. mapper([{tags!r}])"
            )
        if isinstance(tags, Mapping) or hasattr(tags, "tags"):
            return self.map(tags)
        items = list(tags)
        if all(isinstance(item, str) for item in items):
            return self.map(items)
        if not any(isinstance(item, str) for item in items):
            return self.map_batch(items)
        raise ValueError(
            "a call takes either one image's tags (all strings) or a batch (one tag list per "
            "image), not a mix of strings and lists"
        )


def _tag_probabilities(tags: TagsLike) -> list[tuple[str, float | None]]:
    """``(tag, probability or None)`` pairs of one image's tags, first occurrence kept."""
    if isinstance(tags, str):
        raise ValueError(f"give a list of tags, not the single string {tags!r}: e.g. [{tags!r}]")
    probabilities: Sequence[Any] | None
    if isinstance(tags, Mapping):
        names, probabilities = list(tags.keys()), list(tags.values())
    elif hasattr(tags, "tags"):
        names = list(tags.tags)
        raw = getattr(tags, "probabilities", None)
        probabilities = None if raw is None else [float(p) for p in raw]
        if probabilities is not None and len(probabilities) != len(names):
            raise ValueError(
                f"the tagger result has {len(names)} tags but {len(probabilities)} "
                "probabilities; they must pair up"
            )
    elif isinstance(tags, Iterable):
        names, probabilities = list(tags), None
    else:
        raise ValueError(
            f"tags must be a list of strings, a {{tag: probability}} dict or a tagger result, "
            f"got {type(tags).__name__}"
        )
    pairs: dict[str, tuple[str, float | None]] = {}
    for position, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(
                f"tag {position} is {name!r} ({type(name).__name__}); tags must be strings"
            )
        probability = None
        if probabilities is not None:
            try:
                probability = float(probabilities[position])
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"probability of tag {name!r} is {probabilities[position]!r}, not a number"
                ) from error
            if math.isnan(probability):
                raise ValueError(f"probability of tag {name!r} is NaN")
        key = normalize_tag(name)
        if key not in pairs:
            pairs[key] = (name, probability)
    return list(pairs.values())
