import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import BlockMasking, GridMasking, MaskingStrategy, RandomMasking
from masked_autoencoder.masking import kept_slots


def _official_random_masking(x, mask_ratio, noise):
    """The official algorithm, step by step (repeat-gather, ones-then-unshuffle mask)."""
    n, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, dim))
    mask = torch.ones([n, length])
    mask[:, :len_keep] = 0
    return kept, torch.gather(mask, dim=1, index=ids_restore), ids_restore


@pytest.mark.parametrize("mask_ratio", [0.0, 0.5, 0.75, 0.9])
def test_noise_reproduces_the_official_masking_exactly(mask_ratio):
    tokens, noise = torch.randn(3, 49, 8), torch.rand(3, 49)
    out = RandomMasking(mask_ratio)(tokens, noise=noise)
    kept, mask, ids_restore = _official_random_masking(tokens, mask_ratio, noise)
    assert torch.equal(out.kept, kept)
    assert torch.equal(out.mask, mask)
    assert torch.equal(out.ids_restore, ids_restore)


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(1, 64), mask_ratio=st.floats(0.0, 0.99), seed=st.integers(0, 99))
def test_masking_invariants(batch, length, mask_ratio, seed):
    tokens = torch.randn(batch, length, 3)
    keep = int(length * (1 - mask_ratio))
    if keep == 0:  # the encoder would see nothing: refused, naming the ratio
        with pytest.raises(ValueError, match=f"mask_ratio must be a ratio that keeps at least one of the {length}"):
            RandomMasking(mask_ratio)(tokens)
        return
    out = RandomMasking(mask_ratio)(tokens, generator=torch.Generator().manual_seed(seed))
    assert out.kept.shape == (batch, keep, 3)
    assert out.ids_keep.shape == (batch, keep)
    assert torch.equal(out.mask.sum(dim=1), torch.full((batch,), float(length - keep)))
    # ids_restore undoes the shuffle: the kept ids sit at restored positions < K.
    assert torch.equal(torch.gather(out.ids_restore, 1, out.ids_keep), torch.arange(keep).expand(batch, -1))
    assert torch.equal(out.ids_restore.sort(dim=1).values, torch.arange(length).expand(batch, -1))
    assert torch.equal(out.kept, tokens[torch.arange(batch)[:, None], out.ids_keep])
    assert not out.mask.gather(1, out.ids_keep).any()


def test_generator_makes_masks_reproducible_without_touching_global_rng():
    tokens = torch.randn(2, 16, 4)
    masking = RandomMasking()
    state = torch.get_rng_state()
    first = masking(tokens, generator=torch.Generator().manual_seed(7))
    second = masking(tokens, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.ids_restore, second.ids_restore)
    assert not torch.equal(first.ids_restore, masking(tokens, generator=torch.Generator().manual_seed(8)).ids_restore)


def test_mask_ratio_argument_overrides_the_default():
    out = RandomMasking(0.75)(torch.randn(1, 16, 2), mask_ratio=0.5)
    assert out.kept.shape[1] == 8


def test_caller_mask_keeps_unmasked_patches_in_image_order():
    tokens = torch.randn(2, 6, 4)
    mask = torch.tensor([[True, False, True, False, False, True], [False, True, True, True, False, False]])
    out = RandomMasking()(tokens, mask=mask)
    assert torch.equal(out.ids_keep, torch.tensor([[1, 3, 4], [0, 4, 5]]))
    assert torch.equal(out.kept, tokens[torch.arange(2)[:, None], out.ids_keep])
    assert torch.equal(out.mask, mask.float())
    assert torch.equal(torch.gather(out.ids_restore, 1, out.ids_keep), torch.arange(3).expand(2, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_a_float_mask_of_zeros_and_ones_means_what_the_boolean_mask_means(dtype):
    tokens = torch.randn(3, 16, 4)
    mask = torch.rand(3, 16, generator=torch.Generator().manual_seed(0)).argsort(dim=1) < 12
    from_bool = RandomMasking()(tokens, mask=mask)
    from_float = RandomMasking()(tokens, mask=mask.to(dtype))
    for got, expected in zip(from_float, from_bool, strict=True):
        assert torch.equal(got, expected)


def test_a_models_output_mask_is_accepted_back_as_its_mask(tiny_model, images):
    first = tiny_model(images)
    again = tiny_model(images, mask=first.mask)
    assert torch.equal(again.mask, first.mask)
    assert torch.equal(again.pred, tiny_model(images, mask=first.mask.bool()).pred)


def test_mask_dtype_follows_the_tokens():
    assert RandomMasking()(torch.randn(1, 8, 2, dtype=torch.float64)).mask.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\), got 1.0"),
        ({"noise": torch.rand(2, 15)}, r"noise must be a \(2, 16\) tensor of a floating-point dtype on cpu"),
        (
            {"noise": torch.randint(0, 9, (2, 16))},
            r"noise must be .*, got a tensor of shape \(2, 16\), dtype torch.int64",
        ),
        ({"noise": torch.rand(2, 16, device="meta")}, "noise must be .* on cpu, got .* on meta"),
        ({"noise": [0.1] * 16}, "noise must be .*, got a list"),
        ({"mask": torch.ones(2, 16, dtype=torch.int64)}, r"mask must be a \(2, 16\) tensor of dtype torch.bool"),
        ({"mask": torch.ones(2, 16)}, "mask must be a mask that keeps at least one patch, got a mask removing all 16"),
        (
            {"mask": torch.full((2, 16), 0.5)},
            r"mask must be dtype torch.bool \(True = removed\) or a floating dtype holding 0 / 1 \(1 = removed\), "
            "got a torch.float32 mask with values other than 0 and 1",
        ),
        ({"mask": torch.full((2, 16), float("nan"))}, "got a torch.float32 mask with values other than 0 and 1"),
        ({"mask": torch.ones(2, 8, dtype=torch.bool)}, r"mask must be a \(2, 16\) tensor"),
        (
            {"mask": torch.arange(32).reshape(2, 16) < 9},
            r"mask must be the same number of removed patches in every row",
        ),
        ({"mask": torch.ones(2, 16, dtype=torch.bool), "noise": torch.rand(2, 16)}, "noise must be None when a mask"),
        ({"mask": torch.ones(2, 16, dtype=torch.bool), "mask_ratio": 0.5}, "mask_ratio must be None when a mask"),
        ({"noise": torch.rand(2, 16), "generator": torch.Generator()}, "generator must be None when noise is given"),
    ],
)
def test_bad_masking_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomMasking()(torch.randn(2, 16, 4), **kwargs)


