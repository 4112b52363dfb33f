"""RGB weights for another number of input channels: the patch embedding (as timm adapts it) and the pixel head.

The rule keeps an image whose channels are all equal to a grey level g meaning what (g, g, g) means to
the RGB model: one channel sums the three input filters, N channels repeat them (R, G, B, R, ...) and
scale by 3 / N (exact when N is a multiple of 3); the pixel head predicts, for one channel, the mean of
its R, G and B predictions, and for N channels channel c predicts as RGB channel c mod 3.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from ..checkpoint_rules import CheckpointRules

_RGB = 3


def adapt_channels(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rules: CheckpointRules, source: str
) -> list[str]:
    """Adapt, in ``state``, an RGB checkpoint to the model's channel count; returns the keys changed.

    The keys are the model's declared ``input_filters`` and ``pixel_outputs``. Does nothing when the
    counts agree; a checkpoint of other than 3 channels cannot be adapted (ValueError).
    """
    filters = [key for key in rules.input_filters if key in state and key in expected]
    mismatched = [key for key in filters if state[key].shape[1] != expected[key].shape[1]]
    if not mismatched:
        return []
    stored, channels = state[mismatched[0]].shape[1], expected[mismatched[0]].shape[1]
    if stored != _RGB:
        raise ValueError(
            f"{source} has {stored}-channel weights: only RGB (3-channel) weights are adapted to "
            f"in_chans={channels}; build the model with in_chans={stored}"
        )
    for key in mismatched:
        state[key] = adapt_input_filters(state[key], channels)
    heads = [key for key in rules.pixel_outputs if key in state and key in expected]
    for key in heads:
        state[key] = adapt_pixel_head(state[key], channels)
    return [*mismatched, *heads]


def adapt_input_filters(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB patch filters for ``channels`` input channels. weight: (D, 3, P_h, P_w) -> (D, channels, P_h, P_w)."""
    work = weight.float()  # sums of fp16 weights in fp32
    if channels == 1:
        return work.sum(dim=1, keepdim=True).to(weight.dtype)
    repeated = work.repeat(1, math.ceil(channels / _RGB), 1, 1)[:, :channels]
    return (repeated * (_RGB / channels)).to(weight.dtype)


def adapt_pixel_head(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """The RGB pixel head's rows for ``channels`` channels. (P_h*P_w*3, ...) -> (P_h*P_w*channels, ...).

    Rows are ordered (row p, column q, channel c), as :func:`patchify`'s pixels.
    """
    rows = rearrange(tensor, "(pq c) ... -> pq c ...", c=_RGB)
    if channels == 1:
        rows = rows.float().mean(dim=1, keepdim=True).to(tensor.dtype)
    else:
        rows = rows[:, torch.arange(channels, device=tensor.device) % _RGB]
    return rearrange(rows, "pq c ... -> (pq c) ...")
