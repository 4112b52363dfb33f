"""patchify / unpatchify in the official pixel order, and the grid arithmetic of patches."""

from __future__ import annotations

import torch
from einops import rearrange

from ._validation import describe, grid_or_square, require, to_pair

# Row-major patches; inside a patch the pixels are ordered (row p, column q, channel c), as the
# official checkpoints' decoders predict them.
_PATCHIFY = "b c (h p) (w q) -> b (h w) (p q c)"
_UNPATCHIFY = "b (h w) (p q c) -> b c (h p) (w q)"


def patch_grid(imgs: torch.Tensor, patch_size: int | tuple[int, int], channels: int | None = None) -> tuple[int, int]:
    """Validate an image batch and return its patch grid.

    imgs: (B, C, H, W) -> (H / P_h, W / P_w). ``channels``, when given, is the required C.
    """
    patch_h, patch_w = to_pair(patch_size, "patch_size")
    require(isinstance(imgs, torch.Tensor) and imgs.dim() == 4, "imgs", describe(imgs), "a 4-D tensor (B, C, H, W)")
    if channels is not None:
        require(imgs.shape[1] == channels, "imgs", describe(imgs), f"{channels} channels (dim 1)")
    height, width = imgs.shape[-2:]
    require(
        height % patch_h == 0 and width % patch_w == 0,
        "imgs",
        describe(imgs),
        f"height and width divisible by the patch size {(patch_h, patch_w)}",
    )
    return height // patch_h, width // patch_w


def patchify(imgs: torch.Tensor, patch_size: int | tuple[int, int]) -> torch.Tensor:
    """Cut images into flattened patches in the official order.

    imgs: (B, C, H, W) -> (B, L, P_h*P_w*C) with L = (H / P_h) * (W / P_w), patches row-major.
    """
    patch_grid(imgs, patch_size)
    return to_patches(imgs, to_pair(patch_size, "patch_size"))


def to_patches(imgs: torch.Tensor, patch_hw: tuple[int, int]) -> torch.Tensor:
    """:func:`patchify` of images already checked (the models' inner path). (B, C, H, W) -> (B, L, P_h*P_w*C)."""
    return rearrange(imgs, _PATCHIFY, p=patch_hw[0], q=patch_hw[1])


def unpatchify(
    patches: torch.Tensor, patch_size: int | tuple[int, int], grid_size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Reassemble images from patches; the exact inverse of :func:`patchify`.

    patches: (B, L, P_h*P_w*C), grid_size (h, w) with h * w = L -> (B, C, h*P_h, w*P_w).
    Without ``grid_size`` the grid is square: h = w = sqrt(L).
    """
    patch_h, patch_w = to_pair(patch_size, "patch_size")
    ok_rank = isinstance(patches, torch.Tensor) and patches.dim() == 3
    require(ok_rank, "patches", describe(patches), "a 3-D tensor (B, L, P_h*P_w*C)")
    length = patches.shape[1]
    grid_h, grid_w = grid_or_square(grid_size, length, "grid_size", f"L = {length} patches (dim 1)")
    require(length == grid_h * grid_w, "patches", describe(patches), f"L = {grid_h}*{grid_w} patches (dim 1)")
    pixels = patch_h * patch_w
    require(patches.shape[2] % pixels == 0, "patches", describe(patches), f"a last dim divisible by P_h*P_w = {pixels}")
    return rearrange(patches, _UNPATCHIFY, h=grid_h, w=grid_w, p=patch_h, q=patch_w)
