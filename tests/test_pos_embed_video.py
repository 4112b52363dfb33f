"""The space-time position tables: VideoMAE's flattened 1-D table and our separable (time | space) table."""

import math

import pytest
import torch

from masked_autoencoder.pos_embed import sincos_pos_embed_2d, sincos_pos_embed_3d, sincos_pos_embed_flat


def test_the_flat_table_is_the_transformers_interleaved_sin_cos_of_the_token_index():
    dim, length = 8, 5
    table = sincos_pos_embed_flat(dim, length, dtype=torch.float64)
    for n in range(length):
        for j in range(dim):
            angle = n / 10000 ** (2 * (j // 2) / dim)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[n, j].item() == pytest.approx(expected, abs=1e-12)


def test_the_space_time_table_holds_the_time_slot_then_the_official_2d_table():
    dim, grid = 32, (3, 2, 4)
    table = sincos_pos_embed_3d(dim, grid, dtype=torch.float64).reshape(*grid, dim)
    space = sincos_pos_embed_2d(24, grid[1:], dtype=torch.float64).reshape(*grid[1:], 24)
    for t in range(grid[0]):
        torch.testing.assert_close(table[t, ..., 8:], space, rtol=0, atol=0)  # the same spatial code every slot
        omega = 1.0 / 10000 ** (torch.arange(4, dtype=torch.float64) / 4)
        expected = torch.cat([torch.sin(t * omega), torch.cos(t * omega)])
        torch.testing.assert_close(table[t, 0, 0, :8], expected)
        assert torch.equal(table[t, ..., :8], table[t, :1, :1, :8].expand(grid[1], grid[2], 8))


def test_tables_for_other_grids_are_computed_exactly_not_interpolated():
    small = sincos_pos_embed_3d(16, (2, 2, 2)).reshape(2, 2, 2, 16)
    large = sincos_pos_embed_3d(16, (4, 3, 3)).reshape(4, 3, 3, 16)
    torch.testing.assert_close(large[:2, :2, :2], small, rtol=0, atol=0)  # the same slots keep their codes
    torch.testing.assert_close(sincos_pos_embed_flat(8, 12)[:6], sincos_pos_embed_flat(8, 6), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sincos_pos_embed_3d(24, (1, 2, 2)), "dim must be a positive multiple of 16, got 24"),
        (lambda: sincos_pos_embed_flat(7, 3), "dim must be a positive even int, got 7"),
    ],
)
def test_widths_the_tables_cannot_split_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
