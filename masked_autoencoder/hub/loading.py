"""Put a checkpoint's tensors into a model: everything is checked before anything is copied."""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._validation import require
from ..config import MAEConfig
from ..pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .formats import CLASSIFIER_PREFIXES, Checkpoint

logger = logging.getLogger(__name__)

_POSITION_TABLES = ("pos_embed", "decoder_pos_embed")
# Checkpoint modules dropped when the model has none of their keys: the decoder (in an encoder or a
# classifier), the pre-training norm (in a global-pool classifier, which normalises the pooled features instead).
_DROPPABLE = (("decoder_", "mask_token"), ("norm.",))
# A stored sin-cos table may have passed through fp16 or bf16; anything further off was learned.
_SINCOS_ATOL = 1e-2
_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


@dataclass(frozen=True)
class LoadPlan:
    """The tensors to load under the model's keys, and what was left out and why."""

    state_dict: dict[str, torch.Tensor]
    """The tensors to load, under the model's keys and in its dtypes."""
    missing: list[str]
    """Model keys the checkpoint does not supply: they keep their fresh initialisation (only with ``strict=False``)."""
    unexpected: list[str]
    """Checkpoint keys the model has no place for (ignored; only with ``strict=False``)."""
    dropped: list[str]
    """Checkpoint keys left out by design: a decoder in an encoder; the pre-training norm, or a head for
    another class count, in a classifier."""
    new_head: list[str]
    """A classifier's ``head.*`` / ``fc_norm.*`` keys the checkpoint does not supply: freshly initialised, by design."""
    regenerated: list[str]
    """Sin-cos position tables rebuilt exactly for the model's grid (the checkpoint's was for another image size)."""
    interpolated: list[str]
    """Position tables resized to the model's grid by bicubic interpolation (learned tables, or on request)."""

    @property
    def complete(self) -> bool:
        """Whether the checkpoint supplies every model key, so that the model can be loaded strictly."""
        return not self.missing and not self.new_head


def plan_load(
    checkpoint: Checkpoint,
    expected: dict[str, torch.Tensor],
    config: MAEConfig,
    *,
    strict: bool,
    interpolate_sincos: bool = False,
) -> LoadPlan:
    """Match a checkpoint to a model's ``state_dict`` (shapes only, meta tensors are fine) or raise ``ValueError``.

    A model with ``head.*`` keys is a classifier: it learns its position table (a table of another
    grid is interpolated) and may start with a fresh head. ``interpolate_sincos`` (classifiers
    only) interpolates sin-cos tables too, as the official fine-tuning code, instead of regenerating them.
    """
    source, state = checkpoint.source, dict(checkpoint.state_dict)
    classifier = any(key.startswith(CLASSIFIER_PREFIXES) for key in expected)
    if checkpoint.is_classifier and not classifier:
        raise ValueError(
            f"{source} holds a fine-tuned classifier (head.*, fc_norm.*), not MAE pre-training weights: "
            "it has no decoder and its final norm was replaced; load it with MAEViTClassifier"
        )
    require(
        classifier or not interpolate_sincos,
        "interpolate_sincos",
        interpolate_sincos,
        "False for a model with fixed sin-cos tables (only a classifier learns its position table)",
    )
    dropped = sorted(key for key in state if _left_out(key, state[key], expected))
    for key in dropped:
        del state[key]
    regenerated, interpolated = _fit_position_tables(
        checkpoint, state, expected, config, learned=classifier, interpolate_sincos=interpolate_sincos
    )
    _check_shapes(source, state, expected)
    unexpected = sorted(state.keys() - expected.keys())
    absent = sorted(expected.keys() - state.keys())
    new_head = [key for key in absent if key.startswith(CLASSIFIER_PREFIXES)]
    missing = [key for key in absent if key not in new_head]
    if strict and (unexpected or missing):
        raise ValueError(
            f"{source} does not match the model: missing {summarize_keys(missing)}, unexpected "
            f"{summarize_keys(unexpected)}. Pass strict=False "
            "to keep missing parameters freshly initialised (e.g. a decoder for encoder-only weights) and ignore "
            "unexpected keys."
        )
    # A cast is a copy only where the checkpoint's dtype differs (e.g. fp16 files into a float32 model).
    tensors = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    return LoadPlan(tensors, missing, unexpected, dropped, new_head, regenerated, interpolated)


