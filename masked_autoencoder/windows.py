"""Windowed self-attention (ViTDet, Li et al. 2022): each patch attends within its window of the grid.

Windows are non-overlapping squares of ``window_size`` patches a side, from the top-left corner; a grid
that does not divide is padded at the bottom and the right, and the padding is masked out of every
attention (it never reaches a real token). The class token, which has no place on the grid, is a key
of every window (each patch sees it, as under global attention) and attends globally itself: with a
window as large as the grid, windowed attention is global attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .rel_pos import decomposed_bias


def vitdet_global_blocks(depth: int) -> tuple[int, ...]:
    """ViTDet's global-attention blocks: the last of each quarter of the blocks (ViT-B 2, 5, 8, 11; ViT-L 5, 11,
    17, 23; ViT-H 7, 15, 23, 31), for any depth."""
    return tuple(sorted({math.ceil((quarter + 1) * depth / 4) - 1 for quarter in range(4)}))


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int],
    window_size: int,
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Attention of ``1 + h*w`` tokens (class token first, patches row-major) within windows of the patch grid.

    q, k, v: (B, heads, 1 + h*w, d) -> (B, heads, 1 + h*w, d). ``rel_pos``: the (rows, columns) tables of
    :func:`masked_autoencoder.rel_pos.decomposed_bias`, for positions inside a window (the class token
    takes none).
    """
    height, width = grid
    pad_h, pad_w = (-height) % window_size, (-width) % window_size
    rows, cols = (height + pad_h) // window_size, (width + pad_w) // window_size
    cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # the class token attends to every token

    def windows(tokens: torch.Tensor) -> torch.Tensor:
        """(B, heads, h*w, d) patches -> (B * windows, heads, window_size**2, d), zero-padded."""
        patches = rearrange(tokens, "b n (h w) d -> b n d h w", h=height, w=width)
        patches = F.pad(patches, (0, pad_w, 0, pad_h))
        return rearrange(
            patches, "b n d (r s) (c t) -> (b r c) n (s t) d", r=rows, c=cols, s=window_size, t=window_size
        )

    batch = q.shape[0]
    num_windows = rows * cols
    cls_k = k[:, :, :1].repeat_interleave(num_windows, dim=0)  # (B * windows, heads, 1, d)
    cls_v = v[:, :, :1].repeat_interleave(num_windows, dim=0)
    keys = torch.cat([cls_k, windows(k[:, :, 1:])], dim=2)
    values = torch.cat([cls_v, windows(v[:, :, 1:])], dim=2)
    queries = windows(q[:, :, 1:])
    mask = None
    if pad_h or pad_w:  # padded keys take no part: (B * windows, 1, 1, 1 + window_size**2), the class key first
        real = windows(torch.ones(1, 1, height * width, 1, dtype=torch.bool, device=q.device))[:, 0, :, 0]
        mask = torch.cat([real.new_ones(num_windows, 1), real], dim=1).repeat(batch, 1)[:, None, None, :]
    if rel_pos is not None:  # the bias, with -inf where a key is padding
        bias = decomposed_bias(queries, (window_size, window_size), *rel_pos)
        bias = F.pad(bias, (1, 0))  # the class key: no position, no bias
        mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
    out = rearrange(out, "(b r c) n (s t) d -> b n d (r s) (c t)", b=batch, r=rows, c=cols, s=window_size)
    out = rearrange(out[..., :height, :width], "b n d h w -> b n (h w) d")
    return torch.cat([cls_out, out], dim=2)