def test_bad_tokens_and_ratio_raise_value_error():
    with pytest.raises(ValueError, match=r"tokens must be \(B, L, D\), got a tensor of shape \(16, 4\)"):
        RandomMasking()(torch.randn(16, 4))
    with pytest.raises(ValueError, match=r"mask_ratio must be a number in \[0, 1\), got 1.5"):
        RandomMasking(1.5)


# --- strategies: block-wise and grid-wise (the paper's Table 1(f) and Figure 6), and the shared interface ---------

STRATEGIES = {
    "random": lambda: RandomMasking(0.75),
    "block_75": lambda: BlockMasking(0.75),
    "block_50": lambda: BlockMasking(0.5),
    "grid": lambda: GridMasking(),
}
GRIDS = [(14, 14), (8, 12), (6, 4)]


def _removed_maps(strategy: MaskingStrategy, grid: tuple[int, int], batch: int = 8, seed: int = 0) -> torch.Tensor:
    tokens = torch.randn(batch, grid[0] * grid[1], 4)
    out = strategy(tokens, grid=grid, generator=torch.Generator().manual_seed(seed))
    return out.mask.bool().reshape(batch, *grid)


def _components(removed: torch.Tensor) -> int:
    """Connected groups of removed patches (4-neighbourhood) in one (h, w) map, by flood fill."""
    height, width = removed.shape
    seen, count = set(), 0
    for start in zip(*torch.nonzero(removed, as_tuple=True), strict=True):
        start = (int(start[0]), int(start[1]))
        if start in seen:
            continue
        count, stack = count + 1, [start]
        while stack:
            row, col = stack.pop()
            if (row, col) in seen or not (0 <= row < height and 0 <= col < width) or not removed[row, col]:
                continue
            seen.add((row, col))
            stack += [(row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)]
    return count


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_keeps_exactly_k_patches_in_every_image(name, grid):
    strategy = STRATEGIES[name]()
    length = grid[0] * grid[1]
    tokens = torch.randn(8, length, 4)
    out = strategy(tokens, grid=grid, generator=torch.Generator().manual_seed(3))
    keep = int(length * (1 - strategy.mask_ratio)) if name != "grid" else length // 4
    assert out.kept.shape == (8, keep, 4)
    assert torch.equal(out.mask.sum(dim=1), torch.full((8,), float(length - keep)))
    assert torch.equal(out.kept, tokens[torch.arange(8)[:, None], out.ids_keep])
    assert not out.mask.gather(1, out.ids_keep).any()
    assert torch.equal(out.ids_restore.sort(dim=1).values, torch.arange(length).expand(8, -1))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_is_reproducible_with_a_generator_and_varies_without(name):
    strategy = STRATEGIES[name]()
    first, again = _removed_maps(strategy, (8, 12), seed=5), _removed_maps(strategy, (8, 12), seed=5)
    assert torch.equal(first, again)
    assert not torch.equal(first, _removed_maps(strategy, (8, 12), seed=6))
    assert len({tuple(image.flatten().tolist()) for image in first}) > 1  # each image draws its own


