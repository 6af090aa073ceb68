"""The mapping loader: format, defaults, round trip and every validation error path."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from samwsss.mapping import (
    ClassMapping,
    MappingError,
    load_mapping,
    mapping_from_names,
    mapping_to_yaml,
    normalize_tag,
    parse_mapping,
)

GOOD = """\
name: pets
description: my own classes
classes:
  - index: 0
    name: background
  - index: 1
    name: Dog
    prompt: dog.
    tags: [dog, "  Golden   Retriever "]
    paper_synonyms: [dog, puppy]
  - index: 2
    name: hot dog
    threshold: 0.7
  - index: 3
    name: cat
    tags: []
"""


def parse(text: str) -> ClassMapping:
    return parse_mapping(textwrap.dedent(text), source="my.yaml")


def error_of(text: str) -> str:
    with pytest.raises(MappingError) as info:
        parse(text)
    return str(info.value)


def line_of(message: str) -> int:
    """The line number a ``my.yaml:N:`` message names."""
    match = re.match(r"my\.yaml:(\d+): ", message)
    assert match, f"message does not name a line: {message}"
    return int(match.group(1))


def test_parse_good_file_with_defaults_and_normalisation() -> None:
    mapping = parse(GOOD)
    assert mapping.name == "pets"
    assert mapping.source == "my.yaml"
    assert mapping.class_names == ("background", "Dog", "hot dog", "cat")
    assert mapping.num_classes == 4
    dog, hot_dog, cat = mapping.classes[1:]
    assert dog.prompt == "dog"  # trailing period removed
    assert dog.tags == ("dog", "golden retriever")
    assert dog.paper_synonyms == ("dog", "puppy")
    assert dog.threshold is None
    # defaults: prompt, tags and synonyms are the name
    assert (hot_dog.prompt, hot_dog.tags, hot_dog.paper_synonyms) == (
        "hot dog",
        ("hot dog",),
        ("hot dog",),
    )
    assert hot_dog.threshold == pytest.approx(0.7)
    assert cat.tags == ()  # explicit empty list: unreachable from tags
    assert mapping.prompts == ("", "dog", "hot dog", "cat")


def test_lookups() -> None:
    mapping = parse(GOOD)
    assert mapping.index_of("dog") == 1
    assert mapping.index_of("  HOT   dog") == 2
    assert mapping.index_of(3) == 3
    assert mapping.index_of(np.int64(2)) == 2
    assert mapping.class_of_tag("Golden Retriever") == 1
    assert mapping.class_of_tag("retriever") is None
    assert mapping.class_of_tag("cat") is None
    with pytest.raises(ValueError, match="unknown class 'cow'.*valid names: Dog, hot dog, cat"):
        mapping.index_of("cow")
    with pytest.raises(ValueError, match="use 1..3"):
        mapping.index_of(0)
    with pytest.raises(ValueError, match="use 1..3"):
        mapping.index_of(4)
    with pytest.raises(ValueError, match="background"):
        mapping.index_of("background")
    with pytest.raises(ValueError, match="name or an index"):
        mapping.index_of(True)


def test_normalize_tag() -> None:
    assert normalize_tag("  Border   Collie\t") == "border collie"
    assert normalize_tag("CD") == "cd"


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "garden.yaml"
    path.write_text(GOOD.replace("name: pets\n", ""), encoding="utf-8")
    assert load_mapping(path).name == "garden"


# ---------------------------------------------------------------- error paths, with lines

BASE = """\
name: t
classes:
  - index: 0
    name: background
  - index: 1
    name: dog
    tags: [dog, puppy]
