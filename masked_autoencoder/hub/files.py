"""Find a checkpoint's files (a local file or folder, or a Hub repo through huggingface_hub's cache) and read them."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file

from .known_weights import OFFICIAL, known_by_file_name

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
# In order of preference: safetensors needs no unpickling at all.
WEIGHT_FILES = (SAFETENSORS_FILE, "pytorch_model.bin")
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
HUB_TIMEOUT = 5.0
"""Seconds we wait for the Hub's answer about a file (huggingface_hub's own 10 s is long to say it is down);
HF_HUB_ETAG_TIMEOUT, when set, wins."""
# Statuses of a Hub that did not answer the question: it is overloaded (429) or failing (5xx).
_TOO_MANY_REQUESTS = 429
_SERVER_ERRORS = 500


def _timeout() -> float:
    """HUB_TIMEOUT, unless the user set HF_HUB_ETAG_TIMEOUT."""
    set_by_user = constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT
    return constants.HF_HUB_ETAG_TIMEOUT if set_by_user else HUB_TIMEOUT


@dataclass(frozen=True)
class HubOptions:
    """How to ask the Hub for a checkpoint, with huggingface_hub's meanings (``from_pretrained``'s keywords)."""

    revision: str | None = None
    cache_dir: str | Path | None = None
    token: str | bool | None = None


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a checkpoint's files are: its weights and, when it has one, its parsed config.json."""

    source: str
    """What the user asked for: a Hub repo id or a local path."""
    weights: Path
    config: dict[str, Any] | None


def locate(name_or_path: str | Path, hub: HubOptions) -> CheckpointFiles:
    """Find the files of a local weights file, a local folder, or a Hub repo (downloaded to / read from the cache)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        # A standard weight file keeps its folder's config.json (transformers files need it).
        beside = path.parent / CONFIG_FILE
        config = _read_json(beside) if path.name in WEIGHT_FILES and beside.is_file() else None
        return CheckpointFiles(str(name_or_path), path, config)
    if path.is_dir():
        weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{path} holds none of the weight files {list(WEIGHT_FILES)}")
        config_path = path / CONFIG_FILE
        return CheckpointFiles(str(name_or_path), weights, _read_json(config_path) if config_path.is_file() else None)
    if _looks_local(str(name_or_path)):
        raise FileNotFoundError(_no_local_file_message(str(name_or_path), path))
    return _locate_on_hub(str(name_or_path), hub)


def _looks_local(name: str) -> bool:
    """Whether a name that is no existing path was meant as one: a path prefix or separator no Hub repo id has,
    a weights file's extension, or an extension without the 'org/' of a repo id (ids such as
    'timm/vit_base_patch16_224.mae' have dots too)."""
    if name.startswith(("./", "../", "/", "~", ".\\")) or "\\" in name:
        return True
    suffix = Path(name).suffix
    return suffix in (".safetensors", ".json", *_PICKLE_SUFFIXES) or (bool(suffix) and "/" not in name)


def _no_local_file_message(name: str, path: Path) -> str:
    """No such local file; for an official file name, where to download it."""
    message = f"{name!r} looks like a local file, but there is no file or folder at {path.resolve()}"
    known = known_by_file_name(path.name)
    if known is not None and known.family == OFFICIAL:
        return f"{message}: {path.name} is published at {known.url}; download it there, then pass its path"
    return f"{message} (a Hub repo is named by its id, 'org/name')"


def _locate_on_hub(repo_id: str, hub: HubOptions) -> CheckpointFiles:
    repo = _HubRepo(repo_id, hub)
    with _hub_errors(repo_id, hub.revision):
        config = None
        # Official .pth uploads have no config: the weights alone then say what the model is.
        with contextlib.suppress(EntryNotFoundError):
            config = _read_json(repo.fetch(CONFIG_FILE))
        missing: list[str] = []
        for filename in WEIGHT_FILES:
            try:
                return CheckpointFiles(repo_id, repo.fetch(filename), config)
            except EntryNotFoundError as err:
                missing.append(f"{filename} ({type(err).__name__})")
    raise FileNotFoundError(_not_found_message(repo_id, hub, missing, repo.unreachable))


@dataclass
class _HubRepo:
    """A Hub repo's files through huggingface_hub's cache: ``hf_hub_download`` asks the Hub about each, after one
    question of our own without retries where a download is due."""

    repo_id: str
    hub: HubOptions
    unreachable: Exception | None = None
    """Why the Hub did not answer, once it has not: from then on the cache alone answers, as offline."""

    def fetch(self, filename: str) -> Path:
        """The file's path in the cache, downloaded first where the cache lacks it.

        Raises huggingface_hub's EntryNotFoundError where the repo lacks the file, or the cache does while
        the Hub cannot be asked (offline, or ``unreachable``); its RepositoryNotFoundError and
        RevisionNotFoundError where the Hub says so.
        """
        local_only = constants.HF_HUB_OFFLINE or self.unreachable is not None
        if not local_only and not self._cached(filename):
            # A download is due: ask once first, without retries, so that a Hub that does not answer is reported
            # at once (hf_hub_download retries a file it has not cached for a minute or more). Cached files skip
            # this: hf_hub_download's own question then falls back to the cache without retrying.
            self._ask(filename)
            local_only = self.unreachable is not None
        return Path(
            hf_hub_download(
                self.repo_id,
                filename,
                revision=self.hub.revision,
                cache_dir=self.hub.cache_dir,
                token=self.hub.token,
                etag_timeout=_timeout(),
                local_files_only=local_only,
            )
        )

    def _ask(self, filename: str) -> None:
        """One metadata request (``get_hf_file_metadata`` retries nothing by default); records a Hub that does not
        answer in ``unreachable``, and raises what the Hub answers about a repo, revision or file it cannot serve."""
        url = hf_hub_url(self.repo_id, filename, revision=self.hub.revision)
        try:
            get_hf_file_metadata(url, token=self.hub.token, timeout=_timeout())
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError):
            raise  # the Hub answered
        except Exception as err:
            if not hub_did_not_answer(err):
                raise  # the Hub answered (a token it refuses, ...)
            self.unreachable = err

    def _cached(self, filename: str) -> bool:
        cache_dir = None if self.hub.cache_dir is None else Path(self.hub.cache_dir).expanduser()
        return isinstance(try_to_load_from_cache(self.repo_id, filename, cache_dir, self.hub.revision), str)


def hub_did_not_answer(err: Exception) -> bool:
    """Whether an error of a Hub request means that no answer came (offline, refused, timed out, overloaded, failing),
    rather than an answer about the repo, the file or the token."""
    if isinstance(err, HfHubHTTPError):
        status = None if err.response is None else err.response.status_code
        return status is None or status >= _SERVER_ERRORS or status == _TOO_MANY_REQUESTS
    # A bad request (a repo id huggingface_hub refuses: a ValueError) is ours; anything else the HTTP client raises
    # (refused, timed out, offline mode: OSError and its own transport errors) means that no answer came.
    return not isinstance(err, ValueError)


def unreachable_reason(err: Exception) -> str:
    """Why the Hub gave no answer, in one line: e.g. "the Hub (https://huggingface.co) could not be reached (...)"."""
    first_line = str(err).partition("\n")[0]  # HTTP errors add lines of advice
    return f"the Hub ({constants.ENDPOINT}) could not be reached ({type(err).__name__}: {first_line})"


# What the Hub's answers about a repo that cannot be read mean to the user, most specific first (a gated repo is a
# RepositoryNotFoundError too).
_HUB_ANSWERS: tuple[tuple[type[Exception], str], ...] = (
    (HFValidationError, "{repo!r} is neither a local file or folder nor a Hub repo id ('org/name'): {err}"),
    (GatedRepoError, "Hub repo {repo!r} is gated: accept its terms and pass token="),
    (RepositoryNotFoundError, "Hub repo {repo!r} does not exist (or is private: pass token=) and is not a local path"),
    (RevisionNotFoundError, "Hub repo {repo!r} has no revision {revision!r}"),
)


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None) -> Iterator[None]:
    """Turn the Hub's answers about a repo that cannot be read into FileNotFoundErrors that say what to do."""
    try:
        yield
    except tuple(kind for kind, _ in _HUB_ANSWERS) as err:
        text = next(text for kind, text in _HUB_ANSWERS if isinstance(err, kind))
        raise FileNotFoundError(text.format(repo=repo_id, revision=revision, err=err)) from err


