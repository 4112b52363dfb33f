"""Write our own format (config.json + model.safetensors), its model card, and upload both to the Hub."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitOperationAdd, HfApi, constants
from safetensors.torch import save_file

from ..config import MAEConfig
from .files import CONFIG_FILE, SAFETENSORS_FILE, hub_did_not_answer, unreachable_reason
from .formats import our_config_json

CARD_FILE = "README.md"


@dataclass(frozen=True)
class SavedModel:
    """What saving writes of a model: its tensors, its config, its class and the constructor options it records."""

    state_dict: dict[str, torch.Tensor]
    config: MAEConfig
    model_class: str
    options: dict[str, Any]
    """The model's ``checkpoint_options`` (a classifier's head and pooling), written beside the config."""
    pretrained_cfg: dict[str, Any]
    """What the weights expect as input (the model's ``pretrained_cfg``), written beside the config."""


def save_checkpoint(model: SavedModel, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {key: tensor.detach().contiguous().cpu() for key, tensor in model.state_dict.items()}
    save_file(tensors, directory / SAFETENSORS_FILE, metadata={"format": "pt"})
    text = json.dumps(
        our_config_json(model.config, model.model_class, model.options, model.pretrained_cfg), indent=2, sort_keys=True
    )
    (directory / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
    return directory


def model_card(repo_id: str, config: MAEConfig, model_class: str, license: str | None) -> str:
    """A README.md for an uploaded checkpoint: what it is, what its decoder predicts, how to load it."""
    target = "per-patch normalized pixels" if config.norm_pix_loss else "raw pixels"
    front = [
        "---",
        "library_name: masked-autoencoder",
        "tags:",
        "- masked-autoencoder",
        "- mae",
        "- vision-transformer",
    ]
    front += [f"license: {license}"] if license else []
    rows = "\n".join(f"| `{key}` | `{value}` |" for key, value in config.to_dict().items())
    return "\n".join(
        [
            *front,
            "---",
            "",
            f"# {repo_id}",
            "",
            f"A `{model_class}` saved with [masked-autoencoder](https://pypi.org/project/masked-autoencoder/).",
            "",
            f"Its MAE pre-training target is **{target}** (`norm_pix_loss={config.norm_pix_loss}`): "
            "an MAE's reconstructions must be read in that space.",
            "",
            "```python",
            f"from masked_autoencoder import {model_class}",
            "",
            f'model = {model_class}.from_pretrained("{repo_id}")',
            "```",
            "",
            "| config field | value |",
            "|---|---|",
            rows,
            "",
        ]
    )


def push_checkpoint(
    model: SavedModel,
    repo_id: str,
    *,
    token: str | None,
    private: bool | None,
    revision: str | None,
    commit_message: str,
    create_pr: bool,
    license: str | None,
) -> str:
    """Create the repo if needed and upload config.json, model.safetensors and a model card in one commit.

    A Hub that gives no answer (offline, unreachable) raises a ``ConnectionError`` that says so and what to do.
    """
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        directory = save_checkpoint(model, folder)
        card = model_card(repo_id, model.config, model.model_class, license).encode("utf-8")
        operations = [
            CommitOperationAdd(path_in_repo=CONFIG_FILE, path_or_fileobj=directory / CONFIG_FILE),
            CommitOperationAdd(path_in_repo=SAFETENSORS_FILE, path_or_fileobj=directory / SAFETENSORS_FILE),
            CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card),
        ]
        with _upload_errors(repo_id):
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.create_commit(
                repo_id, operations, commit_message=commit_message, revision=revision, create_pr=create_pr
            )
    return str(commit.pr_url or commit.commit_url)


@contextlib.contextmanager
def _upload_errors(repo_id: str) -> Iterator[None]:
    """Turn a Hub that gives no answer into a ConnectionError naming the repo, why, and how to upload later."""
    try:
        yield
    except Exception as err:
        if not hub_did_not_answer(err):
            raise  # the Hub answered (a refused token, a name taken, ...): its own error says it
        offline = constants.HF_HUB_OFFLINE
        why = "uploads are off (HF_HUB_OFFLINE=1)" if offline else unreachable_reason(err)
        how = "unset HF_HUB_OFFLINE" if offline else "run where the Hub can be reached (HF_ENDPOINT names a mirror)"
        raise ConnectionError(
            f"cannot upload to Hub repo {repo_id!r}: {why}. To fix: {how}; or save_pretrained(folder) now and "
            f"upload that folder later (hf upload {repo_id} FOLDER)"
        ) from err
