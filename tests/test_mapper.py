"""TagMapper: exact and paper matching, the authors' first/all rules, thresholds, the API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from samwsss.mapping import load_mapping, parse_mapping
from samwsss.stages.mapper import MATCH_MODES, PAPER_RULES, MappedClasses, TagMapper

VOC_BUS, VOC_CAR, VOC_CAT, VOC_DOG, VOC_MOTORBIKE, VOC_PERSON, VOC_SHEEP, VOC_TRAIN = (
    6, 7, 8, 12, 14, 15, 17, 19,
)  # fmt: skip

# The substring test's known over-matches (DESIGN.md section 1): tag -> the class it wrongly
# reaches in paper mode.
OVER_MATCHES = {
    "bush": VOC_BUS,
    "business": VOC_BUS,
    "card": VOC_CAR,
    "headscarf": VOC_CAR,
    "cathedral": VOC_CAT,
    "strainer": VOC_TRAIN,
    "batman": VOC_PERSON,
}


@pytest.fixture(scope="module")
def voc() -> object:
    return load_mapping("voc")


@pytest.fixture(scope="module")
def coco() -> object:
    return load_mapping("coco")


@pytest.mark.parametrize(("tag", "wrong"), sorted(OVER_MATCHES.items()))
def test_over_matches_happen_in_paper_mode_only(voc, tag: str, wrong: int) -> None:
    paper = TagMapper(voc, mode="paper")(["grass", tag])
    assert paper.class_ids == (wrong,)
    assert paper.sources == {wrong: (tag,)}
    exact = TagMapper(voc, mode="exact")(["grass", tag])
    assert exact.class_ids == ()
    assert exact.unmapped == ("grass", tag)


def test_over_matches_in_one_image(voc) -> None:
    tags = list(OVER_MATCHES)
    paper = TagMapper(voc, mode="paper").map(tags)
    assert paper.class_ids == (VOC_BUS, VOC_CAR, VOC_CAT, VOC_PERSON, VOC_TRAIN)
    assert paper.sources[VOC_BUS] == ("bush", "business")
    assert paper.sources[VOC_CAR] == ("card", "headscarf")
    assert paper.unmapped == ()
    assert TagMapper(voc).map(tags).class_ids == ()


@pytest.mark.parametrize("tag", ["bush", "card", "cathedral", "strainer", "batman"])
def test_over_matches_in_coco_paper_mode(coco, tag: str) -> None:
    assert TagMapper(coco, mode="paper").map([tag]).class_ids != ()
    assert TagMapper(coco).map([tag]).class_ids == ()


def test_motorcycle_reaches_motorbike_in_exact_mode_only(voc) -> None:
    exact = TagMapper(voc).map(["motorcycle", "man"])
    assert exact.class_ids == (VOC_MOTORBIKE, VOC_PERSON)
    assert exact.class_names == ("motorbike", "person")
    assert exact.sources == {VOC_MOTORBIKE: ("motorcycle",), VOC_PERSON: ("man",)}
    paper = TagMapper(voc, mode="paper").map(["motorcycle", "man"])
    assert paper.class_ids == (VOC_PERSON,)
    assert paper.unmapped == ("motorcycle",)


def test_exact_mode_normalises_case_and_whitespace(voc) -> None:
    mapped = TagMapper(voc).map(["  Motorcycle ", "Border   collie", "GIRL"])
    assert mapped.class_ids == (VOC_DOG, VOC_MOTORBIKE, VOC_PERSON)
    # sources keep the tags as given
    assert mapped.sources[VOC_DOG] == ("Border   collie",)


def test_class_ids_sorted_unique_and_sources_in_input_order(voc) -> None:
    mapped = TagMapper(voc).map(["woman", "dog", "sky", "man", "puppy", "woman", "Dog"])
    assert mapped.class_ids == (VOC_DOG, VOC_PERSON)
    assert mapped.sources == {VOC_DOG: ("dog",), VOC_PERSON: ("woman", "man")}
    assert mapped.unmapped == ("sky", "puppy")


# ------------------------------------------------------------------- the first/all rules

RULES_YAML = """\
name: {name}
classes:
  - index: 0
    name: background
  - index: 1
    name: dog
    paper_synonyms: [dog]
  - index: 2
    name: hot dog
    paper_synonyms: [hot dog, sausage]
  - index: 3
    name: sheep
