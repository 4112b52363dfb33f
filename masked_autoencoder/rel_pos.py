"""Decomposed relative position biases (ViTDet, after MViTv2): one table per axis, added to the attention logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def axis_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """The bias vectors of every (query, key) pair along one axis of ``size`` positions.

    table: (2 * S - 1, d), one row per offset -(S-1) .. S-1 of the size S it was made for; linearly
    resized when ``size`` differs, as ViTDet does -> (size, size, d).
    """
    offsets = 2 * size - 1
    if table.shape[0] != offsets:
        table = F.interpolate(table.T[None], size=offsets, mode="linear")[0].T
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def decomposed_bias(
    q: torch.Tensor, grid: tuple[int, int], rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor
) -> torch.Tensor:
    """The attention-logit bias of queries on an (h, w) grid towards keys of the same grid.

    q: (N, heads, h*w, d), unscaled -> (N, heads, h*w, h*w): bias[q, k] = q . R_h[q_row, k_row] + q . R_w[q_col, k_col].
    """
    height, width = grid
    rows = rearrange(q, "n m (h w) d -> n m h w d", h=height, w=width)
    along_h = torch.einsum("nmhwd,hkd->nmhwk", rows, axis_table(rel_pos_h, height))
    along_w = torch.einsum("nmhwd,wkd->nmhwk", rows, axis_table(rel_pos_w, width))
    bias = along_h[..., :, None] + along_w[..., None, :]  # (N, heads, h, w, key rows, key cols)
    return rearrange(bias, "n m h w r c -> n m (h w) (r c)")


def with_class_token(bias: torch.Tensor) -> torch.Tensor:
    """A patches-only bias (N, heads, L, L) for tokens with a class token first: zero in its row and column."""
    return F.pad(bias, (1, 0, 1, 0))