def _not_found_message(
    repo_id: str,
    hub: HubOptions,
    missing: list[str],
    unreachable: Exception | None,
) -> str:
    where = f"Hub repo {repo_id!r}" + (f" at revision {hub.revision!r}" if hub.revision else "")
    if not constants.HF_HUB_OFFLINE and unreachable is None:
        return f"{where} has none of the weight files {list(WEIGHT_FILES)}: {', '.join(missing)}"
    if unreachable is None:
        why = "downloads are off (HF_HUB_OFFLINE=1)"
        how = "run once with network access (unset HF_HUB_OFFLINE) to fill the cache; or"
    else:
        why = unreachable_reason(unreachable)
        how = (
            "run once where the Hub can be reached (HF_ENDPOINT names a mirror; HF_HUB_ETAG_TIMEOUT above "
            f"{HUB_TIMEOUT:g} s waits longer on a slow link) to fill the cache; or set HF_HUB_OFFLINE=1 and"
        )
    cache = hub.cache_dir or constants.HF_HUB_CACHE
    return (
        f"{where}: {why}, and none of {list(WEIGHT_FILES)} is in the local Hub cache {cache}. To fix: {how} "
        "point HF_HUB_CACHE (or cache_dir=) at a cache that has this repo; or pass the path of a local copy."
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}")
    return values


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file without running any pickled code.

    Returns the tensors and, for pickles, the other top-level entries (e.g. the official
    training ``args``). ``.safetensors`` files are mapped privately by safetensors' ``load_file``
    (pages are read on first touch, each tensor owns only its bytes, and writing to a tensor never
    changes the file); pickles (``.bin``, ``.pth``) are read with ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain data. An official ``{'model': state_dict, ...}``
    wrapper is unwrapped.
    """
    if path.suffix == ".safetensors":
        try:
            return load_file(path), {}
        except SafetensorError as err:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from err
    if path.suffix not in _PICKLE_SUFFIXES:
        raise ValueError(f"{path} is not a weights file: expected .safetensors or one of {list(_PICKLE_SUFFIXES)}")
    try:
        # The official training checkpoints pickle their argparse.Namespace of arguments: plain data.
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling garbage raises anything (IndexError, KeyError, ...): all mean unreadable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"{path} cannot be read as tensors and plain data: it is truncated or corrupt, or it holds Python "
            f"objects whose unpickling would run code, which we never do ({reason})"
        ) from err
    return _unwrap(content, path)


def _unwrap(content: object, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    extras: dict[str, Any] = {}
    if isinstance(content, dict) and isinstance(content.get("model"), dict):
        extras = {k: v for k, v in content.items() if k != "model"}
        content = content["model"]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"{path} must hold a state dict of tensors (or {{'model': state_dict}})")
    return content, extras
