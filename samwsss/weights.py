"""Where the weights of each model a run loads are, and whether they can be had, found out
before any model loads.

A dataset run loads up to three models (Grounding DINO, SAM and RAM, or SAM 3), each named
by a registry name, a hub id, a local folder or file, or a URL. Loading one that is neither
on this machine nor downloadable costs minutes of the hub client's retries (five per file,
with backoff) and ends in an error that names no model. So, before anything loads:

- :func:`check_model_option` refuses at once a value that is a local path of the wrong kind
  (a text file as ``--masker``, a file as ``--boxer``) or a path that does not exist; it
  imports no torch;
- :func:`locate` says where a model's weights come from (a :class:`Weights`), and
  :meth:`Weights.available` whether they are here already: a local path; a hub repository
  in the Hugging Face cache (its ``config.json`` and weights, or the one file a RAM
  checkpoint is); a URL download in its cache file;
- :func:`preflight` probes the hosts that matter, once, in parallel and for at most
  :data:`PROBE_TIMEOUT` seconds, and raises one :class:`MissingWeightsError` naming every
  model that is neither here nor downloadable now, each with the command that fetches it
  and the option that takes a local copy. When everything is here but the hub cannot be
  reached, it asks for loading from the cache alone (:func:`hub_offline`), so that no
  request waits on retries;
- :func:`tidy_hub_logging` prints each line of the hub client once, and its retries as one
  line per repository.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from samwsss import registry, released
from samwsss.choices import GROUNDING_TAGGER, PRESENCE_TAGGER
from samwsss.released import RELEASED

logger = logging.getLogger(__name__)

#: Stage kinds whose weights a run loads, each set by the option ``--<kind>``.
KINDS = ("boxer", "masker", "segmenter", "tagger")
#: Seconds a reachability probe waits for an answer (all hosts are probed at once).
PROBE_TIMEOUT = 3.0
#: Environment variable overriding :data:`PROBE_TIMEOUT` (for slow networks).
PROBE_TIMEOUT_ENV = "SAMWSSS_PROBE_TIMEOUT"
#: What a local copy of each kind's weights is.
LOCAL_FORMS: dict[str, str] = {
    "boxer": "a Grounding DINO family folder written by save_pretrained",
    "masker": "a SAM / SAM-HQ / SAM 2 folder written by save_pretrained, or an official "
    "segment-anything .pth",
    "segmenter": "a SAM 3 folder written by save_pretrained",
    "tagger": "an official RAM / RAM++ .pth file",
}
#: A hub id of each kind, for messages.
_HUB_EXAMPLES = {
    "boxer": "IDEA-Research/grounding-dino-tiny",
    "masker": "facebook/sam-vit-base",
    "segmenter": "facebook/sam3",
}
#: Taggers that reuse another stage's model and load no weights of their own.
_REUSING_TAGGERS = (GROUNDING_TAGGER, PRESENCE_TAGGER)
#: Suffixes of checkpoint files: a value ending in one names a file, not a hub id.
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl")
#: Weights files of a transformers model, and the indexes of sharded ones.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "ON", "YES", "TRUE"}


class MissingWeightsError(OSError):
    """Weights a run needs are not on this machine and cannot be downloaded now; the
    message names each model, the command that fetches it and the option that takes a
    local copy."""


# -- cheap checks (no torch, no registry) ----------------------------------------------------
def check_model_option(kind: str, value: str | None) -> None:
    """Refuse at once a ``--<kind>`` value that names a local path of the wrong kind, or a
    path that does not exist. Registry names, hub ids and URLs of official SAM files pass
    (whether their weights are here is :func:`locate`'s question). Reads no weights and
    imports no torch.

    Args:
        kind: one of :data:`KINDS`.
        value: what the user gave (``None``: the preset's model, fine).

    Raises:
        ValueError: naming the option, the value, what is wrong and what to give instead.
    """
    if value is None or (kind == "tagger" and value in _REUSING_TAGGERS):
        return
    text = str(value)
    option = f"--{kind}"
    if "://" in text:
        if kind == "masker" and text.startswith(("http://", "https://")):
            return  # an official SAM checkpoint, downloaded into the torch hub cache
        raise ValueError(f"{option} {text}: a URL is not accepted here; {_what_to_give(kind)}")
    path = Path(text).expanduser()
    path_like = _looks_like_path(kind, text)
    if path.exists() and (path_like or "/" in text):
        check_local_weights(kind, text)
    elif path_like:
        raise ValueError(f"{option} {text}: no such file or folder; {_what_to_give(kind)}")


def _looks_like_path(kind: str, text: str) -> bool:
    """Whether ``text`` can only mean a local path (so it must exist), as opposed to a
    registry name or a hub id ``owner/name``."""
    if text in (".", "..") or text.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if "\\" in text or text.count("/") >= 2:
        return True
    has_suffix = text.lower().endswith(_FILE_SUFFIXES)
    if kind == "masker":  # a bare released file name (sam_vit_h_4b8939.pth) is downloaded
        return has_suffix and "/" in text
    if kind == "tagger":  # RAM takes registry names and files only, no hub ids
        return has_suffix or "/" in text
    return has_suffix


def _what_to_give(kind: str) -> str:
    hub = f", a hub id like {_HUB_EXAMPLES[kind]}" if kind in _HUB_EXAMPLES else ""
    return f"give a registry name (samwsss models lists them){hub}, or {LOCAL_FORMS[kind]}"


def check_local_weights(kind: str, value: str) -> Path:
    """``value`` as an existing local path of the form ``kind`` loads: a folder with
    ``config.json`` (boxer, segmenter, masker) or a PyTorch checkpoint file (masker,
    tagger), told apart from other files by its first bytes (no ``torch.load``).

    Raises:
        ValueError: no such path, or the wrong kind (a folder for a file, a folder without
            ``config.json``, an empty or text file as a checkpoint), with what to give.
    """
    option = f"--{kind}"
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"{option} {value}: no such file or folder; {_what_to_give(kind)}")
    if path.is_dir():
        if kind == "tagger":
            raise ValueError(f"{option} {value} is a folder; give {LOCAL_FORMS[kind]}")
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{option} {value} is a folder without config.json; give {LOCAL_FORMS[kind]}"
            )
        return path
    if kind in ("boxer", "segmenter"):
        raise ValueError(f"{option} {value} is a file, not a folder; give {LOCAL_FORMS[kind]}")
    reason = _not_a_checkpoint(path)
    if reason is not None:
        raise ValueError(
            f"{option} {value} is not a PyTorch checkpoint: {reason}; give {LOCAL_FORMS[kind]}"
        )
    return path


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file (a zip, or a pickle in the legacy
    format), or ``None`` when it may be one."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return f"it cannot be read ({error})"
    if not head:
        return "the file is empty"
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8].hex()}, neither a zip nor a pickle"
    if all(char.isprintable() or char.isspace() for char in text):
        return f"it is a text file (it starts with {text[:24]!r})"
    return f"it starts with the bytes {head[:8].hex()}, neither a zip nor a pickle"


# -- where weights are -----------------------------------------------------------------------
@dataclass(frozen=True)
class Weights:
    """Where one model's weights (or one data file a model needs) come from.

    Attributes:
        kind: the stage kind (``"boxer"``, ``"masker"``, ``"segmenter"``, ``"tagger"``) or
            ``"RAM vocabulary"``.
        name: what the run names it by (a registry name, hub id, path or URL).
        origin: ``"local"`` (a path here), ``"hub"`` (a Hugging Face repository) or
            ``"url"`` (a file downloaded into a cache).
        location: the path, the repository id or the URL.
        filename: hub only: the one file the model is (a RAM checkpoint); ``None``: a
            transformers model (its ``config.json`` and weights).
        repo_type: hub only: ``"model"`` or ``"space"``.
        url: where to download it in a browser (hub files and URL downloads).
        cache_file: url only: where the download is kept.
        gated: hub only: the repository needs an account that accepted its terms.
        local_option: how to pass a local copy instead (``"--masker PATH"``).
        local_form: what that local copy is.
    """

    kind: str
    name: str
    origin: str
    location: str
    filename: str | None = None
    repo_type: str = "model"
    url: str | None = None
    cache_file: str | None = None
    gated: bool = False
    local_option: str = ""
    local_form: str = ""

    @property
    def host(self) -> str:
        """What a download reaches: the hub endpoint, or the URL's ``scheme://host``."""
        if self.origin == "hub":
            return hub_endpoint()
        if self.origin == "url":
            parts = urlsplit(self.location)
            return f"{parts.scheme}://{parts.netloc}"
        return ""

    def available(self) -> bool:
        """Whether the weights are on this machine: the path exists, the hub repository is
        in the Hugging Face cache (:func:`hub_cache_dir`), or the download is in its cache
        file."""
        if self.origin == "local":
            return Path(self.location).exists()
        if self.origin == "url":
            return self.cache_file is not None and Path(self.cache_file).is_file()
        return in_hub_cache(self.location, self.filename, repo_type=self.repo_type)

    def describe(self) -> str:
        """One line: the model, where its weights come from, and that they are not here."""
        if self.origin == "hub":
            what = f"hub repository {self.location}"
            if self.filename is not None:
                what = f"{self.filename} of {what}"
            where = "not in the Hugging Face cache"
        else:
            what = self.location
            where = f"not in {self.cache_file}" if self.cache_file else "not found"
        if self.name in (self.location, self.filename):
            return f"{self.kind} {self.name}: {where}"
        return f"{self.kind} {self.name} ({what}): {where}"

    def fetch_command(self) -> str:
        """The command (or URL) that fetches the weights into the cache runs read."""
        if self.origin == "hub":
            cli = hub_cli()
            command = f"{cli} download {self.location}"
            if self.filename is not None:
                command += f" {self.filename}"
            if self.repo_type != "model":
                command += f" --repo-type {self.repo_type}"
            return command
        if self.origin == "url" and self.cache_file is not None:
            return f"curl -L --create-dirs -o {self.cache_file} {self.location}"
        return self.location


def locate(kind: str, value: str) -> Weights | None:
    """Where the weights of ``--<kind> value`` come from, as the stage's loader would find
    them (a released model's card first, then a local path, then a hub id or URL); ``None``
    for a tagger that reuses another stage's model (``grounding``, ``sam3-presence``).

    Reads the cards of :mod:`samwsss.released`: imports no stage module and no torch.

    Raises:
        ValueError: a local path of the wrong kind, or a value that is neither a released
            model's name, nor an existing path, nor a hub id (or, for the masker, an
            official SAM file name or URL); the message says what to give.
    """
    if kind == "tagger" and value in _REUSING_TAGGERS:
        return None
    check_model_option(kind, value)
    found = registry.released(kind, value)
    option = f"--{kind}"
    local: dict[str, Any] = {"local_option": f"{option} PATH", "local_form": LOCAL_FORMS[kind]}
    if found is None and Path(value).expanduser().exists():
        path = check_local_weights(kind, value)
        return Weights(kind, value, "local", str(path), **local)
    source = found.weights if found is not None else value
    if kind == "tagger":
        official = released.OFFICIAL_RAM_WEIGHTS.get(value)
        if official is None:
            raise ValueError(f"{option} {value!r}: {_unknown(kind, value)}")
        return Weights(
            kind, value, "hub", official.repo_id, filename=official.filename,
            repo_type=official.repo_type, url=official.url, **local,
        )  # fmt: skip
    if kind == "masker":
        download = released.official_sam_download(source)
        if download is not None:
            url, filename = download
            cache = torch_hub_dir() / "checkpoints" / filename
            return Weights(kind, value, "url", url, url=url, cache_file=str(cache), **local)
    if not HUB_ID.match(source):
        raise ValueError(f"{option} {value!r}: {_unknown(kind, value)}")
    gated = found is not None and found.gated
    return Weights(kind, value, "hub", source, gated=gated, **local)


def _unknown(kind: str, value: str) -> str:
    """Why ``value`` names nothing ``kind`` loads, with the closest released names."""
    names = [entry.name for entry in RELEASED[kind]]
    if kind == "tagger":
        names += list(_REUSING_TAGGERS)
    close = difflib.get_close_matches(value, names, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    forms = "registered name" if kind == "tagger" else "registered name, nor a hub id owner/name"
    return (
        f"neither an existing file or folder, nor a {forms}{hint}; registered: "
        f"{', '.join(names)}; or give {LOCAL_FORMS[kind]}"
    )


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``: asked of torch when it is imported (``set_dir`` may have
    moved it), else computed as torch does (``$TORCH_HOME/hub``, else
    ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``) without importing it."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir())
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))
    return Path(os.path.expanduser(home)) / "hub"


# -- the Hugging Face cache and hub -------------------------------------------------------------
def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment sets it now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``), as huggingface_hub reads it when it is imported."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
        "huggingface",
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def in_hub_cache(repo_id: str, filename: str | None = None, *, repo_type: str = "model") -> bool:
    """Whether hub repository ``repo_id`` is in the cache (its ``main`` revision): the one
    file ``filename``, or, when ``None``, a transformers model's ``config.json`` with its
    weights (every shard of a sharded one). Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    try:
        found = try_to_load_from_cache(
            repo_id, filename or "config.json", cache_dir=cache, repo_type=repo_type
        )
    except ValueError:  # not a valid repo id (HFValidationError)
        return False
    if not isinstance(found, str):
        return False
    if filename is not None:
        return True
    snapshot = Path(found).parent
    for index_name in _WEIGHT_INDEXES:
        index = snapshot / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False
            return all((snapshot / shard).is_file() for shard in shards)
    return any((snapshot / name).is_file() for name in _WEIGHT_FILES)


def hub_endpoint() -> str:
    """The Hugging Face Hub's address (``HF_ENDPOINT``, default ``https://huggingface.co``)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def hub_offline_requested() -> bool:
    """Whether the user switched the hub client off (``HF_HUB_OFFLINE`` or
    ``TRANSFORMERS_OFFLINE``, read now and as huggingface_hub read it)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any((flag or "").upper() in _TRUE for flag in flags)


def hub_cli() -> str:
    """The command line the installed huggingface_hub ships: ``hf`` (0.34 and later) or
    ``huggingface-cli`` (older releases)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        scripts = {
            entry.name
            for entry in distribution("huggingface_hub").entry_points
            if entry.group == "console_scripts"
        }
    except PackageNotFoundError:
        return "hf"
    return "huggingface-cli" if "hf" not in scripts and "huggingface-cli" in scripts else "hf"


