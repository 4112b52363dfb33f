"""Masking strategies: which patches the encoder sees (random as the official shuffle, block-wise, grid-wise)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypedDict

import torch
from torch import nn

from ._validation import describe, fail, is_int, is_number, require, require_mask_ratio, square_side


class MaskingArgs(TypedDict, total=False):
    """The per-call masking keywords of the models' masked forwards, gathered once (see :class:`MaskingStrategy`)."""

    noise: torch.Tensor | None
    """(B, L) scores of the caller's own, the K lowest kept (the official random shuffle)."""
    mask: torch.Tensor | None
    """(B, L) bool, True = removed, or 0 / 1 floats as a model's ``out.mask``; the same count in every row."""
    generator: torch.Generator | None
    """For reproducible draws."""
    masking: MaskingStrategy | None
    """A strategy that replaces the model's own for this call."""


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


def num_kept(num_patches: int, mask_ratio: float | torch.Tensor) -> Any:
    """K = int(L * (1 - mask_ratio)): truncation, as in the official code; a (B,) ratio gives a (B,) int64 K."""
    if isinstance(mask_ratio, torch.Tensor):  # float64, as Python computes it for a single ratio
        return (num_patches * (1 - mask_ratio.double())).long()
    return torch.sym_int(num_patches * (1 - mask_ratio))  # int() of a traced size would fix it to one value


