"""Load a checkpoint of any family into a new model or an existing one: the functions behind the models' mixin."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..config import MAEConfig, split_config_fields
from ..data_config import resolve_pretrained_cfg
from .cache_paths import cached_repo_id
from .files import CheckpointFiles, HubOptions, locate, read_weights
from .formats import Checkpoint, our_config_json, to_checkpoint
from .loading import check_settings, plan_load, report
from .saving import SavedModel

ModelT = TypeVar("ModelT", bound=nn.Module)


def read_checkpoint(
    name_or_path: str | Path, hub: HubOptions | None = None, overrides: dict[str, Any] | None = None
) -> Checkpoint:
    """Find, read and convert a checkpoint of any known family into our config and keys.

    ``hub``: how to ask the Hub (revision, cache, token); ``overrides``: config fields that win over what
    the checkpoint says or implies.
    """
    files = locate(name_or_path, hub or HubOptions())
    tensors, extras = read_weights(files.weights)
    # A path is known only where it is a Hub cache snapshot: the same files then load as the repo id does.
    path = Path(name_or_path).expanduser()
    repo_id = cached_repo_id(path) if path.exists() else str(name_or_path)
    return to_checkpoint(files, tensors, extras, overrides or {}, repo_id=repo_id)


def in_memory_checkpoint(saved: SavedModel, overrides: dict[str, Any]) -> Checkpoint:
    """What ``save_pretrained`` would write of a model, read back as ``from_pretrained`` reads it, without files.

    The same config.json (``our_config_json``) and tensors go through the same conversion (``to_checkpoint``),
    so a model converted in memory gets every rule a saved one gets. The tensors are the model's own (detached):
    the loader copies them.
    """
    written = our_config_json(saved.config, saved.model_class, saved.options, saved.pretrained_cfg)
    # No weights file: an empty name, which no published file has (a file name only ever adds a guess).
    files = CheckpointFiles(f"the in-memory {saved.model_class}", Path(), written)
    tensors = {key: tensor.detach() for key, tensor in saved.state_dict.items()}
    return to_checkpoint(files, tensors, {}, overrides, repo_id=None)


def load_model(
    model_class: type[ModelT],
    read: Callable[[dict[str, Any]], Checkpoint],
    *,
    map_location: str | torch.device,
    strict: bool,
    mmap: bool,
    interpolate_sincos: bool,
    kwargs: dict[str, Any],
) -> ModelT:
    """A new ``model_class`` with a checkpoint's weights, in eval mode (see the models' ``from_pretrained``).

    ``read``: the checkpoint, given the config overrides (:func:`read_checkpoint` of a name, or
    :func:`in_memory_checkpoint`). ``kwargs``: config fields (overrides) and the class's own constructor
    arguments, told apart by name. ``mmap``: the checkpoint's CPU tensors become the parameters without a copy.
    """
    overrides, options = split_config_fields(kwargs)
    checkpoint = read(overrides)
    accepted = inspect.signature(model_class).parameters
    # The options the model class reads from the keys, then those the file records, then the caller's.
    implied = {**model_class.options_from_state_dict(checkpoint.state_dict), **checkpoint.options}  # type: ignore[attr-defined]
    # The overrides go to the constructor again (already in the config): a model checks them against its options.
    options = {**{k: v for k, v in implied.items() if k in accepted}, **overrides, **options}
    with torch.device("meta"):  # shapes only: no memory, and our own init is skipped on meta
        model = model_class(checkpoint.config, **options)
    rules = model.checkpoint_rules
    plan = plan_load(
        checkpoint, model.state_dict(), checkpoint.config, rules, strict=strict, interpolate_sincos=interpolate_sincos
    )
    if not plan.complete:
        model = model_class(checkpoint.config, **options)  # the official init for what the checkpoint lacks
    state = {key: tensor.to(map_location, copy=not mmap) for key, tensor in plan.state_dict.items()}
    # assign: the checkpoint's tensors (mapped pages, with mmap) become the parameters, without a copy.
    model.load_state_dict(state, strict=plan.complete, assign=True)
    model.pretrained_cfg = resolve_pretrained_cfg(checkpoint.pretrained_cfg, model.config)
    report(plan, checkpoint.source)
    # Fresh tensors (an incomplete plan) and tables no file holds (a video model's) are still on the CPU.
    return model.to(map_location).eval()


def load_into(
    model: nn.Module,
    name_or_path: str | Path,
    hub: HubOptions,
    *,
    strict: bool,
    interpolate_sincos: bool,
) -> None:
    """Load a checkpoint's weights into an existing model; everything is checked first (see ``load_pretrained``)."""
    config: MAEConfig = model.config  # type: ignore[assignment]
    rules = model.checkpoint_rules  # type: ignore[attr-defined]
    # Heads cannot be read from official weights: the model's own are assumed there (and checked where recorded).
    heads = {"num_heads": config.num_heads, "decoder_num_heads": config.decoder_num_heads}
    checkpoint = read_checkpoint(name_or_path, hub, heads)
    check_settings(checkpoint, config, rules, strict=strict)
    plan = plan_load(
        checkpoint, model.state_dict(), config, rules, strict=strict, interpolate_sincos=interpolate_sincos
    )
    model.load_state_dict(plan.state_dict, strict=plan.complete)
    model.pretrained_cfg = resolve_pretrained_cfg(checkpoint.pretrained_cfg, config)
    report(plan, checkpoint.source)
