"""Put a checkpoint's tensors into a model: everything is checked before anything is copied."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .._validation import require, square_side
from ..checkpoint_rules import CheckpointRules
from ..config import MAEConfig
from ..pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .channels import adapt_channels
from .formats import Checkpoint

logger = logging.getLogger(__name__)

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
    """Checkpoint keys left out by design (the model's ``unused`` rules, or a ``fresh`` key of another shape)."""
    fresh: list[str]
    """Model keys the checkpoint does not supply that start fresh by design (the model's ``fresh`` rules)."""
    regenerated: list[str]
    """Sin-cos position tables rebuilt exactly for the model's grid (the checkpoint's was for another image size)."""
    interpolated: list[str]
    """Position tables resized to the model's grid by bicubic interpolation (learned tables, or on request)."""
    adapted: list[str]
    """RGB weights adapted to the model's channel count (see :mod:`masked_autoencoder.hub.channels`)."""

    @property
    def complete(self) -> bool:
        """Whether the checkpoint supplies every model key, so that the model can be loaded strictly."""
        return not self.missing and not self.fresh


def plan_load(
    checkpoint: Checkpoint,
    expected: dict[str, torch.Tensor],
    config: MAEConfig,
    rules: CheckpointRules,
    *,
    strict: bool,
    interpolate_sincos: bool = False,
) -> LoadPlan:
    """Match a checkpoint to a model's ``state_dict`` (shapes only, meta tensors are fine) or raise ``ValueError``.

    ``rules`` are the model's own (``model.checkpoint_rules``): which tables it learns, which of its keys
    may start fresh, which checkpoint keys it has no place for. ``interpolate_sincos`` (models that learn
    their position table only) interpolates sin-cos tables too, as the official fine-tuning code, instead
    of regenerating them.
    """
    source, state = checkpoint.source, dict(checkpoint.state_dict)
    if rules.foreign and any(key.startswith(rules.foreign) for key in state):
        raise ValueError(f"{source} holds {rules.foreign_hint}")
    require(
        bool(rules.learned_tables) or not interpolate_sincos,
        "interpolate_sincos",
        interpolate_sincos,
        "False for a model with fixed sin-cos tables (only a classifier learns its position table)",
    )
    dropped = sorted(key for key in state if _left_out(key, state[key], expected, rules))
    for key in dropped:
        del state[key]
    regenerated, interpolated = _fit_position_tables(
        checkpoint, state, expected, config, rules, interpolate_sincos=interpolate_sincos
    )
    adapted = adapt_channels(state, expected, rules, source)
    _check_shapes(source, state, expected, rules)
    unexpected = sorted(state.keys() - expected.keys())
    absent = sorted(expected.keys() - state.keys())
    fresh = [key for key in absent if key.startswith(rules.fresh)]
    missing = [key for key in absent if key not in fresh]
    if strict and (unexpected or missing):
        raise ValueError(
            f"{source} does not match the model: missing {summarize_keys(missing)}, unexpected "
            f"{summarize_keys(unexpected)}. Pass strict=False "
            "to keep missing parameters freshly initialised (e.g. a decoder for encoder-only weights) and ignore "
            "unexpected keys."
        )
    # A cast is a copy only where the checkpoint's dtype differs (e.g. fp16 files into a float32 model).
    tensors = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    return LoadPlan(tensors, missing, unexpected, dropped, fresh, regenerated, interpolated, adapted)


def check_settings(checkpoint: Checkpoint, config: MAEConfig, rules: CheckpointRules, *, strict: bool) -> None:
    """Refuse (or with ``strict=False`` warn about) a checkpoint that records other settings than the model's.

    Every disagreeing field is named; one that sets the weights' shapes (``rules.shapes``: the width, the depth)
    is refused even with ``strict=False``.
    """

    def differ(names: tuple[str, ...]) -> list[str]:
        recorded = checkpoint.recorded
        return [
            f"{name}: checkpoint {recorded[name]!r}, model {getattr(config, name)!r}"
            for name in names
            if name in recorded and recorded[name] != getattr(config, name)
        ]

    shapes, settings = differ(rules.shapes), differ(rules.settings)
    if not shapes and not settings:
        return
    message = f"{checkpoint.source} records other settings than the model's: {'; '.join(shapes + settings)}"
    if shapes:
        raise ValueError(f"{message}. Its weights have other shapes: load it with from_pretrained to get its settings.")
    if strict:
        raise ValueError(f"{message}. Load it with from_pretrained to get its settings, or pass strict=False.")
    warnings.warn(f"{message}; loaded with strict=False: the model keeps its own.", stacklevel=_caller_stacklevel())


def _left_out(key: str, tensor: torch.Tensor, expected: dict[str, torch.Tensor], rules: CheckpointRules) -> bool:
    """Whether a checkpoint key is dropped by design: the model has no place for it, or it is fresh in another shape."""
    if key.startswith(rules.unused):
        return True
    # As the official fine-tuning code: a head for another number of classes is replaced by a fresh one.
    return key.startswith(rules.fresh) and key in expected and tensor.shape != expected[key].shape


def _fit_position_tables(
    checkpoint: Checkpoint,
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    config: MAEConfig,
    rules: CheckpointRules,
    *,
    interpolate_sincos: bool,
) -> tuple[list[str], list[str]]:
    """Fit, in ``state``, the position tables stored for another grid; returns the (regenerated, interpolated) keys.

    Sin-cos tables of pre-training are regenerated exactly; other tables (a fine-tuned classifier's)
    are interpolated, only into a table the model learns; ``interpolate_sincos`` interpolates every table.
    """
    regenerated, interpolated = [], []
    fine_tuned = bool(rules.fine_tuned_keys) and any(key.startswith(rules.fine_tuned_keys) for key in state)
    for key in rules.position_tables:
        stored, model = state.get(key), expected.get(key)
        # Another width is not a grid change: it is reported with the other shapes that differ.
        if stored is None or model is None or stored.shape == model.shape or stored.shape[-1] != model.shape[-1]:
            continue
        name = f"{checkpoint.source}: {key}"
        if not fine_tuned and not interpolate_sincos and _is_sincos(stored):
            state[key] = sincos_pos_embed_2d(stored.shape[-1], config.grid_size, cls_token=True)[None]
            regenerated.append(key)
            continue
        if key not in rules.learned_tables:
            raise ValueError(
                f"{name} of shape {tuple(stored.shape)} is a learned table, not the sin-cos one: it cannot be "
                f"used for the grid {config.grid_size}; build the model with the checkpoint's image size"
            )
        state[key] = resize_pos_embed(stored, config.grid_size, _square_grid(stored, name))
        interpolated.append(key)
    return regenerated, interpolated


def _check_shapes(
    source: str, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rules: CheckpointRules
) -> None:
    """Raise unless every shared key has the model's shape, saying both widths when they differ."""
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(state)  # in key order, whatever the order of the file
        if key in expected and state[key].shape != expected[key].shape
    ]
    if not mismatched:
        return
    # The input filters are (D, C, ...): their first dimension is each side's width.
    filters = next((key for key in rules.input_filters if key in state and key in expected), None)
    theirs, ours = (None, None) if filters is None else (state[filters].shape[0], expected[filters].shape[0])
    width = f"the checkpoint's encoder is {theirs} wide, the model's {ours} (embed_dim); " if theirs != ours else ""
    raise ValueError(f"{source} does not fit the model (shapes differ): {width}" + "; ".join(mismatched))