def kept_slots(mask: torch.Tensor, slots: int) -> torch.Tensor:
    """Which of the first ``slots`` positions in shuffle order hold a kept patch. mask: (B, L) -> (B, slots) bool.

    With one ratio for the batch all K do; with a ratio per image, image b's first L - sum(mask[b]).
    """
    kept = mask.shape[1] - mask.sum(dim=1, keepdim=True)
    return torch.arange(slots, device=mask.device) < kept


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens per sample. tokens: (B, L, D), ids: (B, K) -> (B, K, D)."""
    # expand is a view: no (B, K, D) index tensor is materialised, unlike the official repeat.
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class MaskingStrategy(nn.Module):
    """Chooses which patches the encoder sees: the interface every masking strategy shares.

    tokens: (B, L, D) -> :class:`MaskingOutput` with the same K = :meth:`kept_count` kept patches in
    every image (the encoder's batch is rectangular). A strategy implements :meth:`scores`: a (B, L)
    score per patch, the K lowest kept. Every strategy also takes, per call, ``mask_ratio``, a
    ``generator`` for reproducible draws, ``noise`` (B, L) scores of the caller's own (the official
    random shuffle), or a ``mask`` (B, L), bool with True = removed or 0 / 1 floats as :class:`MaskingOutput`
    returns it (any other value raises), with the same number of removed patches in every row (the kept tokens
    then stay in image order). A strategy with
    ``per_image_ratio`` (:class:`RandomMasking`) also takes a (B,) tensor ``mask_ratio``: image b
    keeps K_b patches, and ``kept`` / ``ids_keep`` are padded to the largest K_b (padding rows of
    ``kept`` are zero; :func:`kept_slots` tells them apart). ``grid`` (h, w) is the patch
    grid of the tokens, row-major; without it the grid is square (or one row if L is not a square).
    Clips' tokens have a (T', h, w) grid: :class:`RandomMasking` (space-time) and :class:`TubeMasking` take it.
    """

    per_image_ratio: ClassVar[bool] = False
    """Whether the strategy takes a (B,) tensor ``mask_ratio``: its scores must not depend on the ratio."""
    tied_scores: ClassVar[bool] = True
    """Whether scores may tie (0 / 1 scores): they are then sorted stably, so that ties keep image order."""

    def __init__(self, mask_ratio: float = 0.75) -> None:
        super().__init__()
        self._mask_ratio = require_mask_ratio(mask_ratio)

    @property
    def mask_ratio(self) -> float:
        """The share of patches removed when a call gives no ``mask_ratio``; read-only: a model's config mirrors it."""
        return self._mask_ratio

    def extra_repr(self) -> str:
        return f"mask_ratio={self.mask_ratio}"

    def scores(
        self, batch: int, grid: tuple[int, ...], mask_ratio: float, *, device: torch.device, generator: Any
    ) -> torch.Tensor:
        """Per-patch scores (B, L) over the grid, row-major; the :meth:`kept_count` lowest of each row are kept."""
        raise NotImplementedError

    def kept_count(self, num_patches: int, mask_ratio: Any, grid: tuple[int, ...] | None = None) -> Any:
        """K, the patches each image keeps: int(L * (1 - mask_ratio)), truncated as the official code.

        ``grid``: the tokens' grid, for strategies whose count depends on it; a (B,) ratio gives a (B,) K.
        """
        return num_kept(num_patches, mask_ratio)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        grid: tuple[int, int] | None = None,
        mask_ratio: float | torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MaskingOutput:
        require(isinstance(tokens, torch.Tensor) and tokens.dim() == 3, "tokens", describe(tokens), "(B, L, D)")
        if isinstance(mask_ratio, torch.Tensor):
            return self._per_image(tokens, grid, mask_ratio, noise, generator)
        length = tokens.shape[1]
        if mask is not None:
            for name, value in (("noise", noise), ("mask_ratio", mask_ratio), ("generator", generator)):
                require(value is None, name, type(value).__name__, "None when a mask is given")
            ids_shuffle, len_keep = _order_from_mask(mask, tokens)
        else:
            ratio = require_mask_ratio(self.mask_ratio if mask_ratio is None else mask_ratio)
            noise = self._scores_or_noise(tokens, grid, ratio, noise, generator)
            len_keep = self.kept_count(length, ratio, _grid_of(length, grid))
            require(len_keep >= 1, "mask_ratio", ratio, f"a ratio that keeps at least one of the {length} patches")
            ids_shuffle = self._shuffle(noise)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        # Equal to the official "ones, zero the first K, unshuffle", without a scatter.
        removed = (ids_restore >= len_keep).to(tokens.dtype)
        return MaskingOutput(gather_tokens(tokens, ids_keep), removed, ids_restore, ids_keep)

    def _per_image(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int] | None,
        ratios: torch.Tensor,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> MaskingOutput:
        """:meth:`forward` with a (B,) ratio: K_b kept per image, padded to the largest."""
        batch, length = tokens.shape[:2]
        name = type(self).__name__
        require(self.per_image_ratio, "mask_ratio", "a tensor", f"a number: {name} takes one ratio for the batch")
        ok = ratios.shape == (batch,) and batch > 0 and ratios.is_floating_point() and ratios.device == tokens.device
        require(ok, "mask_ratio", describe(ratios), f"a number, or a ({batch},) floating tensor on {tokens.device}")
        len_keep = self.kept_count(length, ratios, _grid_of(length, grid))  # (B,)
        # The one host sync of this path: the padded width depends on the data; the checks ride along.
        in_range = ((ratios >= 0) & (ratios < 1)).all().long()
        in_range, fewest, most = torch.stack([in_range, len_keep.min(), len_keep.max()]).tolist()
        if not in_range or fewest < 1:  # the message reads the ratios only on this path
            expected = f"ratios in [0, 1) that keep at least one of the {length} patches"
            fail("mask_ratio", ratios.tolist(), expected)
        noise = self._scores_or_noise(tokens, grid, ratios, noise, generator)
        ids_shuffle = self._shuffle(noise)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :most]
        removed = (ids_restore >= len_keep[:, None]).to(tokens.dtype)
        kept = gather_tokens(tokens, ids_keep).masked_fill(~kept_slots(removed, ids_keep.shape[1])[..., None], 0)
        return MaskingOutput(kept, removed, ids_restore, ids_keep)

    def _shuffle(self, scores: torch.Tensor) -> torch.Tensor:
        """The order of the patches, lowest score first. (B, L) -> (B, L) int64."""
        if self.tied_scores:  # a strategy's 0 / 1 scores: ties keep image order
            return torch.argsort(scores, dim=1, stable=True)
        # The official (unstable) argsort of noise; ONNX has no stable sort to export it with.
        return torch.argsort(scores, dim=1)

    def _scores_or_noise(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int] | None,
        ratio: float | torch.Tensor,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The (B, L) scores to sort: the caller's ``noise``, checked, or the strategy's own draw."""
        batch, length = tokens.shape[:2]
        if noise is None:
            return self.scores(batch, _grid_of(length, grid), ratio, device=tokens.device, generator=generator)
        require(generator is None, "generator", "a generator", "None when noise is given")
        _check_per_patch(noise, "noise", tokens, "a floating-point dtype", torch.is_floating_point)
        return noise


class RandomMasking(MaskingStrategy):
    """Per-sample uniform random masking without replacement (argsort of noise, lowest kept): the paper's default.

    Its scores are uniform noise, so ``noise=`` reproduces the official shuffle exactly. It takes a
    ratio per image (a (B,) tensor ``mask_ratio``).
    """

    per_image_ratio = True
    tied_scores = False

    def scores(
        self, batch: int, grid: tuple[int, ...], mask_ratio: float, *, device: torch.device, generator: Any
    ) -> torch.Tensor:
        return torch.rand(batch, math.prod(grid), **_draw_options(device, generator))


class TubeMasking(MaskingStrategy):
    """Tube masking (VideoMAE's): the same random spatial mask in every time slot of a clip's (T', h, w) grid.

    Each frame keeps h*w - int(mask_ratio * h*w) patches, VideoMAE's rounding (0.9 of 14 x 14: 20 kept), so
    K = T' * that; the default ratio is VideoMAE's 0.9. It takes a ratio per clip (a (B,) tensor ``mask_ratio``).
    A 2-D grid is one time slot: plain random masking with that rounding.
    """

    per_image_ratio = True

    def __init__(self, mask_ratio: float = 0.9) -> None:
        super().__init__(mask_ratio)

    def kept_count(self, num_patches: int, mask_ratio: Any, grid: tuple[int, ...] | None = None) -> Any:
        slots, frame = _time_and_space(num_patches, grid)
        if isinstance(mask_ratio, torch.Tensor):  # float64, as Python computes it for a single ratio
            return slots * (frame - (mask_ratio.double() * frame).long())
        return slots * (frame - int(mask_ratio * frame))

    def scores(
        self, batch: int, grid: tuple[int, ...], mask_ratio: float, *, device: torch.device, generator: Any
    ) -> torch.Tensor:
        slots, frame = _time_and_space(math.prod(grid), grid)
        # Ties across time slots only: a stable sort keeps whole tubes, and K is a multiple of T'.
        draw = torch.rand(batch, 1, frame, **_draw_options(device, generator))
        return draw.expand(-1, slots, -1).flatten(1)


class GridMasking(MaskingStrategy):
    """Grid-wise masking (the paper's Figure 6, right): keep one patch of every ``stride`` x ``stride`` square.

    The kept patches form a regular grid, at an offset drawn per image; the ratio is 1 - 1 / stride**2
    (0.75 for the default stride 2) and no other. The patch grid's sides must be multiples of ``stride``.
    """

    def __init__(self, stride: int = 2) -> None:
        ok = is_int(stride) and stride >= 2
        require(ok, "stride", repr(stride), "an int >= 2")
        super().__init__(1.0 - 1.0 / stride**2)
        self.stride = stride

    def extra_repr(self) -> str:
        return f"stride={self.stride}"

    def kept_count(self, num_patches: int, mask_ratio: Any, grid: tuple[int, ...] | None = None) -> Any:
        return num_patches // self.stride**2

    def scores(
        self, batch: int, grid: tuple[int, ...], mask_ratio: float, *, device: torch.device, generator: Any
    ) -> torch.Tensor:
        _require_image_grid(grid, self)
        stride = self.stride
        require(
            mask_ratio == self.mask_ratio, "mask_ratio", mask_ratio, f"{self.mask_ratio} for a stride-{stride} grid"
        )
        require(grid[0] % stride == 0 and grid[1] % stride == 0, "grid", grid, f"sides that are multiples of {stride}")
        offsets = torch.randint(stride, (batch, 2, 1), **_draw_options(device, generator))
        rows = torch.arange(grid[0], device=device) % stride != offsets[:, 0]  # (B, h): True where removed
        cols = torch.arange(grid[1], device=device) % stride != offsets[:, 1]  # (B, w)
        return (rows[:, :, None] | cols[:, None, :]).flatten(1).float()


class BlockMasking(MaskingStrategy):
    """Block-wise masking (the paper's Figure 6, middle, after BEiT): remove random rectangles until the count is met.

    Each image draws rectangles of ``min_block`` patches or more (up to the number to remove), with a
    log-uniform aspect ratio in [``min_aspect``, 1 / ``min_aspect``], at random places; the earliest
    drawn are removed first, and the rectangle that reaches the count is removed row by row, so every
    image removes exactly L - K patches. All images are drawn at once (no loop over the batch).
    """

    def __init__(self, mask_ratio: float = 0.75, *, min_block: int = 16, min_aspect: float = 0.3) -> None:
        super().__init__(mask_ratio)
        ok_block = is_int(min_block) and min_block >= 1
        require(ok_block, "min_block", repr(min_block), "a positive int (patches)")
        ok_aspect = is_number(min_aspect) and 0 < min_aspect <= 1
        require(ok_aspect, "min_aspect", repr(min_aspect), "a number in (0, 1]")
        self.min_block, self.min_aspect = min_block, float(min_aspect)

    def extra_repr(self) -> str:
        return f"mask_ratio={self.mask_ratio}, min_block={self.min_block}, min_aspect={self.min_aspect}"

    def scores(
        self, batch: int, grid: tuple[int, ...], mask_ratio: float, *, device: torch.device, generator: Any
    ) -> torch.Tensor:
        _require_image_grid(grid, self)
        height, width = grid
        length = height * width
        require(self.min_block <= length, "min_block", self.min_block, f"at most the {height}x{width} patch grid")
        to_remove = length - self.kept_count(length, mask_ratio)
        # Enough draws that the union almost surely reaches the count; any shortfall is taken row by row.
        draws = max(1, math.ceil(4 * to_remove / self.min_block))
        area, log_aspect, top, left = torch.rand(4, draws, batch, 1, **_draw_options(device, generator))
        area = self.min_block + area * max(to_remove - self.min_block, 0)
        aspect = torch.exp(math.log(self.min_aspect) * (1 - 2 * log_aspect))
        block_h = (area * aspect).sqrt().round().clamp(1, height)
        block_w = (area / aspect).sqrt().round().clamp(1, width)
        top = (top * (height - block_h + 1)).floor()
        left = (left * (width - block_w + 1)).floor()
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        in_rows = (rows >= top) & (rows < top + block_h)  # (draws, B, h)
        in_cols = (cols >= left) & (cols < left + block_w)  # (draws, B, w)
        covered = (in_rows[..., :, None] & in_cols[..., None, :]).flatten(2)  # (draws, B, L)
        first = torch.where(covered.any(0), covered.int().argmax(0), draws)  # the first draw covering each patch
        # Removed first: earliest draw, then row-major inside it; the kept are the highest.
        return -(first * length + torch.arange(length, device=device)).float()


def _order_from_mask(mask: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A shuffle that puts the kept patches first, in image order, and the number kept.

    ``mask`` (B, L): bool, or floating with 0 / 1 values as models return it (``MAEOutput.mask``); 1 = removed.
    """
    _check_per_patch(mask, "mask", tokens, _MASK_DTYPES, _is_mask_dtype)
    batch, length = mask.shape
    require(batch > 0, "mask", describe(mask), "a mask of at least one row (an empty batch removes no set number)")
    removed = mask.bool()
    counts = removed.sum(dim=1)
    not_binary = ((mask != 0) & (mask != 1)).any()  # never for a bool mask
    # A data-dependent length: one sync, for user masks only, that carries the checks too.
    fewest, most, bad = torch.stack([counts.min(), counts.max(), not_binary.long()]).tolist()
    require(not bad, "mask", f"a {mask.dtype} mask with values other than 0 and 1", _MASK_DTYPES)
    if fewest != most:
        fail("mask", f"rows removing {fewest} to {most} patches", "the same number of removed patches in every row")
    len_keep = length - int(most)
    require(len_keep >= 1, "mask", f"a mask removing all {length} patches", "a mask that keeps at least one patch")
    return torch.argsort(removed.to(torch.uint8), dim=1, stable=True), len_keep


def _draw_options(device: torch.device, generator: torch.Generator | None) -> dict[str, Any]:
    """The keywords of a random draw: ``generator`` only where one is given, as torch.export traces symbolic sizes
    through ``torch.rand(...)`` but not through its ``generator=`` overload, even with None."""
    return {"device": device} if generator is None else {"device": device, "generator": generator}


def _grid_of(length: int, grid: tuple[int, ...] | None) -> tuple[int, ...]:
    """The (h, w) patch grid (or (T', h, w) tubelet grid) of L tokens: ``grid`` checked against L; else the
    square one, or one row."""
    if grid is None:
        side = square_side(length)
        return (1, length) if side is None else (side, side)
    grid = tuple(grid)
    axes = " * ".join("Thw"[-len(grid) :]) if len(grid) in (2, 3) else "h * w"
    require(len(grid) in (2, 3) and math.prod(grid) == length, "grid", grid, f"a grid of {axes} = L = {length} patches")
    return grid


_MASK_DTYPES = "dtype torch.bool (True = removed) or a floating dtype holding 0 / 1 (1 = removed)"


def _is_mask_dtype(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.bool or tensor.is_floating_point()


def _time_and_space(length: int, grid: tuple[int, ...] | None) -> tuple[int, int]:
    """(T', h*w) of a (T', h, w) grid; an image grid (h, w), or none, is one time slot of L patches."""
    return (grid[0], length // grid[0]) if grid is not None and len(grid) == 3 else (1, length)


def _require_image_grid(grid: tuple[int, ...], strategy: MaskingStrategy) -> None:
    """Raise unless ``grid`` is an image's (h, w): ``strategy`` draws 2-D shapes."""
    expected = f"an image's (h, w) grid: {type(strategy).__name__} is 2-D (clips: RandomMasking or TubeMasking)"
    require(len(grid) == 2, "grid", grid, expected)


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
