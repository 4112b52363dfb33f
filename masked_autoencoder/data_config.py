"""What a model's weights expect as input: its ``pretrained_cfg``, with timm's keys, for fresh and loaded models.

The one home of the input statistics. Keys (timm's meanings, so ``timm.data.resolve_model_data_config`` reads
it): ``input_size`` (C, H, W), ``interpolation``, ``crop_pct``, ``mean`` and ``std`` (C values each, in the
units of the pixels the model is fed before normalisation: [0, 1] for images, the data's own for other bands),
and for published weights ``name``, ``url`` and ``license``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._validation import is_number, require
from .config import MAEConfig

# Every published MAE weight was trained on ImageNet, normalised by its mean and std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATION = "bicubic"  # the official resize, for pre-training crops and evaluation alike
EVAL_SIDE = 224
EVAL_CROP_PCT = 224 / 256  # the official evaluation: resize to 256, centre crop 224; larger inputs are not cropped


def default_pretrained_cfg(config: MAEConfig) -> dict[str, Any]:
    """The data config of a model built fresh from ``config``: the official recipe's.

    RGB models take ImageNet's statistics; other channel counts take the mean of the three for every band
    (what a model adapted from RGB weights was fed on average): a placeholder until a data set's own
    statistics are recorded (``examples/pretrain.py`` measures and records them).
    """
    channels, (height, width) = config.in_chans, config.image_hw
    if channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels
    return {
        "input_size": (channels, height, width),
        "interpolation": INTERPOLATION,
        "crop_pct": EVAL_CROP_PCT if max(height, width) <= EVAL_SIDE else 1.0,
        "mean": mean,
        "std": std,
    }


def resolve_pretrained_cfg(recorded: Mapping[str, Any] | None, config: MAEConfig) -> dict[str, Any]:
    """The data config of a model of ``config`` whose weights recorded ``recorded`` (None: nothing).

    ``input_size`` is always the model's own (its config); a record's ``mean`` / ``std`` for another channel
    count (RGB weights adapted to N bands) give way to the defaults for the model's channels.
    """
    resolved = default_pretrained_cfg(config)
    record = dict(recorded or {})
    if len(record.get("mean", ())) != config.in_chans or len(record.get("std", ())) != config.in_chans:
        record.pop("mean", None), record.pop("std", None)
    for key in ("mean", "std"):
        if key in record:
            record[key] = tuple(float(value) for value in record[key])  # JSON gives lists, NumPy gives its floats
    return {**resolved, **record, "input_size": resolved["input_size"]}


def check_pretrained_cfg(cfg: Mapping[str, Any], config: MAEConfig) -> dict[str, Any]:
    """``cfg`` validated for a model of ``config``, completed with the defaults: raises ``ValueError`` on bad values."""
    require(isinstance(cfg, Mapping), "pretrained_cfg", repr(cfg), "a dict")
    cfg, channels = {**default_pretrained_cfg(config), **cfg}, config.in_chans
    for key in ("mean", "std"):
        values = cfg[key]
        ok = isinstance(values, (list, tuple)) and len(values) == channels
        ok = ok and all(is_number(value) and math.isfinite(value) for value in values)
        require(ok, f"pretrained_cfg[{key!r}]", repr(values), f"{channels} finite numbers (in_chans={channels})")
    require(all(value > 0 for value in cfg["std"]), "pretrained_cfg['std']", repr(cfg["std"]), "positive values")
    crop = cfg["crop_pct"]
    require(is_number(crop) and 0 < crop <= 1, "pretrained_cfg['crop_pct']", repr(crop), "a number in (0, 1]")
    interpolation = cfg["interpolation"]
    require(isinstance(interpolation, str), "pretrained_cfg['interpolation']", repr(interpolation), "a str")
    return resolve_pretrained_cfg(cfg, config)
