"""RAM's tag vocabulary and per-tag thresholds: fetched at run time, cached, or local files.

The files are data from the recognize-anything repository (Apache-2.0), read at a pinned
commit so that every user gets the same 4,585 tags in the same order (the order is the
model's output order). They are not vendored in this package. Where they come from, in
order:

1. paths given by the caller (``tag_list=``, ``thresholds=``);
2. the folder named by ``$SAMWSSS_RAM_DATA`` (holding ``ram_tag_list.txt`` and
   ``ram_tag_list_threshold.txt``), for machines without network;
3. the cache, ``$SAMWSSS_CACHE/ram/<commit>/`` (default ``~/.cache/samwsss/ram/<commit>/``);
4. a download from GitHub (raw files at the pinned commit) into the cache.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samwsss.atomic import atomic_write_bytes
from samwsss.mapping import normalize_tag
from samwsss.weights import Weights

logger = logging.getLogger(__name__)

#: recognize-anything commit the vocabulary is read from.
RAM_DATA_COMMIT = "7cb804a8609e9f4b1a50b7f31436d2df40bb9481"
#: Raw-file base URL at that commit (``{base}/{file name}``).
RAM_DATA_BASE_URL = (
    f"https://raw.githubusercontent.com/xinyu1205/recognize-anything/{RAM_DATA_COMMIT}/ram/data"
)
TAG_LIST_FILE = "ram_tag_list.txt"
THRESHOLD_FILE = "ram_tag_list_threshold.txt"
#: Number of tags of the official vocabulary.
NUM_OFFICIAL_TAGS = 4585
#: Environment variable naming a local folder with the two files.
DATA_ENV = "SAMWSSS_RAM_DATA"
#: Environment variable naming the samwsss cache root.
CACHE_ENV = "SAMWSSS_CACHE"


class VocabularyUnavailableError(OSError):
    """The vocabulary files could not be downloaded; the message says how to pass local files."""


def cache_root() -> Path:
    """samwsss cache root: ``$SAMWSSS_CACHE``, else ``$XDG_CACHE_HOME/samwsss``, else
    ``~/.cache/samwsss``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "samwsss"
    return Path.home() / ".cache" / "samwsss"


def ram_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the cached vocabulary files of the pinned commit."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "ram"
    return root / RAM_DATA_COMMIT


@dataclass(frozen=True)
class RAMVocabulary:
    """RAM tags (index = model output row) and their official thresholds.

    Attributes:
        tags: tag texts in model order, as the official file writes them.
        thresholds: official probability threshold of each tag (a tag is on when
            ``sigmoid(logit) > threshold``).
        source: where the files were read from (for logs and manifests).
    """

    tags: tuple[str, ...]
    thresholds: tuple[float, ...]
    source: str = "<memory>"
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.tags:
            raise ValueError(f"RAM vocabulary from {self.source} has no tags")
        if len(self.tags) != len(self.thresholds):
            raise ValueError(
                f"RAM vocabulary from {self.source}: {len(self.tags)} tags but "
                f"{len(self.thresholds)} thresholds; the two files must have one line per tag"
            )
        bad = [(i, t) for i, t in enumerate(self.thresholds) if not 0.0 <= t <= 1.0]
        if bad:
            raise ValueError(
                f"RAM vocabulary from {self.source}: thresholds must be in [0, 1], got "
                + ", ".join(f"line {i + 1}: {t}" for i, t in bad[:5])
            )
        index: dict[str, int] = {}
        for position, tag in enumerate(self.tags):
            index.setdefault(normalize_tag(tag), position)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.tags)

    def index_of(self, tag: str) -> int | None:
        """Row of ``tag`` (compared lower-cased, whitespace collapsed), or ``None``."""
        return self._index.get(normalize_tag(tag))

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and self.index_of(tag) is not None

    @classmethod
    def from_files(
        cls, tag_list: str | os.PathLike[str], thresholds: str | os.PathLike[str]
    ) -> RAMVocabulary:
        """Read ``ram_tag_list.txt`` (one tag a line) and ``ram_tag_list_threshold.txt``.

        Raises:
            ValueError: a file is missing, unreadable or malformed (the message names it).
        """
        tags = _read_lines(Path(tag_list), "tag list")
        return cls(tuple(tags), read_thresholds(thresholds), source=f"{tag_list} + {thresholds}")


def read_thresholds(path: str | os.PathLike[str]) -> tuple[float, ...]:
    """The numbers of a ``ram_tag_list_threshold.txt``-style file, one per line.

    Raises:
        ValueError: the file is missing or a line is not a number.
    """
    parsed: list[float] = []
    for number, text in enumerate(_read_lines(Path(path), "threshold file"), start=1):
        try:
            parsed.append(float(text))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: threshold {text!r} is not a number") from error
    return tuple(parsed)


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise ValueError(f"RAM {what} {str(path)!r} not found: pass the path of the file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read RAM {what} {str(path)!r}: {error}") from error
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if any(not line.strip() for line in lines):
        empty = [i + 1 for i, line in enumerate(lines) if not line.strip()][:5]
        raise ValueError(f"RAM {what} {str(path)!r} has empty lines (lines {empty})")
    return [line.strip() for line in lines]


