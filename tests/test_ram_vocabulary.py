"""RAM vocabulary and thresholds: files, cache, download path (file:// only), real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samwsss.mapping import load_mapping, normalize_tag
from samwsss.ram import vocabulary as vocab_module
from samwsss.ram.vocabulary import (
    NUM_OFFICIAL_TAGS,
    RAM_DATA_BASE_URL,
    RAM_DATA_COMMIT,
    RAMVocabulary,
    VocabularyUnavailableError,
    load_vocabulary,
)


def _shared_ram_data() -> Path:
    if os.environ.get("SAMWSSS_RAM_DATA"):
        return Path(os.environ["SAMWSSS_RAM_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "ram"


SHARED = _shared_ram_data()
needs_shared = pytest.mark.skipif(
    not (SHARED / "ram_tag_list.txt").is_file(), reason=f"RAM data not found in {SHARED}"
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "ram_tag_list.txt").write_text("3D CG rendering\ncat\nDog\n", encoding="utf-8")
    (folder / "ram_tag_list_threshold.txt").write_text("0.65\n0.8\n0.9\n", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAMWSSS_RAM_DATA", raising=False)
    monkeypatch.setenv("SAMWSSS_CACHE", str(tmp_path / "cache"))


def test_pinned_commit_url() -> None:
    assert len(RAM_DATA_COMMIT) == 40
    assert RAM_DATA_BASE_URL == (
        f"https://raw.githubusercontent.com/xinyu1205/recognize-anything/{RAM_DATA_COMMIT}/ram/data"
    )


def test_from_files_and_lookup(source: Path) -> None:
    vocab = RAMVocabulary.from_files(
        source / "ram_tag_list.txt", source / "ram_tag_list_threshold.txt"
    )
    assert vocab.tags == ("3D CG rendering", "cat", "Dog") and vocab.thresholds == (0.65, 0.8, 0.9)
    assert vocab.index_of("3d  cg rendering") == 0 and vocab.index_of("dog") == 2
    assert vocab.index_of("bird") is None and "Cat" in vocab and len(vocab) == 3


def test_malformed_files_are_rejected(source: Path) -> None:
    tags = source / "ram_tag_list.txt"
    thresholds = source / "ram_tag_list_threshold.txt"
    thresholds.write_text("0.65\n0.8\n", encoding="utf-8")
    with pytest.raises(ValueError, match="3 tags but 2 thresholds"):
        RAMVocabulary.from_files(tags, thresholds)
    thresholds.write_text("0.65\nhigh\n0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r":2: threshold 'high'"):
        RAMVocabulary.from_files(tags, thresholds)
    with pytest.raises(ValueError, match="not found"):
        RAMVocabulary.from_files(source / "absent.txt", thresholds)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RAMVocabulary(("a",), (1.5,))


def test_download_into_cache_then_offline(source: Path, tmp_path: Path) -> None:
    url = source.as_uri()
    vocab = load_vocabulary(base_url=url)
    cached = tmp_path / "cache" / "ram" / RAM_DATA_COMMIT
    assert (cached / "ram_tag_list.txt").is_file() and (
        cached / "ram_tag_list_threshold.txt"
    ).is_file()
    assert vocab.tags == ("3D CG rendering", "cat", "Dog")
    # Once cached, the source is no longer needed.
    for file in source.iterdir():
        file.unlink()
    assert load_vocabulary(base_url=url) == vocab


def test_offline_error_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(VocabularyUnavailableError) as info:
        load_vocabulary(base_url=(tmp_path / "nowhere").as_uri())
    message = str(info.value)
    assert (
        "tag_list=" in message and "SAMWSSS_RAM_DATA" in message and "ram_tag_list.txt" in message
    )


def test_local_paths_and_env_folder(
    source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unreachable = (tmp_path / "nowhere").as_uri()
    given = load_vocabulary(source / "ram_tag_list.txt", [0.1, 0.2, 0.3], base_url=unreachable)
    assert given.thresholds == (0.1, 0.2, 0.3)
    monkeypatch.setenv("SAMWSSS_RAM_DATA", str(source))
    from_env = load_vocabulary(base_url=unreachable)
    assert from_env.tags == ("3D CG rendering", "cat", "Dog")
    assert not (tmp_path / "cache").exists()  # nothing downloaded or cached


def test_cache_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert vocab_module.ram_cache_dir() == tmp_path / "cache" / "ram" / RAM_DATA_COMMIT
    monkeypatch.delenv("SAMWSSS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vocab_module.cache_root() == tmp_path / "xdg" / "samwsss"


@needs_shared
def test_official_vocabulary_files() -> None:
    vocab = load_vocabulary(SHARED / "ram_tag_list.txt", SHARED / "ram_tag_list_threshold.txt")
    assert len(vocab) == NUM_OFFICIAL_TAGS == 4585
    assert len(vocab.thresholds) == 4585
    assert all(0.0 < t <= 1.0 for t in vocab.thresholds)
    assert len({normalize_tag(t) for t in vocab.tags}) == 4585  # lookups are unambiguous


@needs_shared
def test_every_mapping_tag_is_a_ram_tag() -> None:
    vocab = load_vocabulary(SHARED / "ram_tag_list.txt", SHARED / "ram_tag_list_threshold.txt")
    mapping_dir = Path(__file__).resolve().parents[1] / "mappings"
    files = sorted(mapping_dir.glob("*.yaml"))
    if not files:
        pytest.skip(f"no mapping files in {mapping_dir}")
    for file in files:
        mapping = load_mapping(file)
        unknown = [tag for entry in mapping.classes for tag in entry.tags if tag not in vocab]
        assert not unknown, f"{file.name}: tags not in the RAM vocabulary: {unknown}"
