import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import sincos_pos_embed_2d
from masked_autoencoder.pos_embed import position_table_for_grid


def _direct_formula(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Element by element: [sin(j w_k), cos(j w_k), sin(i w_k), cos(i w_k)] for patch (i, j)."""
    quarter = dim // 4
    rows = []
    for i in range(grid_h):
        for j in range(grid_w):
            omegas = [10000 ** (-k / quarter) for k in range(quarter)]
            row = [math.sin(j * w) for w in omegas] + [math.cos(j * w) for w in omegas]
            row += [math.sin(i * w) for w in omegas] + [math.cos(i * w) for w in omegas]
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(quarter=st.integers(1, 8), grid_h=st.integers(1, 6), grid_w=st.integers(1, 6))
def test_sincos_equals_the_direct_formula_on_any_grid(quarter, grid_h, grid_w):
    dim = 4 * quarter
    table = sincos_pos_embed_2d(dim, (grid_h, grid_w), dtype=torch.float64)
    torch.testing.assert_close(table, _direct_formula(dim, grid_h, grid_w), rtol=0, atol=1e-12)


def _official_numpy_table(dim: int, grid: int) -> np.ndarray:
    """The official recipe: float32 coordinates from meshgrid(w, h) ("xy": w first), float64 frequencies."""
    coords = np.stack(np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)))
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    halves = [np.einsum("m,d->md", c.reshape(-1), omega) for c in coords]
    table = np.concatenate([f(a) for a in halves for f in (np.sin, np.cos)], axis=1)
    return np.concatenate([np.zeros([1, dim]), table], axis=0)


@pytest.mark.parametrize(("dim", "grid"), [(768, 14), (1024, 14), (1280, 16), (512, 14), (32, 4)])
def test_sincos_is_identical_to_the_official_table_on_square_grids(dim, grid):
    official = torch.from_numpy(_official_numpy_table(dim, grid)).float()
    ours = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, official)


def test_class_token_row_is_zero_and_comes_first():
    table = sincos_pos_embed_2d(16, (2, 3), cls_token=True)
    assert table.shape == (7, 16)
    assert torch.equal(table[0], torch.zeros(16))
    assert torch.equal(table[1:], sincos_pos_embed_2d(16, (2, 3)))


def test_stored_table_is_reused_for_its_grid_and_regenerated_for_others():
    stored = sincos_pos_embed_2d(8, (2, 2), cls_token=True)[None]
    assert position_table_for_grid(stored, (2, 2), (2, 2)) is stored
    other = position_table_for_grid(stored.double(), (2, 2), (3, 5))
    assert other.dtype == torch.float64
    assert torch.equal(other[0], sincos_pos_embed_2d(8, (3, 5), cls_token=True, dtype=torch.float64))


@pytest.mark.parametrize(
    ("dim", "grid", "message"),
    [(30, 4, "dim must be a positive multiple of 4, got 30"), (32, (4, 0), "grid_size must be a positive int")],
)
def test_sincos_rejects_bad_arguments(dim, grid, message):
    with pytest.raises(ValueError, match=message):
        sincos_pos_embed_2d(dim, grid)


def test_table_follows_torch_default_device_unless_given():
    with torch.device("meta"):
        assert sincos_pos_embed_2d(8, 2).is_meta  # a model built on meta computes nothing
        assert sincos_pos_embed_2d(8, 2, device="cpu").device.type == "cpu"
    assert sincos_pos_embed_2d(8, 2).device.type == "cpu"
