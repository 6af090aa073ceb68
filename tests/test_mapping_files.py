"""The shipped mappings (mappings/voc.yaml, mappings/coco.yaml) against the dataset class
lists, the survey authors' prompts and synonyms, and RAM's tag vocabulary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from samwsss.classes import COCO_CLASSES, VOC_CLASSES
from samwsss.mapping import builtin_mapping_path, load_mapping, normalize_tag


def ram_data_dir() -> Path:
    """RAM's data files: $SAMWSSS_RAM_DATA, else <root>/shared/data/ram beside the repo."""
    override = os.environ.get("SAMWSSS_RAM_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "ram"


@pytest.fixture(scope="module")
def ram_vocabulary() -> list[str]:
    path = ram_data_dir() / "ram_tag_list.txt"
    if not path.is_file():
        pytest.skip(f"RAM tag list not found at {path} (set SAMWSSS_RAM_DATA to its folder)")
    tags = path.read_text(encoding="utf-8").splitlines()
    assert len(tags) == 4585, f"{path} should hold RAM's 4,585 tags, has {len(tags)}"
    return tags


VOC_PAPER = {
    "aeroplane": ("plane",),
    "diningtable": ("table",),
    "person": ("person", "man", "woman", "boy", "girl", "child", "baby"),
    "pottedplant": ("plant",),
    "sofa": ("couch",),
    "tvmonitor": ("monitor", "screen", "television"),
}
COCO_PAPER = {
    "person": ("person", "man", "woman", "boy", "girl", "child", "baby"),
    "airplane": ("plane",),
    "fire hydrant": ("hydrant",),
    "handbag": ("bag",),
    "suitcase": ("luggage",),
    "skis": ("ski",),
    "sports ball": ("ball",),
    "potted plant": ("plant",),
    "dining table": ("table",),
    "toilet": ("toilet", "bathroom"),
    "tv": ("screen", "television", "monitor"),
    "cell phone": ("phone",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy",),
}
VOC_PROMPTS = {"bird": "wild bird", "diningtable": "dining table", "tvmonitor": "monitor/tv"}

SHIPPED = {"voc": (VOC_CLASSES, VOC_PAPER), "coco": (COCO_CLASSES, COCO_PAPER)}


def raw_tags(name: str) -> list[tuple[str, str]]:
    """``(class name, tag as written in the file)`` for every tag of a shipped file."""
    document = yaml.safe_load(builtin_mapping_path(name).read_text(encoding="utf-8"))
    return [(c["name"], tag) for c in document["classes"] for tag in c.get("tags", [])]


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_shipped_mapping_loads_with_the_dataset_classes(name: str) -> None:
    classes, _ = SHIPPED[name]
    mapping = load_mapping(name)
    assert mapping.name == name
    assert mapping.class_names == classes
    assert [c.index for c in mapping.classes] == list(range(len(classes)))
    assert all(c.threshold is None for c in mapping.classes)
    assert all(c.tags for c in mapping.classes[1:]), "every class needs at least one tag"


def test_voc_prompts_are_the_authors() -> None:
    mapping = load_mapping("voc")
    for entry in mapping.classes[1:]:
        assert entry.prompt == VOC_PROMPTS.get(entry.name, entry.name), entry.name
    assert mapping.classes[3].prompt == "wild bird"
    assert mapping.classes[11].prompt == "dining table"
    assert mapping.classes[20].prompt == "monitor/tv"


def test_coco_prompts_are_the_category_names() -> None:
    mapping = load_mapping("coco")
    assert mapping.prompts[1:] == COCO_CLASSES[1:]


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_paper_synonyms_are_the_authors(name: str) -> None:
    _, paper = SHIPPED[name]
    for entry in load_mapping(name).classes[1:]:
        assert entry.paper_synonyms == paper.get(entry.name, (entry.name,)), entry.name


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_every_tag_is_in_ram_vocabulary(name: str, ram_vocabulary: list[str]) -> None:
    vocabulary = set(ram_vocabulary)
    written = raw_tags(name)
    missing = [f"{cls}: {tag!r}" for cls, tag in written if tag not in vocabulary]
    assert not missing, "tags not in RAM's vocabulary (check spelling and case): " + ", ".join(
        missing
    )
    # and the loader's normalised forms are RAM tags too
    normalised = {normalize_tag(tag) for tag in ram_vocabulary}
    for entry in load_mapping(name).classes:
        assert set(entry.tags) <= normalised, entry.name


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_class_names_that_are_ram_tags_reach_their_class(
    name: str, ram_vocabulary: list[str]
) -> None:
    mapping = load_mapping(name)
    vocabulary = {normalize_tag(tag) for tag in ram_vocabulary}
    for entry in mapping.classes[1:]:
        key = normalize_tag(entry.name)
        if key in vocabulary:
            assert mapping.class_of_tag(key) == entry.index, entry.name


@pytest.mark.parametrize(
    ("name", "tag", "index"),
    [
        ("voc", "motorcycle", 14),
        ("voc", "couch", 18),
        ("voc", "television", 20),
        ("voc", "man", 15),
        ("voc", "puffin", 3),
        ("coco", "motorcycle", 4),
        ("coco", "fridge", 73),
        ("coco", "hydrant", 11),
        ("coco", "teddy", 78),
        ("coco", "luggage", 29),
    ],
)
def test_synonym_tags_reach_their_class(name: str, tag: str, index: int) -> None:
    assert load_mapping(name).class_of_tag(tag) == index


# Tags that contain a class word but do not mean the class: none may map to it.
TRAPS = {
    "voc": {
        "bush": None,
        "business": None,
        "businessman": 15,
        "card": None,
        "headscarf": None,
        "cathedral": None,
        "catamaran": 4,
        "strainer": None,
        "trainer": None,
        "batman": None,
        "ladybird": None,
        "gravy boat": None,
        "hot dog": None,
        "sheepdog": 12,
        "seahorse": None,
        "snowman": None,
        "mannequin": None,
        "german shepherd": 12,
        "doberman": 12,
        "plant": None,
        "eggplant": None,
        "screen": None,
        "projection screen": None,
        "police car": None,
        "cable car": None,
        "cattle": 10,
        "coach": None,
        "kiwi": None,
        "bus stop": None,
        "car door": None,
        "table tennis": None,
        "side table": None,
        "vegetable": None,
        "cowboy": 15,
        "cardinal": 3,
        "sidecar": 14,
        "train car": 19,
    },
    "coco": {
        "zebra crossing": None,
        "toilet bowl": 62,
        "super bowl": None,
        "bowling": None,
        "beard": None,
        "ballet": None,
        "balloon": None,
        "meatball": None,
        "cupcake": 56,
        "cupid": None,
        "pineapple": None,
        "forklift": None,
        "pitchfork": None,
        "flower bed": None,
        "riverbed": None,
        "bathroom": None,
        "notebook": None,
        "microphone": None,
        "bagel": None,
        "garbage truck": 8,
        "police car": 3,
        "skier": 1,
        "miniskirt": None,
        "patient": 1,
        "mousetrap": None,
        "snowboarder": 1,
        "table tennis racket": None,
        "musical keyboard": None,
    },
}


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_trap_tags_do_not_reach_a_wrong_class(name: str) -> None:
    mapping = load_mapping(name)
    wrong = {
        tag: (mapping.class_of_tag(tag), expected)
        for tag, expected in TRAPS[name].items()
        if mapping.class_of_tag(tag) != expected
    }
    assert not wrong, f"tag: (got, expected) {wrong}"


def test_shipped_files_start_with_a_format_header() -> None:
    for name in ("voc", "coco"):
        text = builtin_mapping_path(name).read_text(encoding="utf-8")
        header = text[: text.index("\nname:")]
        assert all(line.startswith("#") or not line for line in header.splitlines())
        for key in ("index", "name", "prompt", "tags", "paper_synonyms", "threshold"):
            assert f"#     {key}" in header or f"#   {key}" in header, (name, key)
        assert "Curation principle" in header
