"""RandomMasking: which patches the encoder sees, as the official per-sample shuffle."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ._validation import describe, fail, require, require_mask_ratio


class MaskingOutput(NamedTuple):
    """What masking returns; B batch, L patches, K kept, D width."""

    kept: torch.Tensor
    """(B, K, D): the kept tokens, in shuffle order."""
    mask: torch.Tensor
    """(B, L): 1 where a patch was removed, 0 where kept, in image order (dtype of the tokens)."""
    ids_restore: torch.Tensor
    """(B, L) int64: position of each image-order patch in the shuffled order (undoes the shuffle)."""
    ids_keep: torch.Tensor
    """(B, K) int64: image-order indices of the kept patches."""


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """K = int(L * (1 - mask_ratio)): truncation, as in the official code."""
    return int(num_patches * (1 - mask_ratio))


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens per sample. tokens: (B, L, D), ids: (B, K) -> (B, K, D)."""
    # expand is a view: no (B, K, D) index tensor is materialised, unlike the official repeat.
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class RandomMasking(nn.Module):
    """Per-sample uniform random masking without replacement (argsort of noise, lowest kept).

    tokens: (B, L, D) -> :class:`MaskingOutput` with K = int(L * (1 - mask_ratio)). Instead of
    random noise a caller may pass ``noise`` (B, L) to reproduce the official shuffle exactly, a
    ``generator`` for reproducible draws, or its own boolean ``mask`` (B, L), True = removed, with
    the same number of removed patches in every row (the kept tokens then stay in image order).
    """

    def __init__(self, mask_ratio: float = 0.75) -> None:
        super().__init__()
        require_mask_ratio(mask_ratio)
        self.mask_ratio = mask_ratio

    def extra_repr(self) -> str:
        return f"mask_ratio={self.mask_ratio}"

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MaskingOutput:
        require(isinstance(tokens, torch.Tensor) and tokens.dim() == 3, "tokens", describe(tokens), "(B, L, D)")
        batch, length = tokens.shape[:2]
        if mask is not None:
            for name, value in (("noise", noise), ("mask_ratio", mask_ratio), ("generator", generator)):
                require(value is None, name, type(value).__name__, "None when a mask is given")
            ids_shuffle, len_keep = _order_from_mask(mask, tokens)
        else:
            ratio = self.mask_ratio if mask_ratio is None else mask_ratio
            require_mask_ratio(ratio)
            if noise is None:
                noise = torch.rand(batch, length, device=tokens.device, generator=generator)
            else:
                require(generator is None, "generator", "a generator", "None when noise is given")
                _check_per_patch(noise, "noise", tokens, "a floating-point dtype", torch.is_floating_point)
            ids_shuffle, len_keep = torch.argsort(noise, dim=1), num_kept(length, ratio)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        # Equal to the official "ones, zero the first K, unshuffle", without a scatter.
        removed = (ids_restore >= len_keep).to(tokens.dtype)
        return MaskingOutput(gather_tokens(tokens, ids_keep), removed, ids_restore, ids_keep)


def _order_from_mask(mask: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A shuffle that puts the kept patches first, in image order, and the number kept."""
    _check_per_patch(mask, "mask", tokens, "dtype torch.bool (True = removed)", _is_bool)
    removed_per_row = mask.sum(dim=1)
    counts = removed_per_row.unique().tolist()  # a data-dependent length: one sync, for user masks only
    if len(counts) != 1:
        fail("mask", f"rows removing {counts} patches", "the same number of removed patches in every row")
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return ids_shuffle, mask.shape[1] - int(counts[0])


def _is_bool(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.bool


def _check_per_patch(
    value: object, name: str, tokens: torch.Tensor, dtype_text: str, dtype_ok: Callable[[torch.Tensor], bool]
) -> None:
    """Raise unless ``value`` is a (B, L) tensor of the right dtype on the tokens' device."""
    batch, length = tokens.shape[:2]
    ok = (
        isinstance(value, torch.Tensor)
        and tuple(value.shape) == (batch, length)
        and dtype_ok(value)
        and value.device == tokens.device
    )
    require(ok, name, describe(value), f"a ({batch}, {length}) tensor of {dtype_text} on {tokens.device}")
