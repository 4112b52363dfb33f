"""Recognise a checkpoint's family from its config.json and keys, and turn it into our config and keys."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import square_side
from .._version import __version__
from ..config import MAEConfig
from ..registry import num_heads_for_width
from .files import CheckpointFiles
from .known_weights import (
    OFFICIAL,
    OURS,
    TIMM,
    TRANSFORMERS,
    VIDEOMAE,
    KnownWeights,
    known_by_file_name,
    known_by_repo_id,
)
from .transformers_format import config_from_transformers, from_transformers_state_dict
from .videomae_format import config_from_videomae, from_videomae_state_dict

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TIMM_MAE_TAG = "mae"
# The official decoder has 16 heads at every size; heads cannot be read from weights.
_OFFICIAL_DECODER_HEADS = 16
_BARE_ENCODER = ("embeddings.", "encoder.layer.", "layernorm.")
_OPTIONS = "model_options"
_DATA_CONFIG = "pretrained_cfg"  # timm's config.json key, and ours


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in our terms: the config it implies and its tensors under our (official) keys."""

    source: str
    family: str
    config: MAEConfig
    state_dict: dict[str, torch.Tensor]
    recorded: dict[str, Any] = field(default_factory=dict)
    """The config fields the checkpoint states (in its config.json or training arguments, or in the known
    table for a published Hub repo), as opposed to those read from shapes, assumed or defaulted."""
    pretrained_cfg: dict[str, Any] | None = None
    """The weights' data config (timm's keys): a timm or our config's own, or the known table's; else None."""
    options: dict[str, Any] = field(default_factory=dict)
    """The constructor options the checkpoint records (our format's ``model_options``: a classifier's head)."""


