"""Position embeddings: the fixed sin-cos tables for any (h, w) patch grid or (T', h, w) tubelet grid, and the
resize of learned tables."""

from __future__ import annotations

import math

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
    work, device = _work_dtype(device)
    if device.type == "meta":  # a model built for loading: shapes only (the math on meta costs ~4 ms a table)
        return torch.empty(grid_h * grid_w + int(cls_token), dim, device=device, dtype=dtype)
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


def sincos_pos_embed_flat(
    dim: int, length: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """VideoMAE's table: 1-D sin-cos over the flattened token index, whatever the grid. Returns (length, dim).

    Token n gets ``sin(n * w_k)`` at dim 2k and ``cos(n * w_k)`` at dim 2k + 1 (interleaved, as the
    Transformer's), ``w_k = 10000 ** (-2k / dim)``; computed in float64, then cast.
    """
    require(isinstance(dim, int) and dim > 0 and dim % 2 == 0, "dim", repr(dim), "a positive even int")
    work, device = _work_dtype(device)
    omega = 1.0 / _TEMPERATURE ** (torch.arange(0, dim, 2, device=device, dtype=work) / dim)
    angle = torch.outer(torch.arange(length, device=device, dtype=work), omega)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(length, dim).to(dtype)


def sincos_pos_embed_3d(
    dim: int,
    grid_size: tuple[int, int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A separable space-time table for a (T', h, w) tubelet grid: time and space each in their own dims.

    Returns (T'*h*w, dim), tubelets (t, h, w) row-major. The first dim/4 dims are a 1-D sin-cos of the time
    slot (sines, then cosines), the other 3*dim/4 the official 2-D table (:func:`sincos_pos_embed_2d`) of the
    patch's place in its frame: every time slot sees the same spatial code, as the space-time MAE's separate
    spatial and temporal embeddings do (there learned and summed; here fixed and side by side).
    """
    require(isinstance(dim, int) and dim > 0 and dim % 16 == 0, "dim", repr(dim), "a positive multiple of 16")
    frames, height, width = grid_size
    time_dim = dim // 4
    work, device = _work_dtype(device)
    omega = 1.0 / _TEMPERATURE ** (torch.arange(time_dim // 2, device=device, dtype=work) / (time_dim // 2))
    angle = torch.outer(torch.arange(frames, device=device, dtype=work), omega)
    time = torch.cat([angle.sin(), angle.cos()], dim=1)  # (T', dim/4)
    space = sincos_pos_embed_2d(dim - time_dim, (height, width), device=device, dtype=work)  # (h*w, 3*dim/4)
    table = torch.cat([time[:, None].expand(-1, height * width, -1), space[None].expand(frames, -1, -1)], dim=-1)
    return table.reshape(frames * height * width, dim).to(dtype)


def clip_position_table(
    dim: int,
    grid_size: tuple[int, ...],
    kind: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A video model's fixed table for a (T', h, w) grid: ``kind`` ``"separable"`` (:func:`sincos_pos_embed_3d`) or
    ``"flat"`` (:func:`sincos_pos_embed_flat` over the T'*h*w tokens). Returns (T'*h*w, dim)."""
    if kind == "flat":
        return sincos_pos_embed_flat(dim, math.prod(grid_size), device=device, dtype=dtype)
    return sincos_pos_embed_3d(dim, grid_size, device=device, dtype=dtype)  # type: ignore[arg-type]


def unsaved_table_device() -> torch.device:
    """Where a fixed table that checkpoints do not hold is built: torch's default device, or the CPU when that is
    ``meta`` (a model built on meta for loading gets its saved tensors from the file, and this one from nowhere)."""
    device = torch.get_default_device()
    return torch.device("cpu") if device.type == "meta" else device


def _work_dtype(device: torch.device | str | None) -> tuple[torch.dtype, torch.device]:
    """float64 for computing tables, as the official numpy code (float32 on MPS, which has none), and the device
    (default: torch's default device)."""
    device = torch.get_default_device() if device is None else torch.device(device)
    return (torch.float32 if device.type == "mps" else torch.float64), device


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
