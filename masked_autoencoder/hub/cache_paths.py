"""Which Hub repo a local path is, when it lies in a Hugging Face cache: the cache layout names the repo."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants

# The cache keeps a model repo's files in models--ORG--NAME/snapshots/REVISION/ (repo ids never hold "--").
_MODEL_FOLDER = f"models{constants.REPO_ID_SEPARATOR}"
_SNAPSHOTS = "snapshots"


def cached_repo_id(path: str | Path) -> str | None:
    """The repo id of a file or folder inside a Hub cache snapshot (e.g. ``facebook/vit-mae-base``), else None.

    Read from the path as given (the snapshot's files are links into ``blobs/``: resolving them would lose
    the repo's name), made absolute.
    """
    parts = Path(path).expanduser().absolute().parts
    for index in range(len(parts) - 2):
        folder = parts[index]
        if folder.startswith(_MODEL_FOLDER) and parts[index + 1] == _SNAPSHOTS:
            return folder[len(_MODEL_FOLDER) :].replace(constants.REPO_ID_SEPARATOR, "/")
    return None
