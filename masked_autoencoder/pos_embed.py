"""2-D position embeddings: the fixed sin-cos table for any (h, w) patch grid, and the resize of learned tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from ._validation import describe, grid_or_square, is_static, require, to_pair

_TEMPERATURE = 10000.0


def sincos_pos_embed_2d(
    dim: int,
    grid_size: int | tuple[int, int],
    *,
    cls_token: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The official MAE sin-cos table for an (h, w) grid, computed in float64 and then cast.

    Returns (h*w, dim), or (1 + h*w, dim) with a zero row first when ``cls_token``. Patch (i, j)
    (row-major) gets ``[sin(j*w_k), cos(j*w_k), sin(i*w_k), cos(i*w_k)]`` over k < dim/4 with
    ``w_k = 10000 ** (-k / (dim/4))``: the column half comes first, as in the official code, whose
    meshgrid puts the w coordinate in front. ``device`` defaults to torch's default device; on ``meta``
    the table has its shape only.
    """
    require(isinstance(dim, int) and dim > 0 and dim % 4 == 0, "dim", repr(dim), "a positive multiple of 4")
    grid_h, grid_w = to_pair(grid_size, "grid_size")
    device = torch.get_default_device() if device is None else torch.device(device)
    if device.type == "meta":  # a model built for loading: shapes only (the math on meta costs ~4 ms a table)
        return torch.empty(grid_h * grid_w + int(cls_token), dim, device=device, dtype=dtype)
    # float64 as the official numpy code; MPS has no float64.
    work = torch.float32 if device.type == "mps" else torch.float64
    quarter = dim // 4
    omega = 1.0 / _TEMPERATURE ** (torch.arange(quarter, device=device, dtype=work) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, device=device, dtype=work),
        torch.arange(grid_w, device=device, dtype=work),
        indexing="ij",
    )
    halves = [torch.outer(coord.reshape(-1), omega) for coord in (cols, rows)]
    table = torch.cat([f(angle) for angle in halves for f in (torch.sin, torch.cos)], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)
    return table.to(dtype)


def position_table_for_grid(stored: torch.Tensor, stored_grid: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """A stored (1, 1 + L, D) sin-cos table, or the same table regenerated exactly for another grid.

    Returns (1, 1 + h*w, D) on the stored table's device and dtype.
    """
    if is_static(*grid) and grid == stored_grid:  # a traced grid is regenerated: comparing would specialise it
        return stored
    table = sincos_pos_embed_2d(stored.shape[-1], grid, cls_token=True, device=stored.device, dtype=stored.dtype)
    return table[None]


def resize_pos_embed(
    table: torch.Tensor, new_grid: int | tuple[int, int], old_grid: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Resize a position table to another patch grid, as the official fine-tuning code does.

    table: (1, 1 + L, D), class row first -> (1, 1 + h*w, D) for ``new_grid`` (h, w). The patch
    rows, laid out as the ``old_grid`` (default: the square grid of L), are interpolated in 2-D
    (bicubic, align_corners=False); the class row is kept unchanged. Same grid: ``table`` itself.
    """
    ok_table = isinstance(table, torch.Tensor) and table.dim() == 3 and table.shape[0] == 1 and table.shape[1] > 1
    require(ok_table, "table", describe(table), "a (1, 1 + L, D) position table, class row first")
    new_h, new_w = to_pair(new_grid, "new_grid")
    num_patches = table.shape[1] - 1
    old_h, old_w = grid_or_square(old_grid, num_patches, "old_grid", f"{num_patches} patches")
    require(old_h * old_w == num_patches, "old_grid", (old_h, old_w), f"a grid of h * w = {num_patches} patches")
    if is_static(new_h, new_w) and (old_h, old_w) == (new_h, new_w):  # as above: a traced grid is interpolated
        return table
    # fp16 / bf16 tables are interpolated in float32, then cast back: one rounding instead of one per tap.
    work = torch.promote_types(table.dtype, torch.float32)
    patches = rearrange(table[:, 1:].to(work), "b (h w) d -> b d h w", h=old_h, w=old_w)
    patches = F.interpolate(patches, size=(new_h, new_w), mode="bicubic", align_corners=False)
    return torch.cat([table[:, :1], rearrange(patches, "b d h w -> b (h w) d").to(table.dtype)], dim=1)
