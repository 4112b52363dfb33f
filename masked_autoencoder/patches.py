"""patchify / unpatchify in the official pixel order, for images and for clips, and the grid arithmetic of patches.

Images (B, C, H, W) are cut into P_h x P_w patches; clips (B, C, T, H, W) into t x P_h x P_w tubelets (VideoMAE's
``tubelet_size`` t, consecutive frames), listed (t, h, w) row-major with their pixels ordered (frame in the
tubelet, row, column, channel): the order of VideoMAE's targets and of the official space-time MAE.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ._validation import describe, grid_or_square, is_int, require, to_pair

# Row-major patches; inside a patch the pixels are ordered (row p, column q, channel c), as the
# official checkpoints' decoders predict them.
_PATCHIFY = "b c (h p) (w q) -> b (h w) (p q c)"
_UNPATCHIFY = "b (h w) (p q c) -> b c (h p) (w q)"
_PATCHIFY_CLIP = "b c (t u) (h p) (w q) -> b (t h w) (u p q c)"
_UNPATCHIFY_CLIP = "b (t h w) (u p q c) -> b c (t u) (h p) (w q)"

PatchSize = int | tuple[int, int] | tuple[int, int, int]
"""P (square), (P_h, P_w), or for clips (t, P_h, P_w): the tubelet's frames first."""


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


def clip_grid(clips: torch.Tensor, tubelet: tuple[int, int, int], channels: int | None = None) -> tuple[int, int, int]:
    """Validate a batch of clips and return its tubelet grid.

    clips: (B, C, T, H, W), tubelet (t, P_h, P_w) -> (T / t, H / P_h, W / P_w). ``channels``: the required C.
    """
    ok_rank = isinstance(clips, torch.Tensor) and clips.dim() == 5
    require(ok_rank, "imgs", describe(clips), "a 5-D tensor of clips (B, C, T, H, W)")
    if channels is not None:
        require(clips.shape[1] == channels, "imgs", describe(clips), f"{channels} channels (dim 1)")
    sizes = clips.shape[-3:]
    divisible = all(size % step == 0 for size, step in zip(sizes, tubelet, strict=True))
    require(divisible, "imgs", describe(clips), f"frames, height and width divisible by the tubelet {tubelet}")
    return sizes[0] // tubelet[0], sizes[1] // tubelet[1], sizes[2] // tubelet[2]


def tubelet_of(patch_size: PatchSize, tubelet_size: int | None) -> tuple[int, int, int]:
    """The (t, P_h, P_w) tubelet of ``patch_size`` and ``tubelet_size`` (default 1 frame); checked."""
    if _is_triple(patch_size):
        frames, patch = patch_size[0], tuple(patch_size[1:])
        agree = tubelet_size is None or tubelet_size == frames
        require(agree, "tubelet_size", repr(tubelet_size), f"None or {frames}, the frames of patch_size {patch_size}")
    else:
        frames, patch = (1 if tubelet_size is None else tubelet_size), patch_size
    require(is_int(frames) and frames > 0, "tubelet_size", repr(frames), "a positive int (frames per tubelet)")
    return (frames, *to_pair(patch, "patch_size"))  # type: ignore[arg-type]


def patchify(imgs: torch.Tensor, patch_size: PatchSize, *, tubelet_size: int | None = None) -> torch.Tensor:
    """Cut images or clips into flattened patches (tubelets) in the official order.

    imgs: (B, C, H, W) -> (B, L, P_h*P_w*C) with L = (H / P_h) * (W / P_w), patches row-major.
    Clips: (B, C, T, H, W) with ``patch_size`` (t, P_h, P_w) or ``tubelet_size`` t -> (B, L, t*P_h*P_w*C) with
    L = (T / t) * (H / P_h) * (W / P_w), tubelets (t, h, w) row-major.
    """
    if isinstance(imgs, torch.Tensor) and imgs.dim() == 5:
        tubelet = tubelet_of(patch_size, tubelet_size)
        clip_grid(imgs, tubelet)
        return to_tubelets(imgs, tubelet)
    require(tubelet_size in (None, 1), "tubelet_size", repr(tubelet_size), "None or 1 for images (B, C, H, W)")
    require(isinstance(patch_size, int) or len(patch_size) == 2, "patch_size", repr(patch_size), "P or (P_h, P_w)")
    patch_grid(imgs, patch_size)  # type: ignore[arg-type]
    return to_patches(imgs, to_pair(patch_size, "patch_size"))  # type: ignore[arg-type]


