"""Class mapping files: the classes of a dataset, their prompts and the RAM tags meaning them.

A mapping file is YAML::

    name: voc                      # free text (default: the file name)
    description: ...               # optional free text
    classes:
      - index: 0
        name: background           # index 0 must be background; it takes no other key
      - index: 1
        name: aeroplane            # the dataset's own class name (unique)
        prompt: aeroplane          # Grounding DINO prompt (default: the name)
        tags: [plane, airliner]    # whole RAM tags that mean this class (default: [name])
        paper_synonyms: [plane]    # the survey authors' substring synonyms (default: [name])
        threshold: 0.7             # optional: a tag of this class counts only above this
                                   # RAM probability (applied by the mapper when it is given
                                   # probabilities)

Indices are contiguous from 0 in file order. A tag may belong to one class only; tags and
synonyms are compared after :func:`normalize_tag` (lower case, single spaces). ``tags: []``
makes a class unreachable from tags (it can still be given as a label). Built-in files are
``voc`` and ``coco`` (``mappings/``); any other value is a path to the user's own file.
Every malformed file raises :class:`MappingError` naming the file, the line and the fix.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLASS_KEYS = frozenset({"index", "name", "prompt", "tags", "paper_synonyms", "threshold"})
TOP_KEYS = frozenset({"name", "classes", "description"})
BUILTIN_MAPPINGS = ("voc", "coco")


class MappingError(ValueError):
    """A malformed mapping file; the message names the file, the line and the fix."""


def normalize_tag(text: str) -> str:
    """Lower-case and collapse whitespace: the form tags are compared in."""
    return " ".join(str(text).lower().split())


@dataclass(frozen=True)
class ClassEntry:
    """One class of a mapping.

    Attributes:
        index: contiguous class index (0 = background).
        name: the dataset's class name.
        prompt: Grounding DINO prompt text (no trailing period).
        tags: normalised whole RAM tags that mean this class (exact mode).
        paper_synonyms: normalised substring synonyms of the survey authors (paper mode).
        threshold: RAM probability a tag of this class must exceed to count, or ``None``
            (the tagger's per-tag thresholds alone decide).
    """

    index: int
    name: str
    prompt: str
    tags: tuple[str, ...] = ()
    paper_synonyms: tuple[str, ...] = ()
    threshold: float | None = None


@dataclass(frozen=True)
class ClassMapping:
    """A validated mapping: classes in index order, background first."""

    name: str
    classes: tuple[ClassEntry, ...]
    source: str = "<memory>"
    _by_name: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _by_tag: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {normalize_tag(c.name): c.index for c in self.classes}
        by_tag = {tag: c.index for c in self.classes for tag in c.tags}
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_by_tag", by_tag)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in index order, background first."""
        return tuple(c.name for c in self.classes)

    @property
    def prompts(self) -> tuple[str, ...]:
        """Grounding DINO prompts in index order (index 0's is unused)."""
        return tuple(c.prompt for c in self.classes)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.classes)

    def index_of(self, name: str | int) -> int:
        """Class index of a class name (case/space-insensitive) or a valid index.

        Raises:
            ValueError: the name is not in this mapping, or the index is out of range;
                the message lists the valid names.
        """
        if isinstance(name, bool):
            raise ValueError(f"class must be a name or an index, got {name!r}")
        if isinstance(name, numbers.Integral):
            name = int(name)
            if 1 <= name < self.num_classes:
                return name
            raise ValueError(
                f"class index {name} out of range for mapping {self.name!r}: "
                f"use 1..{self.num_classes - 1} (0 is background)"
            )
        key = normalize_tag(str(name))
        if key in self._by_name and self._by_name[key] != 0:
            return self._by_name[key]
        raise ValueError(
            f"unknown class {name!r} for mapping {self.name!r} ({self.source}); valid names: "
            + ", ".join(self.class_names[1:])
        )

    def class_of_tag(self, tag: str) -> int | None:
        """Class index whose curated tags contain ``tag`` exactly (normalised), or ``None``."""
        return self._by_tag.get(normalize_tag(tag))


_NULL_TAG = "tag:yaml.org,2002:null"


def _node_line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