def _login_command() -> str:
    return "hf auth login" if hub_cli() == "hf" else "huggingface-cli login"


def _hub_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


@contextlib.contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """Within the block (when ``active``), transformers and huggingface_hub read their
    cache alone and make no request, in this process and in those it starts
    (``HF_HUB_OFFLINE=1``); both settings are restored afterwards."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    saved_constant = constants.HF_HUB_OFFLINE
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


# -- reachability ----------------------------------------------------------------------------------
def probe_timeout() -> float:
    """:data:`PROBE_TIMEOUT`, or ``$SAMWSSS_PROBE_TIMEOUT`` seconds when set.

    Raises:
        ValueError: the variable is not a positive number.
    """
    text = os.environ.get(PROBE_TIMEOUT_ENV)
    if not text:
        return PROBE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${PROBE_TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def probe(hosts: Iterable[str], timeout: float) -> dict[str, str | None]:
    """Ask every host at once for an answer (an HTTP ``HEAD``), waiting ``timeout``
    seconds in all; ``{host: None}`` for each that answered (any HTTP status, or a TLS
    handshake that failed: something is there), else ``{host: why not}``.

    A name lookup that hangs does not hold the caller: each probe runs in a daemon thread.
    """
    results: dict[str, str | None] = {}
    threads = []

    def ask(host: str) -> None:
        request = urllib.request.Request(host, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # it answered
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ssl.SSLError):
                results[host] = str(error.reason)
                return
        except (OSError, ValueError) as error:
            results[host] = str(error) or type(error).__name__
            return
        results[host] = None

    for host in dict.fromkeys(hosts):
        thread = threading.Thread(target=ask, args=(host,), name=f"probe {host}", daemon=True)
        thread.start()
        threads.append((host, thread))
    end = time.monotonic() + timeout
    for _, thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return {host: results[host] if host in results else "timed out" for host, _ in threads}


# -- the preflight ---------------------------------------------------------------------------------
def preflight(weights: Sequence[Weights], *, timeout: float | None = None) -> bool:
    """Make sure every model of ``weights`` can be loaded, before any is.

    Missing weights are fine when their host answers (they download as usual). Probed:
    the hub when any weights come from it and ``HF_HUB_OFFLINE`` is not set (so that cached
    models load without waiting on retries when it is down), and the host of each
    missing URL download.

    Args:
        weights: :func:`run_weights`.
        timeout: seconds for all probes together (default :func:`probe_timeout`).

    Returns:
        ``True`` when the hub is off or unreachable and everything from it is cached: load
        the models within :func:`hub_offline`.

    Raises:
        MissingWeightsError: once, naming every model that is neither here nor
            downloadable now; or a gated model to download without a token.
    """
    missing = [entry for entry in weights if not entry.available()]
    uses_hub = any(entry.origin == "hub" for entry in weights)
    hub = hub_endpoint()
    offline = hub_offline_requested()
    hosts = {entry.host for entry in missing if entry.origin == "url"}
    if uses_hub and not offline:
        hosts.add(hub)
    wait = probe_timeout() if timeout is None else timeout
    answers = probe(sorted(hosts), wait) if hosts else {}
    reasons: dict[str, str] = {}
    for host, answer in answers.items():
        if answer is not None:
            reasons[host] = _unreachable(host, answer, wait, hub)
    if offline:
        reasons[hub] = "HF_HUB_OFFLINE is set: unset it (or set HF_HUB_OFFLINE=0) to download"
    unreachable = [entry for entry in missing if entry.host in reasons]
    if unreachable:
        raise MissingWeightsError(_missing_message(unreachable, reasons))
    locked = [e for e in missing if e.origin == "hub" and e.gated and _hub_token() is None]
    if locked:
        raise MissingWeightsError(_gated_message(locked))
    for entry in missing:
        logger.info("%s %s: not cached, downloading it", entry.kind, entry.name)
    return uses_hub and hub in reasons


def _unreachable(host: str, answer: str, timeout: float, hub: str) -> str:
    what = f"the Hugging Face Hub ({host})" if host == hub else host
    if answer == "timed out":
        return (
            f"{what} did not answer within {timeout:g} s (on a slow network, set "
            f"{PROBE_TIMEOUT_ENV} to more seconds)"
        )
    return f"{what} cannot be reached: {answer}"


def _missing_message(missing: Sequence[Weights], reasons: dict[str, str]) -> str:
    count = len(missing)
    hosts = list(dict.fromkeys(entry.host for entry in missing))
    lines = [
        f"{count} file{'s' if count != 1 else ''} this run needs "
        f"{'are' if count != 1 else 'is'} not on this machine and cannot be downloaded now "
        f"({'; '.join(reasons[host] for host in hosts)}):"
    ]
    for entry in missing:
        lines.append(f"  - {entry.describe()}")
        lines.append(f"      fetch it:  {entry.fetch_command()}")
        if entry.origin == "hub" and entry.url is not None:
            lines.append(f"        (or download {entry.url})")
        if entry.gated:
            lines.append(
                f"        gated: accept its terms on {hub_endpoint()}/{entry.location}, then "
                f"log in ({_login_command()}, or set HF_TOKEN) before fetching"
            )
        lines.append(f"      or use a local copy:  {entry.local_option} ({entry.local_form})")
    if any(entry.origin == "hub" for entry in missing):
        lines.append(
            f"{hub_cli()} download fills the Hugging Face cache that runs read "
            f"({hub_cache_dir()}; HF_HOME moves it): run it here once the hub can be reached, "
            "or on another machine and copy the cache here"
        )
    return "\n".join(lines)


def _gated_message(locked: Sequence[Weights]) -> str:
    lines = ["gated models need a Hugging Face login to download:"]
    for entry in locked:
        lines.append(
            f"  - {entry.kind} {entry.name} ({entry.location}): accept its terms on "
            f"{hub_endpoint()}/{entry.location}, then run {_login_command()} (or set "
            f"HF_TOKEN); or use a local copy: {entry.local_option} ({entry.local_form})"
        )
    return "\n".join(lines)


# -- the hub client's log lines -------------------------------------------------------------------
_REQUEST = re.compile(r"^(?P<error>.*) thrown while requesting (?P<method>\S+) (?P<url>\S+)$")
_RETRY = ("Retrying in ", "Rate limited.")


def _repository(url: str) -> str:
    """``owner/name`` of a hub URL (``.../owner/name/resolve/...``), else the URL's host."""
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if parts and parts[0] == "api":
        parts = parts[1:]
    if parts and parts[0] in ("models", "spaces", "datasets"):
        parts = parts[1:]
    return "/".join(parts[:2]) if len(parts) >= 2 else urlsplit(url).netloc or url