def _square_grid(table: torch.Tensor, name: str) -> int:
    """The side of the square patch grid of a stored (1, 1 + L, D) table; official tables are square."""
    num_patches = table.shape[1] - 1
    side = square_side(num_patches)
    require(side is not None, name, f"a table of {num_patches} patches", "a square grid to be resized")
    return side  # type: ignore[return-value]


def _is_sincos(table: torch.Tensor) -> bool:
    """Whether a stored (1, 1 + L, D) table is the official sin-cos table of its square grid."""
    side = square_side(table.shape[1] - 1)
    reference = None if side is None else sincos_pos_embed_2d(table.shape[-1], side, cls_token=True)
    return reference is not None and torch.allclose(table[0].float(), reference, atol=_SINCOS_ATOL)


def summarize_keys(keys: list[str]) -> str:
    """Keys grouped by top-level module for messages: ``decoder_blocks (96 tensors), mask_token``."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return "[" + ", ".join(name if n == 1 else f"{name} ({n} tensors)" for name, n in counts.items()) + "]"


def _key_patterns(keys: list[str]) -> str:
    """Keys named in full, block indices folded: ``[blocks.N.attn.rel_pos_h (12 tensors), head.weight]``."""
    counts: dict[str, int] = {}
    for key in keys:
        pattern = ".".join("N" if part.isdigit() else part for part in key.split("."))
        counts[pattern] = counts.get(pattern, 0) + 1
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
    if plan.fresh:
        logger.info("Loaded %s; freshly initialised by design: %s", source, _key_patterns(plan.fresh))
    if plan.regenerated or plan.interpolated:
        logger.info(
            "Loaded %s; position tables for the model's grid: regenerated (sin-cos) %s, interpolated %s",
            source,
            plan.regenerated,
            plan.interpolated,
        )
    if plan.adapted:
        logger.info("Loaded %s; RGB weights adapted to the model's input channels: %s", source, plan.adapted)


def _caller_stacklevel() -> int:
    """The ``warnings`` stacklevel, seen from the caller of this function, of the first frame outside this package.

    The same warning is reached through from_pretrained, load_pretrained or a factory: it points at the user's line.
    """
    here = inspect.currentframe()
    frame, level = (here.f_back if here is not None else None), 1
    while frame is not None and frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
