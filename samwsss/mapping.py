"""Class mapping files: the classes of a dataset, their prompts and the RAM tags meaning them.

A mapping file is YAML::

    name: voc                      # free text
    classes:
      - index: 0
        name: background           # index 0 must be background; it has no prompt or tags
      - index: 1
        name: aeroplane            # the dataset's own class name
        prompt: aeroplane          # Grounding DINO prompt (default: the name)
        tags: [airplane, jet]      # whole RAM tags that mean this class (exact matching)
        paper_synonyms: [plane]    # the survey authors' substring synonyms (paper mode)
        threshold: 0.7             # optional RAM probability threshold for these tags

Indices are contiguous from 0. A tag may belong to one class only. Built-in files are
``voc`` and ``coco``; any other value is a path to the user's own file.
"""

from __future__ import annotations

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
        tags: normalised whole RAM tags that mean this class.
        paper_synonyms: the authors' substring synonyms (paper mode).
        threshold: RAM probability threshold for this class's tags, or ``None`` (per-tag
            official thresholds).
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
        if isinstance(name, int):
            if 1 <= name < self.num_classes:
                return name
            raise ValueError(
                f"class index {name} out of range for mapping {self.name!r}: "
                f"use 1..{self.num_classes - 1} (0 is background)"
            )
        key = normalize_tag(name)
        if key in self._by_name and self._by_name[key] != 0:
            return self._by_name[key]
        raise ValueError(
            f"unknown class {name!r} for mapping {self.name!r} ({self.source}); valid names: "
            + ", ".join(self.class_names[1:])
        )

    def class_of_tag(self, tag: str) -> int | None:
        """Class index whose curated tags contain ``tag`` exactly (normalised), or ``None``."""
        return self._by_tag.get(normalize_tag(tag))


def _node_line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


def _mapping_items(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    return {key.value: (key, value) for key, value in node.value}  # type: ignore[union-attr]


def _as_str_list(node: yaml.Node, where: str) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode):
        raise MappingError(f"{where}: expected a list like [a, b], got the scalar {node.value!r}")
    if not isinstance(node, yaml.SequenceNode):
        raise MappingError(f"{where}: expected a list of strings")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise MappingError(f"{where}: every entry must be a non-empty string")
        out.append(normalize_tag(item.value))
    return tuple(out)


def parse_mapping(text: str, source: str = "<string>") -> ClassMapping:
    """Parse and validate mapping YAML text.

    Raises:
        MappingError: with ``source:line:`` and what to fix for unknown keys, missing or
            non-contiguous indices, duplicate names or tags, bad thresholds.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        raise MappingError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(root, yaml.MappingNode):
        raise MappingError(f"{source}: top level must be a mapping with 'name' and 'classes'")
    top = _mapping_items(root)
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
        raise MappingError(f"{source}:{_node_line(classes_node)}: 'classes' must be a non-empty list")
    entries: list[ClassEntry] = []
    seen_names: dict[str, int] = {}
    seen_tags: dict[str, tuple[str, int]] = {}
    for position, class_node in enumerate(classes_node.value):
        line = _node_line(class_node)
        where = f"{source}:{line}"
        if not isinstance(class_node, yaml.MappingNode):
            raise MappingError(f"{where}: each class must be a mapping with 'index' and 'name'")
        items = _mapping_items(class_node)
        for key, (key_node, _) in items.items():
            if key not in CLASS_KEYS:
                raise MappingError(
                    f"{source}:{_node_line(key_node)}: unknown class key {key!r}; "
                    f"allowed: {', '.join(sorted(CLASS_KEYS))}"
                )
        if "index" not in items or "name" not in items:
            raise MappingError(f"{where}: class needs both 'index' and 'name'")
        index_text = items["index"][1].value
        try:
            index = int(index_text)
        except (TypeError, ValueError) as error:
            raise MappingError(f"{where}: index must be an integer, got {index_text!r}") from error
        if index != position:
            raise MappingError(
                f"{where}: index {index} out of order; indices must be contiguous 0, 1, 2, ... "
                f"in file order (expected {position})"
            )
        name = str(items["name"][1].value).strip()
        if not name:
            raise MappingError(f"{where}: empty class name")
        key = normalize_tag(name)
        if key in seen_names:
            raise MappingError(f"{where}: class name {name!r} repeats line {seen_names[key]}")
        seen_names[key] = line
        if index == 0:
            if key != "background":
                raise MappingError(f"{where}: index 0 must be named 'background', got {name!r}")
            extra = set(items) - {"index", "name"}
            if extra:
                raise MappingError(f"{where}: background takes no {', '.join(sorted(extra))}")
            entries.append(ClassEntry(index=0, name=name, prompt=""))
            continue
        prompt = str(items["prompt"][1].value).strip() if "prompt" in items else name
        prompt = prompt.rstrip(".").strip()
        if not prompt:
            raise MappingError(f"{where}: empty prompt for class {name!r}")
        tags = _as_str_list(items["tags"][1], where) if "tags" in items else ()
        for tag in tags:
            if tag in seen_tags and seen_tags[tag][0] != name:
                other, other_line = seen_tags[tag]
                raise MappingError(
                    f"{where}: tag {tag!r} of {name!r} already maps to {other!r} (line "
                    f"{other_line}); a tag may mean one class only: remove one of them"
                )
            seen_tags[tag] = (name, line)
        synonyms = (
            _as_str_list(items["paper_synonyms"][1], where) if "paper_synonyms" in items else ()
        )
        threshold: float | None = None
        if "threshold" in items:
            raw = items["threshold"][1].value
            try:
                threshold = float(raw)
            except (TypeError, ValueError) as error:
                raise MappingError(f"{where}: threshold must be a number, got {raw!r}") from error
            if not 0.0 < threshold < 1.0:
                raise MappingError(f"{where}: threshold {threshold} must be in (0, 1)")
        entries.append(
            ClassEntry(index, name, prompt, tuple(dict.fromkeys(tags)), synonyms, threshold)
        )
    if entries[0].index != 0:
        raise MappingError(f"{source}: the first class must be index 0, background")
    if len(entries) < 2:
        raise MappingError(f"{source}: a mapping needs at least one class besides background")
    name_node = top.get("name")
    mapping_name = str(name_node[1].value) if name_node else Path(source).stem
    return ClassMapping(name=mapping_name, classes=tuple(entries), source=source)


def builtin_mapping_path(name: str) -> Path:
    """Path of a shipped mapping file (``"voc"`` or ``"coco"``)."""
    package_copy = Path(__file__).resolve().parent / "mappings" / f"{name}.yaml"
    if package_copy.is_file():
        return package_copy
    repo_copy = Path(__file__).resolve().parent.parent / "mappings" / f"{name}.yaml"
    return repo_copy


def load_mapping(name_or_path: str | os.PathLike[str]) -> ClassMapping:
    """Load a mapping: ``"voc"``, ``"coco"``, or the path of a YAML mapping file.

    Raises:
        MappingError: the file is missing or malformed (the message says what to fix).
    """
    text_name = str(name_or_path)
    if text_name.lower() in BUILTIN_MAPPINGS and not Path(text_name).exists():
        path = builtin_mapping_path(text_name.lower())
    else:
        path = Path(name_or_path)
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
