"""resize_pos_embed: the official bicubic resize of a position table, for any grid."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import resize_pos_embed


def _table(grid_h: int, grid_w: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 1 + grid_h * grid_w, dim, generator=torch.Generator().manual_seed(seed))


def _by_hand(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """The official recipe, written out: (1, L, D) -> (1, D, h, w), bicubic, back to (1, L', D)."""
    patches = table[:, 1:].reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=new, mode="bicubic", align_corners=False)
    return torch.cat([table[:, :1], patches.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)], dim=1)


def test_same_grid_returns_the_table_itself():
    table = _table(4, 4)
    assert resize_pos_embed(table, 4) is table
    assert resize_pos_embed(table, (4, 4), (4, 4)) is table


@pytest.mark.parametrize(("old", "new"), [((4, 4), (8, 8)), ((4, 4), (2, 2)), ((4, 4), (3, 5)), ((2, 3), (4, 6))])
def test_resize_is_bicubic_interpolation_of_the_grid_with_the_class_row_unchanged(old, new):
    table = _table(*old)
    resized = resize_pos_embed(table, new, None if old[0] == old[1] else old)
    assert resized.shape == (1, 1 + new[0] * new[1], 8)
    assert torch.equal(resized[:, 0], table[:, 0])
    torch.testing.assert_close(resized, _by_hand(table, old, new), rtol=0, atol=0)


def test_a_non_square_grid_is_laid_out_row_major():
    # A table that is its own row index: interpolating keeps each row of the new grid constant along w.
    rows = torch.arange(2.0).repeat_interleave(3)[None, :, None].expand(1, 6, 4)
    table = torch.cat([torch.zeros(1, 1, 4), rows], dim=1)
    resized = resize_pos_embed(table, (4, 5), (2, 3))[0, 1:].reshape(4, 5, 4)
    assert torch.allclose(resized, resized[:, :1].expand(-1, 5, -1))
    assert resized[0, 0, 0] < resized[-1, 0, 0]


def test_half_precision_tables_keep_their_dtype():
    table = _table(4, 4)
    resized = resize_pos_embed(table.half(), (6, 6))
    assert resized.dtype == torch.float16
    torch.testing.assert_close(resized.float(), resize_pos_embed(table, (6, 6)), rtol=0, atol=5e-3)


@settings(max_examples=25, deadline=None)
@given(old=st.integers(1, 5), new_h=st.integers(1, 7), new_w=st.integers(1, 7))
def test_any_grid_gets_its_shape_and_keeps_the_class_row(old, new_h, new_w):
    table = _table(old, old, dim=4, seed=old)
    resized = resize_pos_embed(table, (new_h, new_w))
    assert resized.shape == (1, 1 + new_h * new_w, 4)
    assert torch.equal(resized[:, 0], table[:, 0])


@pytest.mark.parametrize(
    ("table", "new_grid", "old_grid", "message"),
    [
        (
            torch.zeros(17, 8),
            4,
            None,
            r"table must be a \(1, 1 \+ L, D\) position table, class row first, got a tensor",
        ),
        (torch.zeros(2, 17, 8), 4, None, r"table must be a \(1, 1 \+ L, D\) position table"),
        (torch.zeros(1, 17, 8), 0, None, "new_grid must be a positive int or a pair"),
        (torch.zeros(1, 7, 8), 4, None, "old_grid must be given: 6 patches do not form a square grid, got None"),
        (torch.zeros(1, 7, 8), 4, (2, 2), r"old_grid must be a grid of h \* w = 6 patches, got \(2, 2\)"),
    ],
)
def test_bad_arguments_raise_value_error(table, new_grid, old_grid, message):
    with pytest.raises(ValueError, match=message):
        resize_pos_embed(table, new_grid, old_grid)