"""


def rules_mapping(name: str = "mine"):
    return parse_mapping(RULES_YAML.format(name=name), source="rules.yaml")


def test_first_rule_takes_the_first_class_in_index_order() -> None:
    mapper = TagMapper(rules_mapping(), mode="paper", paper_rule="first")
    assert mapper.classes_of_tag("hot dog") == (1,)
    assert mapper.classes_of_tag("sheepdog") == (1,)
    mapped = mapper.map(["hot dog", "sausage roll", "sheepdog"])
    assert mapped.class_ids == (1, 2)
    assert mapped.sources == {1: ("hot dog", "sheepdog"), 2: ("sausage roll",)}


def test_all_rule_takes_every_matching_class() -> None:
    mapper = TagMapper(rules_mapping(), mode="paper", paper_rule="all")
    assert mapper.classes_of_tag("hot dog") == (1, 2)
    assert mapper.classes_of_tag("sheepdog") == (1, 3)
    mapped = mapper.map(["hot dog", "sheepdog"])
    assert mapped.class_ids == (1, 2, 3)
    assert mapped.sources == {1: ("hot dog", "sheepdog"), 2: ("hot dog",), 3: ("sheepdog",)}


def test_exact_mode_ignores_synonyms() -> None:
    mapper = TagMapper(rules_mapping())
    assert mapper.classes_of_tag("sheepdog") == ()
    assert mapper.classes_of_tag("hot dog") == (2,)  # the default tag is the name
    assert mapper.classes_of_tag("sausage") == ()


def test_default_paper_rule_follows_the_mapping_name(voc, coco) -> None:
    assert TagMapper(voc, mode="paper").paper_rule == "first"
    assert TagMapper(coco, mode="paper").paper_rule == "all"
    assert TagMapper(rules_mapping("VOC"), mode="paper").paper_rule == "first"
    assert TagMapper(rules_mapping("mine"), mode="paper").paper_rule == "all"
    assert TagMapper(voc, mode="paper", paper_rule="all").paper_rule == "all"


def test_voc_and_coco_rules_on_real_tags(voc, coco) -> None:
    # VOC (first): "sheepdog" holds "sheep" and "dog": dog comes first in index order.
    assert TagMapper(voc, mode="paper").classes_of_tag("sheepdog") == (VOC_DOG,)
    assert TagMapper(voc, mode="paper", paper_rule="all").classes_of_tag("sheepdog") == (
        VOC_DOG,
        VOC_SHEEP,
    )
    # COCO (all): "table tennis racket" reaches both tennis racket and dining table.
    assert TagMapper(coco, mode="paper").classes_of_tag("table tennis racket") == (39, 61)
    assert TagMapper(coco, mode="paper", paper_rule="first").classes_of_tag(
        "table tennis racket"
    ) == (39,)


# ----------------------------------------------------------------------- mode validation


def test_bad_mode_names_the_mode_and_the_valid_ones(voc) -> None:
    expected = r"tag match mode must be one of exact, paper; got 'substring'"
    with pytest.raises(ValueError, match=expected):
        TagMapper(voc, mode="substring")
    with pytest.raises(ValueError, match=r"unknown paper rule 'last': use one of 'first', 'all'"):
        TagMapper(voc, mode="paper", paper_rule="last")
    assert MATCH_MODES == ("exact", "paper")
    assert PAPER_RULES == ("first", "all")


def test_mapping_by_name_or_path(tmp_path: Path) -> None:
    assert TagMapper("coco").mapping.name == "coco"
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML.format(name="mine"), encoding="utf-8")
    assert TagMapper(path).mapping.class_names == ("background", "dog", "hot dog", "sheep")
    assert repr(TagMapper(path, mode="paper")) == (
        "TagMapper(mapping='mine', mode='paper', paper_rule='all')"
    )


# ------------------------------------------------------------------ inputs and thresholds

THRESHOLD_YAML = """\
name: garden
classes:
  - index: 0
    name: background
  - index: 1
    name: bird
    tags: [bird, owl]
    threshold: 0.7
  - index: 2
    name: flower
