"""Find a checkpoint's files (a local file or folder, or a Hub repo through huggingface_hub's cache) and read them."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import http_backoff
from safetensors import SafetensorError

from .safetensors_views import map_safetensors

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
# In order of preference: safetensors needs no unpickling at all.
WEIGHT_FILES = (SAFETENSORS_FILE, "pytorch_model.bin")
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
HUB_TIMEOUT = 5.0
"""Seconds we wait for the Hub's first answer: its own 10 s, then a minute of retries, is too long to say it is down."""
# What huggingface_hub itself retries on, as a failed connection: its HTTP client's errors (requests, httpx or
# httpx2, depending on its version) and the statuses of an unavailable Hub.
_RETRIED = inspect.signature(http_backoff).parameters
_NETWORK_ERRORS: tuple[type[Exception], ...] = _RETRIED["retry_on_exceptions"].default
_statuses = _RETRIED["retry_on_status_codes"].default
_UNAVAILABLE_STATUSES: tuple[int, ...] = (_statuses,) if isinstance(_statuses, int) else tuple(_statuses)


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a checkpoint's files are: its weights and, when it has one, its parsed config.json."""

    source: str
    """What the user asked for: a Hub repo id or a local path."""
    weights: Path
    config: dict[str, Any] | None


def locate(
    name_or_path: str | Path, *, revision: str | None, cache_dir: str | Path | None, token: str | bool | None
) -> CheckpointFiles:
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
    return _locate_on_hub(str(name_or_path), revision=revision, cache_dir=cache_dir, token=token)


def _locate_on_hub(
    repo_id: str, *, revision: str | None, cache_dir: str | Path | None, token: str | bool | None
) -> CheckpointFiles:
    unreachable = None if constants.HF_HUB_OFFLINE else _ask_hub(repo_id, revision, token)
    # Unreachable: the cache alone answers, as in offline mode (hf_hub_download would retry for a minute).
    local_only = constants.HF_HUB_OFFLINE or unreachable is not None

    def download(filename: str) -> Path:
        with _hub_errors(repo_id, revision):
            return Path(
                hf_hub_download(
                    repo_id, filename, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_only
                )
            )

    config = None
    # Official .pth uploads have no config: the weights alone then say what the model is.
    with contextlib.suppress(EntryNotFoundError):
        config = _read_json(download(CONFIG_FILE))
    missing: list[str] = []
    for filename in WEIGHT_FILES:
        try:
            return CheckpointFiles(repo_id, download(filename), config)
        except EntryNotFoundError as err:
            missing.append(f"{filename} ({type(err).__name__})")
    raise FileNotFoundError(_not_found_message(repo_id, revision, cache_dir, missing, unreachable))


def _ask_hub(repo_id: str, revision: str | None, token: str | bool | None) -> Exception | None:
    """Ask the Hub once, without retries, about the repo's config.json: the error if the Hub cannot be reached.

    Raises FileNotFoundError if the Hub answers that the repo or revision does not exist.
    """
    set_by_user = constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT
    timeout = constants.HF_HUB_ETAG_TIMEOUT if set_by_user else HUB_TIMEOUT
    with _hub_errors(repo_id, revision):
        url = hf_hub_url(repo_id, CONFIG_FILE, revision=revision)
        try:
            get_hf_file_metadata(url, token=token, timeout=timeout)
        except EntryNotFoundError:
            pass  # the repo exists without a config.json (official .pth uploads)
        except _NETWORK_ERRORS as err:
            return err
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code in _UNAVAILABLE_STATUSES:
                return err
            raise
    return None


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None) -> Iterator[None]:
    """Turn the Hub's answers about a repo that cannot be read into FileNotFoundErrors that say what to do."""
    try:
        yield
    except HFValidationError as err:
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local file or folder nor a Hub repo id ('org/name'): {err}"
        ) from err
    except GatedRepoError as err:
        raise FileNotFoundError(f"Hub repo {repo_id!r} is gated: accept its terms and pass token=") from err
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"Hub repo {repo_id!r} does not exist (or is private: pass token=) and is not a local path"
        ) from err
    except RevisionNotFoundError as err:
        raise FileNotFoundError(f"Hub repo {repo_id!r} has no revision {revision!r}") from err


def _not_found_message(
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    missing: list[str],
    unreachable: Exception | None,
) -> str:
    where = f"Hub repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    if not constants.HF_HUB_OFFLINE and unreachable is None:
        return f"{where} has none of the weight files {list(WEIGHT_FILES)}: {', '.join(missing)}"
    if unreachable is None:
        why = "downloads are off (HF_HUB_OFFLINE=1)"
        how = "run once with network access (unset HF_HUB_OFFLINE) to fill the cache; or"
    else:
        first_line = str(unreachable).partition("\n")[0]  # HTTP errors add lines of advice
        why = f"the Hub ({constants.ENDPOINT}) could not be reached ({type(unreachable).__name__}: {first_line})"
        how = (
            "run once where the Hub can be reached (HF_ENDPOINT names a mirror; HF_HUB_ETAG_TIMEOUT above "
            f"{HUB_TIMEOUT:g} s waits longer on a slow link) to fill the cache; or set HF_HUB_OFFLINE=1 and"
        )
    cache = cache_dir or constants.HF_HUB_CACHE
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
    training ``args``). ``.safetensors`` files are mapped; pickles (``.bin``, ``.pth``) are read
    with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain data.
    An official ``{'model': state_dict, ...}`` wrapper is unwrapped.
    """
    if path.suffix == ".safetensors":
        try:
            return map_safetensors(path), {}
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