def to_tubelets(clips: torch.Tensor, tubelet: tuple[int, int, int]) -> torch.Tensor:
    """:func:`patchify` of clips already checked. (B, C, T, H, W) -> (B, L, t*P_h*P_w*C)."""
    return rearrange(clips, _PATCHIFY_CLIP, u=tubelet[0], p=tubelet[1], q=tubelet[2])


def to_patches(imgs: torch.Tensor, patch_hw: tuple[int, int]) -> torch.Tensor:
    """:func:`patchify` of images already checked (the models' inner path). (B, C, H, W) -> (B, L, P_h*P_w*C)."""
    return rearrange(imgs, _PATCHIFY, p=patch_hw[0], q=patch_hw[1])


def unpatchify(
    patches: torch.Tensor,
    patch_size: PatchSize,
    grid_size: int | tuple[int, int] | tuple[int, int, int] | None = None,
    *,
    tubelet_size: int | None = None,
) -> torch.Tensor:
    """Reassemble images or clips from patches; the exact inverse of :func:`patchify`.

    patches: (B, L, P_h*P_w*C), grid_size (h, w) with h * w = L -> (B, C, h*P_h, w*P_w).
    Without ``grid_size`` the grid is square: h = w = sqrt(L). Clips: a (T', H', W') ``grid_size`` (required),
    with ``patch_size`` (t, P_h, P_w) or ``tubelet_size`` t: (B, L, t*P_h*P_w*C) -> (B, C, T'*t, H'*P_h, W'*P_w).
    """
    ok_rank = isinstance(patches, torch.Tensor) and patches.dim() == 3
    require(ok_rank, "patches", describe(patches), "a 3-D tensor (B, L, P_h*P_w*C)")
    if tubelet_size is not None or _is_triple(patch_size) or _is_triple(grid_size):
        return _unpatchify_clips(patches, tubelet_of(patch_size, tubelet_size), grid_size)
    patch_h, patch_w = to_pair(patch_size, "patch_size")  # type: ignore[arg-type]
    length = patches.shape[1]
    grid_h, grid_w = grid_or_square(grid_size, length, "grid_size", f"L = {length} patches (dim 1)")
    require(length == grid_h * grid_w, "patches", describe(patches), f"L = {grid_h}*{grid_w} patches (dim 1)")
    pixels = patch_h * patch_w
    require(patches.shape[2] % pixels == 0, "patches", describe(patches), f"a last dim divisible by P_h*P_w = {pixels}")
    return rearrange(patches, _UNPATCHIFY, h=grid_h, w=grid_w, p=patch_h, q=patch_w)


def _unpatchify_clips(patches: torch.Tensor, tubelet: tuple[int, int, int], grid_size: object) -> torch.Tensor:
    """:func:`unpatchify` for clips. (B, L, t*P_h*P_w*C), grid (T', H', W') -> (B, C, T, H, W)."""
    ok_grid = (
        isinstance(grid_size, (tuple, list)) and len(grid_size) == 3 and all(is_int(v) and v > 0 for v in grid_size)
    )
    require(ok_grid, "grid_size", repr(grid_size), "the (T', H', W') tubelet grid of clips, three positive ints")
    frames, height, width = grid_size  # type: ignore[misc]
    length = patches.shape[1]
    require(length == frames * height * width, "patches", describe(patches), f"L = {frames}*{height}*{width} (dim 1)")
    pixels = tubelet[0] * tubelet[1] * tubelet[2]
    require(
        patches.shape[2] % pixels == 0, "patches", describe(patches), f"a last dim divisible by t*P_h*P_w = {pixels}"
    )
    return rearrange(patches, _UNPATCHIFY_CLIP, t=frames, h=height, w=width, u=tubelet[0], p=tubelet[1], q=tubelet[2])


def _is_triple(value: object) -> bool:
    """Whether ``value`` is a sequence of three sizes: a clip's tubelet or grid (T, H, W)."""
    return isinstance(value, (tuple, list)) and len(value) == 3