@pytest.mark.parametrize("grid", GRIDS)
def test_grid_masking_keeps_one_patch_of_every_two_by_two_square(grid):
    for image in _removed_maps(GridMasking(), grid):
        kept = (~image).nonzero()
        row, col = int(kept[0, 0]), int(kept[0, 1])
        assert row < 2 and col < 2
        expected = torch.ones(grid, dtype=torch.bool)
        expected[row::2, col::2] = False
        assert torch.equal(image, expected)


def test_grid_masking_says_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"grid must be sides that are multiples of 2, got \(7, 8\)"):
        _removed_maps(GridMasking(), (7, 8))
    with pytest.raises(ValueError, match="mask_ratio must be 0.75 for a stride-2 grid, got 0.5"):
        GridMasking()(torch.randn(2, 16, 4), mask_ratio=0.5)
    with pytest.raises(ValueError, match="stride must be an int >= 2, got 1"):
        GridMasking(1)
    assert GridMasking(3).mask_ratio == pytest.approx(8 / 9)


def test_block_masking_removes_few_large_blocks_where_random_masking_scatters():
    # The paper's Figure 6: blocks leave large holes. Count connected groups of removed patches.
    blocks = [_components(image) for image in _removed_maps(BlockMasking(0.5), (14, 14), batch=16)]
    scattered = [_components(image) for image in _removed_maps(RandomMasking(0.5), (14, 14), batch=16)]
    assert max(blocks) <= 4 < min(scattered)


def test_block_masking_removes_whole_rectangles_first():
    # One 10 x 10 square is more than the 98 patches to remove: it is cut row by row at the count.
    for image in _removed_maps(BlockMasking(0.5, min_block=100, min_aspect=1.0), (14, 14)):
        rows = image.any(dim=1).nonzero().flatten()
        cols = image.any(dim=0).nonzero().flatten()
        box = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert _components(image) == 1 and box[:-1].all()  # every row of the rectangle full but its last


def test_block_masking_says_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"min_block must be at most the 4x4 patch grid, got 17"):
        BlockMasking(min_block=17)(torch.randn(2, 16, 4))
    with pytest.raises(ValueError, match="min_block must be a positive int"):
        BlockMasking(min_block=0)
    with pytest.raises(ValueError, match=r"min_aspect must be a number in \(0, 1\]"):
        BlockMasking(min_aspect=2.0)
    with pytest.raises(ValueError, match=r"grid must be a grid of h \* w = L = 16 patches, got \(3, 4\)"):
        BlockMasking()(torch.randn(2, 16, 4), grid=(3, 4))


def test_a_strategy_of_ones_own_is_a_small_class():
    class KeepTheTopRows(MaskingStrategy):
        def scores(self, batch, grid, mask_ratio, *, device, generator):
            return torch.arange(grid[0] * grid[1], device=device, dtype=torch.float).expand(batch, -1)

    out = KeepTheTopRows(0.5)(torch.randn(2, 16, 4), grid=(4, 4))
    assert torch.equal(out.mask, torch.tensor([0.0] * 8 + [1.0] * 8).expand(2, -1))


def test_random_masking_takes_a_ratio_per_image_padded_to_the_largest():
    tokens, ratios = torch.randn(3, 16, 4), torch.tensor([0.0, 0.5, 0.75])
    out = RandomMasking()(tokens, mask_ratio=ratios, generator=torch.Generator().manual_seed(0))
    assert out.mask.sum(dim=1).tolist() == [0.0, 8.0, 12.0]
    assert out.kept.shape == (3, 16, 4) and out.ids_keep.shape == (3, 16)
    slots = kept_slots(out.mask, 16)
    assert slots.sum(dim=1).tolist() == [16, 8, 4]
    assert torch.equal(out.kept[slots], tokens[torch.arange(3)[:, None], out.ids_keep][slots])
    assert not out.kept[~slots].any()  # padding is zero, not the removed patches
    assert not out.mask.gather(1, out.ids_keep).masked_select(slots).any()


def test_a_ratio_per_image_is_refused_where_it_cannot_work():
    tokens = torch.randn(2, 16, 4)
    with pytest.raises(ValueError, match="mask_ratio must be a number: BlockMasking takes one ratio for the batch"):
        BlockMasking()(tokens, mask_ratio=torch.tensor([0.5, 0.75]))
    with pytest.raises(ValueError, match=r"mask_ratio must be a number, or a \(2,\) floating tensor on cpu"):
        RandomMasking()(tokens, mask_ratio=torch.tensor([0.5, 0.75, 0.1]))
    with pytest.raises(
        ValueError,
        match=r"mask_ratio must be ratios in \[0, 1\) that keep at least one of the \d+ patches, got \[0.5, 1.0\]",
    ):
        RandomMasking()(tokens, mask_ratio=torch.tensor([0.5, 1.0]))