"""


@dataclass
class FakeTagResult:
    """What a tagger hands over: tags and their probabilities."""

    tags: tuple[str, ...]
    probabilities: tuple[float, ...] | None = None


def test_class_threshold_applies_when_probabilities_are_given() -> None:
    mapper = TagMapper(parse_mapping(THRESHOLD_YAML))
    weak = mapper.map({"bird": 0.65, "owl": 0.9, "flower": 0.51})
    assert weak.class_ids == (1, 2)
    assert weak.sources == {1: ("owl",), 2: ("flower",)}
    assert weak.below_threshold == {1: ("bird",)}
    only_weak = mapper.map({"bird": 0.7, "flower": 0.2})  # must exceed, not equal
    assert only_weak.class_ids == (2,)
    assert only_weak.below_threshold == {1: ("bird",)}
    # without probabilities the threshold cannot apply
    assert mapper.map(["bird"]).class_ids == (1,)


def test_tagger_result_objects() -> None:
    mapper = TagMapper(parse_mapping(THRESHOLD_YAML))
    result = FakeTagResult(("bird", "flower", "sky"), (0.6, 0.9, 0.8))
    mapped = mapper.map(result)
    assert mapped.class_ids == (2,)
    assert mapped.below_threshold == {1: ("bird",)}
    assert mapped.unmapped == ("sky",)
    assert mapper(result) == mapped
    assert mapper.map(FakeTagResult(("owl",))).class_ids == (1,)
    with pytest.raises(ValueError, match="2 tags but 1 probabilities"):
        mapper.map(FakeTagResult(("owl", "bird"), (0.9,)))


def test_bad_inputs(voc) -> None:
    mapper = TagMapper(voc)
    with pytest.raises(ValueError, match=r"not the single string 'dog'"):
        mapper("dog")
    with pytest.raises(ValueError, match=r"not the single string 'dog'"):
        mapper.map("dog")
    with pytest.raises(ValueError, match="tags must be strings"):
        mapper.map(["dog", 3])
    with pytest.raises(ValueError, match="not a mix"):
        mapper(["dog", ["cat"]])
    with pytest.raises(ValueError, match="one tag list per image"):
        mapper.map_batch("dog")
    with pytest.raises(ValueError, match="not a number"):
        mapper.map({"dog": "high"})
    with pytest.raises(ValueError, match="NaN"):
        mapper.map({"dog": float("nan")})
    with pytest.raises(ValueError, match="tags must be a list of strings"):
        mapper.map(3)


def test_call_dispatches_single_and_batch(voc) -> None:
    mapper = TagMapper(voc)
    single = mapper(["dog", "man"])
    assert isinstance(single, MappedClasses)
    batch = mapper([["dog"], ("motorcycle", "sofa"), [], {"cat": 0.9}])
    assert isinstance(batch, list)
    assert [m.class_ids for m in batch] == [(VOC_DOG,), (VOC_MOTORBIKE,), (), (VOC_CAT,)]
    assert batch == mapper.map_batch([["dog"], ("motorcycle", "sofa"), [], {"cat": 0.9}])
    empty = mapper([])
    assert isinstance(empty, MappedClasses) and empty.class_ids == ()
    assert mapper.map_batch([]) == []


def test_to_dict_is_json_ready(voc) -> None:
    mapped = TagMapper(voc).map(["man", "woman", "motorcycle", "sky"])
    report = json.loads(json.dumps(mapped.to_dict()))
    assert report == {
        "classes": [
            {"index": VOC_MOTORBIKE, "name": "motorbike", "tags": ["motorcycle"]},
            {"index": VOC_PERSON, "name": "person", "tags": ["man", "woman"]},
        ],
        "unmapped": ["sky"],
        "below_threshold": {},
    }


def test_user_mapping_file_round_trip(tmp_path: Path) -> None:
    """A user writes their own classes, loads them by path, and maps RAM tags with them."""
    path = tmp_path / "kitchen.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            # my kitchen classes
            name: kitchen
            classes:
              - index: 0
                name: background
              - index: 1
                name: mug
                prompt: coffee mug
                tags: [mug, coffee cup, teacup]
              - index: 2
                name: kettle
                tags: [kettle, tea pot]
                paper_synonyms: [kettle, pot]
            """
        ),
        encoding="utf-8",
    )
    exact = TagMapper(path)
    mapped = exact.map(["Coffee Cup", "tea pot", "hotpot", "table"])
    assert mapped.class_ids == (1, 2)
    assert mapped.class_names == ("mug", "kettle")
    assert mapped.sources == {1: ("Coffee Cup",), 2: ("tea pot",)}
    assert mapped.unmapped == ("hotpot", "table")
    assert exact.mapping.prompts == ("", "coffee mug", "kettle")
    paper = TagMapper(path, mode="paper").map(["Coffee Cup", "tea pot", "hotpot"])
    # paper synonyms default to the name: "coffee cup" holds no "mug"; "hotpot" holds "pot"
    assert paper.class_ids == (2,)
    assert paper.sources == {2: ("tea pot", "hotpot")}
    assert paper.unmapped == ("Coffee Cup",)


def test_mapper_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, samwsss.stages.mapper\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