class HubRetryFilter(logging.Filter):
    """Keeps one line per repository of the hub client's failed requests, reworded to say
    that it retries, and drops its ``Retrying in ...`` lines; at ``-vv`` (the ``samwsss``
    logger at DEBUG) every line passes as it is."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown (the first failure per repository is reworded)."""
        if logging.getLogger("samwsss").isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        if message.startswith(_RETRY):
            return False
        match = _REQUEST.match(message)
        if match is None:
            return True
        repository = _repository(match["url"])
        if repository in self._seen:
            return False
        self._seen.add(repository)
        record.msg = (
            f"request for {repository} failed ({match['error']}); retrying (-vv shows each attempt)"
        )
        record.args = ()
        return True


def tidy_hub_logging() -> None:
    """Print each log line of huggingface_hub once, and its retries as one line per
    repository.

    huggingface_hub gives its logger a handler of its own and also lets records reach the
    root logger: once the root logger has a handler (the CLI's ``logging.basicConfig``)
    every line printed twice. Its own handler is removed in that case, so lines print once
    in the root's format; a :class:`HubRetryFilter` goes on its HTTP logger. Idempotent.
    """
    try:
        from huggingface_hub.utils import logging as hub_logging  # adds its handler
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return
    library = hub_logging.get_logger("huggingface_hub")
    if logging.getLogger().handlers:
        for handler in list(library.handlers):
            if type(handler) is logging.StreamHandler:
                library.removeHandler(handler)
    http = hub_logging.get_logger("huggingface_hub.utils._http")
    if not any(isinstance(existing, HubRetryFilter) for existing in http.filters):
        http.addFilter(HubRetryFilter())