"""


def test_unknown_class_key_names_its_line() -> None:
    message = error_of(BASE + "    colour: brown\n")
    assert line_of(message) == 8
    assert "unknown class key 'colour'" in message
    assert "allowed: index, name, paper_synonyms, prompt, tags, threshold" in message


def test_unknown_top_level_key_names_its_line() -> None:
    message = error_of(BASE + "version: 2\n")
    assert line_of(message) == 8
    assert "unknown top-level key 'version'" in message


def test_repeated_key_names_both_lines() -> None:
    message = error_of(BASE + "    tags: [hound]\n")
    assert line_of(message) == 8
    assert "key 'tags' repeats line 7" in message


def test_duplicate_tag_across_classes_names_both_lines() -> None:
    text = BASE + "  - index: 2\n    name: cat\n    tags: [cat,\n           puppy]\n"
    message = error_of(text)
    assert line_of(message) == 11  # the line of the second 'puppy'
    assert "tag 'puppy' of 'cat' already maps to 'dog' (line 7)" in message
    assert "one class only" in message


def test_duplicate_tag_is_found_after_normalisation() -> None:
    message = error_of(BASE + "  - index: 2\n    name: cat\n    tags: [' Puppy ']\n")
    assert line_of(message) == 10
    assert "'puppy'" in message


def test_default_tag_colliding_with_an_explicit_tag() -> None:
    message = error_of(BASE + "  - index: 2\n    name: puppy\n")
    assert line_of(message) == 8
    assert "already maps to 'dog'" in message
    assert "by default a class's tag is its name" in message


def test_tag_listed_twice_in_one_class() -> None:
    message = error_of(BASE.replace("[dog, puppy]", "[dog,\n           Dog]"))
    assert line_of(message) == 8
    assert "tag 'dog' of 'dog' is listed twice (first on line 7)" in message


def test_synonym_listed_twice_in_one_class() -> None:
    message = error_of(BASE + "    paper_synonyms: [dog, dog]\n")
    assert line_of(message) == 8
    assert "paper_synonym 'dog'" in message and "listed twice" in message


def test_non_contiguous_index_names_its_line() -> None:
    message = error_of(BASE + "  - index: 3\n    name: cat\n")
    assert line_of(message) == 8
    assert "index 3" in message and "contiguous" in message and "expected 2" in message


def test_non_integer_index() -> None:
    message = error_of(BASE.replace("index: 1", "index: one"))
    assert line_of(message) == 5
    assert "index must be an integer, got 'one'" in message
    message = error_of(BASE.replace("index: 1", "index: [1]"))
    assert line_of(message) == 5
    assert "'index' must be a single value" in message


def test_missing_name_names_the_class_line() -> None:
    message = error_of(BASE + "  - index: 2\n    prompt: cat\n")
    assert line_of(message) == 8
    assert "no 'name'" in message


def test_missing_index_names_the_class_line() -> None:
    message = error_of(BASE + "  - name: cat\n")
    assert line_of(message) == 8
    assert "no 'index'" in message


@pytest.mark.parametrize("value", ["", "null", "[a, b]"])
def test_name_must_be_a_non_empty_value(value: str) -> None:
    message = error_of(BASE + f"  - index: 2\n    name: {value}\n")
    assert line_of(message) == 9
    assert "name" in message


def test_repeated_class_name() -> None:
    message = error_of(BASE + "  - index: 2\n    name: ' DOG'\n    tags: [hound]\n")
    assert line_of(message) == 8
    assert "class name 'DOG' repeats line 5" in message


def test_class_named_background_twice() -> None:
    message = error_of(BASE + "  - index: 2\n    name: background\n    tags: []\n")
    assert line_of(message) == 8
    assert "repeats line 3" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("high", "threshold must be a number, got 'high'"),
        ("1.5", "threshold 1.5 must be a probability strictly between 0 and 1"),
        ("0", "threshold 0 must be a probability"),
        ("-0.2", "threshold -0.2 must be a probability"),
        ("nan", "threshold nan must be a probability"),
        (".nan", "threshold must be a number, got '.nan'"),
        ("", "'threshold' has no value"),
    ],
)
def test_bad_threshold_names_its_line(value: str, expected: str) -> None:
    message = error_of(BASE + f"    threshold: {value}\n")
    assert line_of(message) == 8
    assert expected in message


def test_not_yaml_names_the_line() -> None:
    message = error_of(BASE + "  - index: [2\n    name: cat\n")
    assert message.startswith("my.yaml:")
    assert "not valid YAML" in message
    assert line_of(message) in (9, 10)


def test_tab_indentation_is_not_yaml() -> None:
    message = error_of("name: t\nclasses:\n\t- index: 0\n")
    assert "not valid YAML" in message
    assert line_of(message) == 3


def test_background_not_first() -> None:
    text = "classes:\n  - index: 1\n    name: dog\n  - index: 0\n    name: background\n"
    message = error_of(text)
    assert line_of(message) == 2
    assert "the first class must be index 0, background" in message


def test_index_zero_must_be_background() -> None:
    message = error_of(BASE.replace("name: background", "name: sky"))
    assert line_of(message) == 3
    assert "index 0 must be named 'background', got 'sky'" in message


def test_background_takes_no_other_key() -> None:
    message = error_of(BASE.replace("name: background", "name: background\n    tags: [sky]"))
    assert line_of(message) == 3
    assert "background takes no tags" in message


def test_empty_prompt() -> None:
    message = error_of(BASE + "    prompt: '.'\n")
    assert "empty prompt for class 'dog'" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("dog", "'tags' must be a list like [a, b] ([] for none), got the single value 'dog'"),
        ("", "'tags' must be a list like [a, b] ([] for none), got nothing"),
        ("{a: 1}", "'tags' must be a list like [a, b], not a mapping"),
    ],
)
def test_tags_must_be_a_list(value: str, expected: str) -> None:
    message = error_of(BASE.replace("tags: [dog, puppy]", f"tags: {value}"))
    assert line_of(message) == 7
    assert expected in message


@pytest.mark.parametrize("entry", ["''", "null", "[a]"])
def test_tag_entries_must_be_non_empty_strings(entry: str) -> None:
    message = error_of(BASE.replace("tags: [dog, puppy]", f"tags:\n      - dog\n      - {entry}"))
    assert line_of(message) == 9
    assert "every entry of 'tags' must be a non-empty string" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("name: t\n", "missing the 'classes' list"),
        ("name: t\nclasses: []\n", "'classes' must be a non-empty list"),
        ("name: t\nclasses: dog\n", "'classes' must be a non-empty list"),
        ("classes:\n  - index: 0\n    name: background\n", "at least one class besides"),
        ("classes:\n  - dog\n", "each class must be a mapping"),
        ("? [a]\n: 1\nclasses: []\n", "keys must be plain words"),
        ("name: [a]\n" + BASE[8:], "'name' must be a single value"),
    ],
)
def test_structural_errors(text: str, expected: str) -> None:
    with pytest.raises(MappingError, match=re.escape(expected)):
        parse_mapping(text, source="my.yaml")


def test_mapping_error_is_a_value_error() -> None:
    assert issubclass(MappingError, ValueError)


# ------------------------------------------------------------------------ loading files


def test_load_user_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "pets.yaml"
    path.write_text(GOOD, encoding="utf-8")
    mapping = load_mapping(path)
    assert mapping.source == str(path)
    again = parse_mapping(mapping_to_yaml(mapping), source="copy.yaml")
    assert again.name == mapping.name
    assert again.classes == mapping.classes
    # and through a file again, as a user would save their edited copy
    copy = tmp_path / "copy.yaml"
    copy.write_text(mapping_to_yaml(mapping), encoding="utf-8")
    assert load_mapping(str(copy)).classes == mapping.classes


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_builtin_round_trip(name: str) -> None:
    mapping = load_mapping(name)
    assert parse_mapping(mapping_to_yaml(mapping)).classes == mapping.classes


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not found: give 'voc', 'coco' or the path"):
        load_mapping(tmp_path / "missing.yaml")
    with pytest.raises(MappingError, match="is a folder"):
        load_mapping(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(MappingError, match="cannot read mapping file"):
        load_mapping(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text(BASE + "    colour: brown\n", encoding="utf-8")
    with pytest.raises(MappingError, match=re.escape(f"{broken}:8: unknown class key")):
        load_mapping(broken)


def test_builtin_names_are_case_insensitive() -> None:
    assert load_mapping("VOC").classes == load_mapping("voc").classes


def test_mapping_from_names() -> None:
    mapping = mapping_from_names(["dog", "hot dog"], name="mine")
    assert mapping.name == "mine"
    assert mapping.class_names == ("background", "dog", "hot dog")
    assert mapping.classes[2].tags == ("hot dog",)
    assert mapping.class_of_tag("Hot Dog") == 2
    with pytest.raises(MappingError, match="repeats"):
        mapping_from_names(["dog", "Dog"])


def test_a_folder_named_like_a_builtin_mapping_does_not_hide_it(tmp_path, monkeypatch) -> None:
    from samwsss.mapping import load_mapping

    (tmp_path / "voc").mkdir()  # e.g. the dataset folder next to the run
    monkeypatch.chdir(tmp_path)
    assert load_mapping("voc").class_names[1] == "aeroplane"