def assign_tensors(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Make ``state``'s tensors the model's parameters and buffers, as ``load_state_dict(..., assign=True)``.

    Keys and shapes must have been matched by :func:`plan_load`; parameters keep their ``requires_grad``.
    Without load_state_dict's per-module Python (10 ms of a ViT-L's 45 ms load), unless a module
    customises loading (a load hook or its own ``_load_from_state_dict``): then it is load_state_dict.
    """
    modules = dict(model.named_modules())
    if any(_customises_loading(module) for module in modules.values()):
        model.load_state_dict(state, strict=False, assign=True)
        return
    for key, tensor in state.items():
        owner_name, _, name = key.rpartition(".")
        owner = modules[owner_name]
        old = owner._parameters.get(name)
        setattr(owner, name, tensor if old is None else nn.Parameter(tensor, requires_grad=old.requires_grad))


def _customises_loading(module: nn.Module) -> bool:
    overridden = type(module)._load_from_state_dict is not nn.Module._load_from_state_dict
    return overridden or bool(module._load_state_dict_pre_hooks or module._load_state_dict_post_hooks)


def _left_out(key: str, tensor: torch.Tensor, expected: dict[str, torch.Tensor]) -> bool:
    """Whether a checkpoint key is dropped by design: a module the model does not have, or a head of another size."""
    for group in _DROPPABLE:
        if key.startswith(group):
            return not any(other.startswith(group) for other in expected)
    # As the official fine-tuning code: a head for another number of classes is replaced by a fresh one.
    return key.startswith("head.") and key in expected and tensor.shape != expected[key].shape


def _fit_position_tables(
    checkpoint: Checkpoint,
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    config: MAEConfig,
    *,
    learned: bool,
    interpolate_sincos: bool,
) -> tuple[list[str], list[str]]:
    """Fit, in ``state``, the position tables stored for another grid; returns the (regenerated, interpolated) keys.

    Sin-cos tables of pre-training are regenerated exactly; other tables (a fine-tuned classifier's)
    are interpolated, only into a model that ``learned`` its table; ``interpolate_sincos`` interpolates every table.
    """
    regenerated, interpolated = [], []
    for key in _POSITION_TABLES:
        stored, model = state.get(key), expected.get(key)
        # Another width is not a grid change: it is reported with the other shapes that differ.
        if stored is None or model is None or stored.shape == model.shape or stored.shape[-1] != model.shape[-1]:
            continue
        name = f"{checkpoint.source}: {key}"
        if not checkpoint.is_classifier and not interpolate_sincos and _is_sincos(stored):
            state[key] = sincos_pos_embed_2d(stored.shape[-1], config.grid_size, cls_token=True)[None]
            regenerated.append(key)
            continue
        if not learned:
            raise ValueError(
                f"{name} of shape {tuple(stored.shape)} is a learned table, not the sin-cos one: it cannot be "
                f"used for the grid {config.grid_size}; build the model with the checkpoint's image size"
            )
        state[key] = resize_pos_embed(stored, config.grid_size, _square_grid(stored, name))
        interpolated.append(key)
    return regenerated, interpolated


def _check_shapes(source: str, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in state
        if key in expected and state[key].shape != expected[key].shape
    ]
    if not mismatched:
        return
    theirs, ours = (tensors["cls_token"].shape[-1] if "cls_token" in tensors else None for tensors in (state, expected))
    width = f"the checkpoint's encoder is {theirs} wide, the model's {ours} (embed_dim); " if theirs != ours else ""
    raise ValueError(f"{source} does not fit the model (shapes differ): {width}" + "; ".join(mismatched))


def _square_grid(table: torch.Tensor, name: str) -> int:
    """The side of the square patch grid of a stored (1, 1 + L, D) table; official tables are square."""
    num_patches = table.shape[1] - 1
    side = math.isqrt(num_patches)
    require(side * side == num_patches, name, f"a table of {num_patches} patches", "a square grid to be resized")
    return side


def _is_sincos(table: torch.Tensor) -> bool:
    """Whether a stored (1, 1 + L, D) table is the official sin-cos table of its square grid."""
    num_patches, width = table.shape[1] - 1, table.shape[-1]
    side = math.isqrt(num_patches)
    reference = sincos_pos_embed_2d(width, side, cls_token=True) if side * side == num_patches else None
    return reference is not None and torch.allclose(table[0].float(), reference, atol=_SINCOS_ATOL)


def summarize_keys(keys: list[str]) -> str:
    """Keys grouped by top-level module for messages: ``decoder_blocks (96 tensors), mask_token``."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return "[" + ", ".join(name if n == 1 else f"{name} ({n} tensors)" for name, n in counts.items()) + "]"


def report(plan: LoadPlan, source: str) -> None:
    """Tell the user what was not loaded: a warning for missing or ignored keys, log lines for choices by design."""
    if plan.missing or plan.unexpected:
        warnings.warn(
            f"Loaded {source} with strict=False: not in the checkpoint, kept freshly initialised: "
            f"{summarize_keys(plan.missing)}; in the checkpoint, ignored: {summarize_keys(plan.unexpected)}",
            stacklevel=_caller_stacklevel(),
        )
    if plan.dropped:
        logger.info("Loaded %s; left out by design: %s", source, summarize_keys(plan.dropped))
    if plan.new_head:
        logger.info("Loaded %s; a new classifier head, freshly initialised: %s", source, summarize_keys(plan.new_head))
    if plan.regenerated or plan.interpolated:
        logger.info(
            "Loaded %s; position tables for the model's grid: regenerated (sin-cos) %s, interpolated %s",
            source,
            plan.regenerated,
            plan.interpolated,
        )


def _caller_stacklevel() -> int:
    """The ``warnings`` stacklevel, seen from the caller of this function, of the first frame outside this package.

    The same warning is reached through from_pretrained, load_pretrained or a factory: it points at the user's line.
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