def _mapping_items(node: yaml.MappingNode, source: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Keys of a YAML mapping node -> (key node, value node); rejects odd or repeated keys."""
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise MappingError(f"{source}:{_node_line(key)}: keys must be plain words")
        if key.value in items:
            first = _node_line(items[key.value][0])
            raise MappingError(
                f"{source}:{_node_line(key)}: key {key.value!r} repeats line {first}; "
                "keep one of them"
            )
        items[key.value] = (key, value)
    return items


def _scalar(node: yaml.Node, source: str, key: str) -> str:
    """The text of a scalar value; a list, a mapping or an empty value is an error."""
    where = f"{source}:{_node_line(node)}"
    if not isinstance(node, yaml.ScalarNode):
        raise MappingError(f"{where}: {key!r} must be a single value, not a list or mapping")
    if node.tag == _NULL_TAG:
        raise MappingError(f"{where}: {key!r} has no value")
    return str(node.value).strip()


def _as_str_list(node: yaml.Node, source: str, key: str) -> list[tuple[str, int]]:
    """A list of non-empty strings as ``(normalised text, line)`` pairs."""
    where = f"{source}:{_node_line(node)}"
    if isinstance(node, yaml.ScalarNode):
        got = "nothing" if node.tag == _NULL_TAG else f"the single value {node.value!r}"
        raise MappingError(f"{where}: {key!r} must be a list like [a, b] ([] for none), got {got}")
    if not isinstance(node, yaml.SequenceNode):
        raise MappingError(f"{where}: {key!r} must be a list like [a, b], not a mapping")
    out = []
    for item in node.value:
        line = _node_line(item)
        if (
            not isinstance(item, yaml.ScalarNode)
            or item.tag == _NULL_TAG
            or not str(item.value).strip()
        ):
            raise MappingError(
                f"{source}:{line}: every entry of {key!r} must be a non-empty string"
            )
        out.append((normalize_tag(item.value), line))
    return out


def _unique(values: list[tuple[str, int]], source: str, key: str, name: str) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    for value, line in values:
        if value in seen:
            raise MappingError(
                f"{source}:{line}: {key[:-1]} {value!r} of {name!r} is listed twice "
                f"(first on line {seen[value]}); remove one"
            )
        seen[value] = line
    return tuple(seen)


def parse_mapping(text: str, source: str = "<string>") -> ClassMapping:
    """Parse and validate mapping YAML text (the format is in this module's docstring).

    Args:
        text: the YAML text.
        source: the file name used in error messages.

    Raises:
        MappingError: with ``source:line:`` and what to fix, for text that is not YAML,
            unknown or repeated keys, a missing ``index``/``name``, indices not contiguous
            from 0, index 0 not ``background``, repeated class names, a tag (or synonym)
            listed twice, a tag claimed by two classes, and a bad ``threshold``.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at_line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise MappingError(f"{source}{at_line}: not valid YAML: {problem}") from error
    if root is None:
        raise MappingError(f"{source}: the file is empty; see mappings/voc.yaml for the format")
    if not isinstance(root, yaml.MappingNode):
        raise MappingError(
            f"{source}:{_node_line(root)}: top level must be a mapping with 'name' and 'classes'"
        )
    top = _mapping_items(root, source)
    for key, (key_node, _) in top.items():
        if key not in TOP_KEYS:
            raise MappingError(
                f"{source}:{_node_line(key_node)}: unknown top-level key {key!r}; "
                f"allowed: {', '.join(sorted(TOP_KEYS))}"
            )
    if "classes" not in top:
        raise MappingError(f"{source}: missing the 'classes' list")
    classes_node = top["classes"][1]
    if not isinstance(classes_node, yaml.SequenceNode) or not classes_node.value:
        raise MappingError(
            f"{source}:{_node_line(classes_node)}: 'classes' must be a non-empty list"
        )
    entries: list[ClassEntry] = []
    seen_names: dict[str, int] = {}
    seen_tags: dict[str, tuple[str, int]] = {}
    for position, class_node in enumerate(classes_node.value):
        line = _node_line(class_node)
        where = f"{source}:{line}"
        if not isinstance(class_node, yaml.MappingNode):
            raise MappingError(f"{where}: each class must be a mapping with 'index' and 'name'")
        items = _mapping_items(class_node, source)
        for key, (key_node, _) in items.items():
            if key not in CLASS_KEYS:
                raise MappingError(
                    f"{source}:{_node_line(key_node)}: unknown class key {key!r}; "
                    f"allowed: {', '.join(sorted(CLASS_KEYS))}"
                )
        for required in ("index", "name"):
            if required not in items:
                raise MappingError(
                    f"{where}: this class has no {required!r}; every class needs 'index' and 'name'"
                )
        index_node = items["index"][1]
        index_text = _scalar(index_node, source, "index")
        try:
            index = int(index_text)
        except ValueError as error:
            raise MappingError(
                f"{source}:{_node_line(index_node)}: index must be an integer, got {index_text!r}"
            ) from error
        if index != position:
            hint = (
                "the first class must be index 0, background"
                if position == 0
                else f"indices must be contiguous 0, 1, 2, ... in file order (expected {position})"
            )
            raise MappingError(f"{source}:{_node_line(index_node)}: index {index}: {hint}")
        name = _scalar(items["name"][1], source, "name")
        if not name:
            raise MappingError(f"{source}:{_node_line(items['name'][1])}: empty class name")
        key = normalize_tag(name)
        if index == 0:
            if key != "background":
                raise MappingError(f"{where}: index 0 must be named 'background', got {name!r}")
            extra = set(items) - {"index", "name"}
            if extra:
                raise MappingError(
                    f"{where}: background takes no {', '.join(sorted(extra))}; remove it"
                )
            seen_names[key] = line
            entries.append(ClassEntry(index=0, name=name, prompt=""))
            continue
        if key in seen_names:
            raise MappingError(f"{where}: class name {name!r} repeats line {seen_names[key]}")
        seen_names[key] = line
        prompt = _scalar(items["prompt"][1], source, "prompt") if "prompt" in items else name
        prompt = prompt.rstrip(".").strip()
        if not prompt:
            raise MappingError(f"{where}: empty prompt for class {name!r}")
        if "tags" in items:
            tag_items = _as_str_list(items["tags"][1], source, "tags")
            tags = _unique(tag_items, source, "tags", name)
            tag_lines = dict(tag_items)
        else:
            tags, tag_lines = (key,), {key: line}
        for tag in tags:
            if tag in seen_tags:
                other, other_line = seen_tags[tag]
                default = "" if "tags" in items else " (by default a class's tag is its name)"
                raise MappingError(
                    f"{source}:{tag_lines[tag]}: tag {tag!r} of {name!r} already maps to "
                    f"{other!r} (line {other_line}); a tag may mean one class only: remove "
                    f"one of them{default}"
                )
            seen_tags[tag] = (name, tag_lines[tag])
        if "paper_synonyms" in items:
            synonyms = _unique(
                _as_str_list(items["paper_synonyms"][1], source, "paper_synonyms"),
                source,
                "paper_synonyms",
                name,
            )
        else:
            synonyms = (key,)
        threshold: float | None = None
        if "threshold" in items:
            threshold_node = items["threshold"][1]
            raw = _scalar(threshold_node, source, "threshold")
            tline = f"{source}:{_node_line(threshold_node)}"
            try:
                threshold = float(raw)
            except ValueError as error:
                raise MappingError(f"{tline}: threshold must be a number, got {raw!r}") from error
            if not 0.0 < threshold < 1.0:
                raise MappingError(
                    f"{tline}: threshold {raw} must be a probability strictly between 0 and 1"
                )
        entries.append(ClassEntry(index, name, prompt, tags, synonyms, threshold))
    if len(entries) < 2:
        raise MappingError(f"{source}: a mapping needs at least one class besides background")
    mapping_name = Path(source).stem
    if "name" in top:
        mapping_name = _scalar(top["name"][1], source, "name") or mapping_name
    if "description" in top:
        _scalar(top["description"][1], source, "description")
    return ClassMapping(name=mapping_name, classes=tuple(entries), source=source)


def mapping_to_yaml(mapping: ClassMapping) -> str:
    """YAML text of a mapping that :func:`parse_mapping` reads back to equal classes.

    Useful to start a file of one's own from a built-in or from :func:`mapping_from_names`.
    """
    classes: list[dict[str, Any]] = []
    for entry in mapping.classes:
        item: dict[str, Any] = {"index": entry.index, "name": entry.name}
        if entry.index != 0:
            item["prompt"] = entry.prompt
            item["paper_synonyms"] = list(entry.paper_synonyms)
            item["tags"] = list(entry.tags)
            if entry.threshold is not None:
                item["threshold"] = entry.threshold
        classes.append(item)
    document = {"name": mapping.name, "classes": classes}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=95)


def builtin_mapping_path(name: str) -> Path:
    """Path of a shipped mapping file (``"voc"`` or ``"coco"``)."""
    return Path(__file__).resolve().parent / "mappings" / f"{name}.yaml"


def load_mapping(name_or_path: str | os.PathLike[str]) -> ClassMapping:
    """Load a mapping: ``"voc"``, ``"coco"``, or the path of a YAML mapping file.

    Raises:
        MappingError: the file is missing or malformed (the message says what to fix).
    """
    text_name = str(name_or_path)
    # a built-in name wins over a folder of that name (a dataset folder "voc" beside the
    # run); only a file of that name is read as the user's mapping
    if text_name.lower() in BUILTIN_MAPPINGS and not Path(text_name).is_file():
        path = builtin_mapping_path(text_name.lower())
    else:
        path = Path(name_or_path)
    if path.is_dir():
        raise MappingError(f"{path}: is a folder; give the path of a YAML mapping file")
    if not path.is_file():
        raise MappingError(
            f"mapping file {text_name!r} not found: give 'voc', 'coco' or the path of a YAML "
            "mapping file (see mappings/voc.yaml for the format)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MappingError(f"{path}: cannot read mapping file ({error})") from error
    return parse_mapping(text, source=str(path))


def mapping_from_names(names: list[str] | tuple[str, ...], name: str = "custom") -> ClassMapping:
    """A mapping from a plain list of object class names (background added as index 0)."""
    text: dict[str, Any] = {
        "name": name,
        "classes": [{"index": 0, "name": "background"}]
        + [{"index": i + 1, "name": n} for i, n in enumerate(names)],
    }
    return parse_mapping(yaml.safe_dump(text, sort_keys=False), source=f"<{name}>")