def download_vocabulary_file(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str = RAM_DATA_BASE_URL,
    timeout: float = 30.0,
) -> Path:
    """Path of the cached vocabulary file ``name``, downloading it first if absent.

    Args:
        name: ``"ram_tag_list.txt"`` or ``"ram_tag_list_threshold.txt"``.
        cache_dir: cache root for RAM data (default ``$SAMWSSS_CACHE/ram``); files go under
            ``<cache_dir>/<commit>/``.
        base_url: where the files are (default: GitHub raw files at the pinned commit).
        timeout: seconds to wait for the server.

    Raises:
        VocabularyUnavailableError: the download failed (offline, blocked); the message
            says how to pass local files instead.
    """
    target = ram_cache_dir(cache_dir) / name
    if target.is_file():
        return target
    url = f"{base_url.rstrip('/')}/{name}"
    logger.info("downloading RAM %s from %s", name, url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise VocabularyUnavailableError(
            f"could not download the RAM vocabulary file {name} from {url} ({error}). "
            f"Without network, get {TAG_LIST_FILE} and {THRESHOLD_FILE} from "
            f"github.com/xinyu1205/recognize-anything (ram/data/, commit {RAM_DATA_COMMIT[:7]}) "
            f"and pass them as tag_list=/thresholds= (CLI: --ram-vocabulary/--ram-thresholds), or "
            f"put both in a folder named by ${DATA_ENV}, or copy them into {target.parent}"
        ) from error
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, payload)
    return target


def load_vocabulary(
    tag_list: str | os.PathLike[str] | None = None,
    thresholds: str | os.PathLike[str] | Sequence[float] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str = RAM_DATA_BASE_URL,
) -> RAMVocabulary:
    """The RAM vocabulary from local files, ``$SAMWSSS_RAM_DATA``, the cache or GitHub.

    Args:
        tag_list: path of ``ram_tag_list.txt``; ``None`` = look it up as the module says.
        thresholds: path of ``ram_tag_list_threshold.txt`` or one float per tag; ``None`` =
            look it up.
        cache_dir: RAM cache root (default ``$SAMWSSS_CACHE/ram``).
        base_url: download location (tests point it at a ``file://`` folder).

    Raises:
        ValueError: a given file is missing or malformed, or the counts differ.
        VocabularyUnavailableError: a file had to be downloaded and could not be.
    """
    env_dir = Path(os.environ[DATA_ENV]).expanduser() if os.environ.get(DATA_ENV) else None

    def locate(name: str) -> Path:
        if env_dir is not None:
            candidate = env_dir / name
            if candidate.is_file():
                return candidate
            logger.warning("$%s=%s has no %s; using the cache", DATA_ENV, env_dir, name)
        return download_vocabulary_file(name, cache_dir, base_url=base_url)

    tag_path = Path(tag_list) if tag_list is not None else locate(TAG_LIST_FILE)
    if thresholds is None or isinstance(thresholds, (str, os.PathLike)):
        threshold_path = Path(thresholds) if thresholds is not None else locate(THRESHOLD_FILE)
        return RAMVocabulary.from_files(tag_path, threshold_path)
    tags = _read_lines(tag_path, "tag list")
    return RAMVocabulary(tuple(tags), tuple(float(t) for t in thresholds), source=str(tag_path))


def vocabulary_weights(tag_list: str | None, thresholds: str | None) -> list[Weights]:
    """The RAM vocabulary files a RAM tagger will read: those not given, found (or not) as
    this module looks them up (``$SAMWSSS_RAM_DATA``, then the cache), for the weights
    preflight (:func:`samwsss.weights.preflight`)."""
    env_dir = os.environ.get(DATA_ENV)
    files = []
    for given, name, option in (
        (tag_list, TAG_LIST_FILE, "--ram-vocabulary"),
        (thresholds, THRESHOLD_FILE, "--ram-thresholds"),
    ):
        if given is not None:
            continue
        local: dict[str, Any] = {
            "local_option": f"{option} FILE",
            "local_form": f"or a folder holding both files, named by ${DATA_ENV}",
        }
        if env_dir and (Path(env_dir).expanduser() / name).is_file():
            path = Path(env_dir).expanduser() / name
            files.append(Weights("RAM vocabulary", name, "local", str(path), **local))
            continue
        url = f"{RAM_DATA_BASE_URL}/{name}"
        cache = ram_cache_dir() / name
        files.append(
            Weights("RAM vocabulary", name, "url", url, url=url, cache_file=str(cache), **local)
        )
    return files
