"""Put a checkpoint's tensors into a model: everything is checked before anything is copied."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch

from ..config import MAEConfig
from ..pos_embed import sincos_pos_embed_2d
from .formats import Checkpoint

logger = logging.getLogger(__name__)

_POSITION_TABLES = {"pos_embed": "embed_dim", "decoder_pos_embed": "decoder_embed_dim"}
_DECODER_PREFIXES = ("decoder_", "mask_token")
# A stored sin-cos table may have passed through fp16 or bf16; anything further off was learned.
_SINCOS_ATOL = 1e-2


@dataclass(frozen=True)
class LoadPlan:
    """The tensors to load under the model's keys, and what was left out and why."""

    state_dict: dict[str, torch.Tensor]
    """The tensors to load, under the model's keys and in its dtypes."""
    missing: list[str]
    """Model keys the checkpoint does not supply: they keep their fresh initialisation."""
    unexpected: list[str]
    """Checkpoint keys the model has no place for (ignored; only with ``strict=False``)."""
    dropped: list[str]
    """Checkpoint keys left out by design: a decoder's, when loading into an encoder."""
    regenerated: list[str]
    """Sin-cos position tables rebuilt for the model's grid (the checkpoint's was for another image size)."""


def plan_load(
    checkpoint: Checkpoint, expected: dict[str, torch.Tensor], config: MAEConfig, *, strict: bool
) -> LoadPlan:
    """Match a checkpoint to a model's ``state_dict`` (shapes only, meta tensors are fine) or raise ``ValueError``."""
    source = checkpoint.source
    if checkpoint.is_classifier:
        raise ValueError(
            f"{source} holds a fine-tuned classifier (head.*, fc_norm.*), not MAE pre-training weights: "
            "it has no decoder and its final norm was replaced, so it cannot be loaded into an MAE"
        )
    state = dict(checkpoint.state_dict)
    dropped = []
    if not any(key.startswith(_DECODER_PREFIXES) for key in expected):
        dropped = sorted(key for key in state if key.startswith(_DECODER_PREFIXES))
    for key in dropped:
        del state[key]
    regenerated = [
        key for key in _POSITION_TABLES if key in state and key in expected and state[key].shape != expected[key].shape
    ]
    for key in regenerated:
        state[key] = _regenerated_table(state[key], getattr(config, _POSITION_TABLES[key]), config, f"{source}: {key}")
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in state
        if key in expected and state[key].shape != expected[key].shape
    ]
    if mismatched:
        raise ValueError(f"{source} does not fit the model (shapes differ): " + "; ".join(mismatched))
    unexpected = sorted(state.keys() - expected.keys())
    missing = sorted(expected.keys() - state.keys())
    if strict and (unexpected or missing):
        raise ValueError(
            f"{source} does not match the model: missing {summarize_keys(missing)}, unexpected "
            f"{summarize_keys(unexpected)}. Pass strict=False "
            "to keep missing parameters freshly initialised (e.g. a decoder for encoder-only weights) and ignore "
            "unexpected keys."
        )
    # A cast is a copy only where the checkpoint's dtype differs (e.g. fp16 files into a float32 model).
    tensors = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    return LoadPlan(tensors, missing, unexpected, dropped, regenerated)


def summarize_keys(keys: list[str]) -> str:
    """Keys grouped by top-level module for messages: ``decoder_blocks (96 tensors), mask_token``."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return "[" + ", ".join(name if n == 1 else f"{name} ({n} tensors)" for name, n in counts.items()) + "]"


def _regenerated_table(stored: torch.Tensor, width: int, config: MAEConfig, name: str) -> torch.Tensor:
    """Our sin-cos table for the model's grid, after checking that the stored one is the sin-cos table of its grid."""
    num_patches = stored.shape[1] - 1
    grid = math.isqrt(num_patches)
    is_sincos = (
        stored.dim() == 3
        and stored.shape[-1] == width
        and grid * grid == num_patches
        and torch.allclose(stored[0].float(), sincos_pos_embed_2d(width, grid, cls_token=True), atol=_SINCOS_ATOL)
    )
    if not is_sincos:
        raise ValueError(
            f"{name} of shape {tuple(stored.shape)} is a learned table, not the sin-cos one: it cannot be "
            f"used for the grid {config.grid_size}; build the model with the checkpoint's image size"
        )
    return sincos_pos_embed_2d(width, config.grid_size, cls_token=True)[None]


def report(plan: LoadPlan, source: str) -> None:
    """Tell the user what was not loaded: a warning for missing or ignored keys, a log line for dropped ones."""
    if plan.missing or plan.unexpected:
        warnings.warn(
            f"Loaded {source} with strict=False: not in the checkpoint, kept freshly initialised: "
            f"{summarize_keys(plan.missing)}; in the checkpoint, ignored: {summarize_keys(plan.unexpected)}",
            stacklevel=3,
        )
    if plan.dropped:
        logger.info("Loaded %s into an encoder; its decoder was left out: %s", source, summarize_keys(plan.dropped))
    if plan.regenerated:
        logger.info("Loaded %s; sin-cos tables regenerated for the model's grid: %s", source, plan.regenerated)