def our_config_json(
    config: MAEConfig, model_class: str, options: dict[str, Any], pretrained_cfg: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config.json that ``save_pretrained`` writes: a format marker, the library version, the config, the
    model's constructor options (``checkpoint_options``) and what its weights expect as input (``pretrained_cfg``).
    Files without the last two, from earlier versions, still load (with the defaults)."""
    written = {
        "library": OURS,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model_class": model_class,
        "config": config.to_dict(),
        _OPTIONS: options,
    }
    return written if pretrained_cfg is None else {**written, _DATA_CONFIG: pretrained_cfg}


def to_checkpoint(
    files: CheckpointFiles,
    tensors: dict[str, torch.Tensor],
    extras: dict[str, Any],
    overrides: dict[str, Any],
    *,
    repo_id: str | None,
) -> Checkpoint:
    """Recognise the family and convert: config.json first, then the keys.

    ``repo_id``: the Hub repo the files are known to be (asked for by id, or a snapshot folder of the Hub
    cache), else None. Settings come, strongest first, from ``overrides`` (the caller's keywords, which
    may also supply what the weights cannot say: ``num_heads``, ``decoder_num_heads``, ``img_size``), the
    known table for a published repo, the checkpoint's own record, and last, for files of unknown origin,
    the known table for a published file name: an assumption. What a file of unknown origin was read
    with is logged in one line.
    """
    family = _family(files, tensors)
    try:
        config, state_dict, recorded = _convert(family, files, tensors, extras, overrides)
    except ValueError as err:
        raise ValueError(f"{files.source}: {err}") from err
    published = None if repo_id is None else known_by_repo_id(repo_id)
    if published is not None:
        # Every published MAE weight was trained by the official code: LayerNorm eps 1e-6 (the facebook Hub
        # configs say 1e-12), and the known table says which pixels its decoder predicts.
        recorded |= {"norm_pix_loss": published.norm_pix_loss, "layer_norm_eps": MAEConfig.layer_norm_eps}
    guess = known_by_file_name(files.weights.name) if repo_id is None else None
    # Only official files are known by name, and read with the official eps anyway: the target is the guess.
    assumed = {} if guess is None or "norm_pix_loss" in recorded else {"norm_pix_loss": guess.norm_pix_loss}
    config = config.replace(**{**recorded, **assumed, **overrides})
    if repo_id is None and family != OURS:
        _log_unknown_origin(files.source, config, recorded, guess, overrides)
    known = published or guess
    data_cfg = (files.config or {}).get(_DATA_CONFIG) if family in (TIMM, OURS) else None
    if data_cfg is None and known is not None:
        data_cfg = known.pretrained_cfg
    options = (files.config or {}).get(_OPTIONS, {}) if family == OURS else {}
    return Checkpoint(files.source, family, config, state_dict, recorded, data_cfg, options)


def _log_unknown_origin(
    source: str, config: MAEConfig, recorded: dict[str, Any], guess: KnownWeights | None, overrides: dict[str, Any]
) -> None:
    """One log line for files of an unknown Hub repo: the eps and pixel target chosen, and how to choose others."""
    chosen = [name for name in ("layer_norm_eps", "norm_pix_loss") if name not in overrides]
    if not chosen:
        return
    if "norm_pix_loss" in overrides:
        target_from = "as passed"
    elif "norm_pix_loss" in recorded:
        target_from = "as the checkpoint records"
    elif guess is not None:
        target_from = f"from its file name, that of the published {guess.name}"
    else:
        target_from = "the default: the checkpoint records none"
    official_eps = MAEConfig.layer_norm_eps
    eps_hint = (
        f"layer_norm_eps={official_eps:g} if these are published weights (the official code's eps)"
        if config.layer_norm_eps != official_eps
        else "layer_norm_eps= for another"
    )
    logger.info(
        "%s is a copy whose Hub repo is unknown: read with layer_norm_eps=%g and norm_pix_loss=%r (%s); pass %s, "
        "or norm_pix_loss=%r for the other pixel target",
        source,
        config.layer_norm_eps,
        config.norm_pix_loss,
        target_from,
        eps_hint,
        not config.norm_pix_loss,
    )


def _convert(
    family: str,
    files: CheckpointFiles,
    tensors: dict[str, torch.Tensor],
    extras: dict[str, Any],
    overrides: dict[str, Any],
) -> tuple[MAEConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """The config, our keys, and the config fields the checkpoint records."""
    written = files.config or {}
    if family == TRANSFORMERS:
        _require_config_json(files, "ViTMAE")
        # ViTMAEModel (encoder only) saves its keys without the "vit." of ViTMAEForPreTraining.
        tensors = {f"vit.{k}" if k.startswith(_BARE_ENCODER) else k: v for k, v in tensors.items()}
        config, state_dict = config_from_transformers(written), from_transformers_state_dict(tensors)
        return config, state_dict, _recorded_by_transformers(config, state_dict)
    if family == VIDEOMAE:
        _require_config_json(files, "VideoMAE")
        config, state_dict = config_from_videomae(written), from_videomae_state_dict(tensors)
        video = ("video_pos_embed", "loss_target", "num_frames", "tubelet_size")
        return config, state_dict, _recorded_by_transformers(config, state_dict, video)
    if family == OURS:
        _check_our_format(written)
        config = MAEConfig.from_dict(written["config"])
        return config, tensors, dataclasses.asdict(config)
    config = _config_from_weights(tensors, overrides)
    if family == TIMM:
        # timm tags its MAE encoders "mae": the official normalized-pixel pre-training (mae_pretrain_vit_*.pth).
        tag = (written.get(_DATA_CONFIG) or {}).get("tag")
        return config, tensors, {"norm_pix_loss": True} if tag == _TIMM_MAE_TAG else {}
    return config, tensors, _training_args(extras)


def _require_config_json(files: CheckpointFiles, model: str) -> None:
    if files.config is None:
        raise ValueError(f"transformers {model} weights need their config.json beside them")


def _recorded_by_transformers(
    config: MAEConfig, state_dict: dict[str, torch.Tensor], more: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields a `transformers` config.json records: the heads and pixel target, the decoder's heads where the
    file has a decoder, and ``more``."""
    # Not layer_norm_eps: the published configs say 1e-12, but the weights were trained with 1e-6.
    decoder = ("decoder_num_heads",) if "decoder_embed.weight" in state_dict else ()
    return {field: getattr(config, field) for field in ("num_heads", "norm_pix_loss", *decoder, *more)}


def _family(files: CheckpointFiles, tensors: dict[str, torch.Tensor]) -> str:
    config = files.config or {}
    if config.get("library") == OURS:
        return OURS
    if "model_type" in config:
        families = {"vit_mae": TRANSFORMERS, "videomae": VIDEOMAE}
        if config["model_type"] not in families:
            raise ValueError(
                f"{files.source} is a {config['model_type']!r} checkpoint, not a Masked Autoencoder "
                f"(one of {list(families)})"
            )
        return families[config["model_type"]]
    if any(key.startswith("videomae.") for key in tensors):
        return VIDEOMAE
    if any(key.startswith(("vit.", "decoder.decoder_", *_BARE_ENCODER)) for key in tensors):
        return TRANSFORMERS
    if "architecture" in config:
        if not str(config["architecture"]).startswith("vit_"):
            raise ValueError(f"{files.source} is a timm {config['architecture']!r}, not a ViT encoder")
        return TIMM
    return OFFICIAL


def _check_our_format(config: dict[str, Any]) -> None:
    version = config.get("format_version")
    if version != FORMAT_VERSION or not isinstance(config.get("config"), dict):
        raise ValueError(
            f"config.json is masked-autoencoder format version {version!r}; this version "
            f"({__version__}) reads version {FORMAT_VERSION}: upgrade masked-autoencoder"
        )


_BLOCK_INDEX = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.")


def _config_from_weights(tensors: dict[str, torch.Tensor], overrides: dict[str, Any]) -> MAEConfig:
    """Read the architecture from official-layout tensor shapes (timm and official files carry no full config)."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in tensors:
            raise ValueError(f"not a ViT / MAE checkpoint: it has no {key!r}")
    depths: dict[str, int] = {"blocks": 0, "decoder_blocks": 0}
    for key in tensors:
        if match := _BLOCK_INDEX.match(key):
            depths[match[1]] = max(depths[match[1]], int(match[2]) + 1)
    embed_dim, in_chans, patch_h, patch_w = tensors["patch_embed.proj.weight"].shape
    num_heads = overrides.get("num_heads", num_heads_for_width(embed_dim))
    if num_heads is None:
        raise ValueError(f"the head count of a {embed_dim}-wide encoder is unknown: pass num_heads=")
    fields: dict[str, Any] = {
        "img_size": overrides.get("img_size", _image_size(tensors["pos_embed"], (patch_h, patch_w))),
        "patch_size": patch_h if patch_h == patch_w else (patch_h, patch_w),
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": depths["blocks"],
        "num_heads": num_heads,
        "mlp_ratio": tensors["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
    }
    if "decoder_embed.weight" in tensors:
        fields["decoder_embed_dim"] = tensors["decoder_embed.weight"].shape[0]
        fields["decoder_depth"] = depths["decoder_blocks"]
        fields["decoder_num_heads"] = overrides.get("decoder_num_heads", _OFFICIAL_DECODER_HEADS)
    return MAEConfig(**fields)


def _image_size(pos_embed: torch.Tensor, patch: tuple[int, int]) -> int | tuple[int, int]:
    """The image size of a square position table (class row first); non-square grids need img_size=."""
    num_patches = pos_embed.shape[1] - 1
    grid = square_side(num_patches)
    if grid is None:
        raise ValueError(f"a {num_patches}-patch grid is not square: pass img_size=(H, W)")
    return grid * patch[0] if patch[0] == patch[1] else (grid * patch[0], grid * patch[1])


def _training_args(extras: dict[str, Any]) -> dict[str, Any]:
    """Official training checkpoints keep their argparse ``args``: the pixel target and mask ratio they record."""
    args = vars(extras["args"]) if hasattr(extras.get("args"), "__dict__") else {}
    return {name: args[name] for name in ("norm_pix_loss", "mask_ratio") if name in args}
