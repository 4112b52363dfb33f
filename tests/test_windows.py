"""Windowed attention with a few global blocks (ViTDet): exact against global attention and a per-window reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from masked_autoencoder import MAEEncoder, MaskedAutoencoderViT, create_model, mae_vit_base
from masked_autoencoder.layers import Attention
from masked_autoencoder.rel_pos import axis_table
from masked_autoencoder.windows import vitdet_global_blocks, windowed_attention

CONFIG = TINY.replace(img_size=(48, 64), depth=4)  # a 6 x 8 grid of 8-pixel patches


def _qkv(grid: tuple[int, int], batch: int = 2, heads: int = 2, dim: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, 1 + grid[0] * grid[1], dim, generator=generator) for _ in range(3)]


def _reference(q, k, v, grid, window):
    """Each window's patches (a partial window at the bottom and right edges) with the class token, one by one."""
    height, width = grid
    out = F.scaled_dot_product_attention(q, k, v)  # the class token's row: global
    index = torch.arange(height * width).view(height, width) + 1  # token positions, after the class token
    for top in range(0, height, window):
        for left in range(0, width, window):
            members = torch.cat([torch.tensor([0]), index[top : top + window, left : left + window].flatten()])
            rows = members[1:]
            out[:, :, rows] = F.scaled_dot_product_attention(q[:, :, rows], k[:, :, members], v[:, :, members])
    return out


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_windowed_attention_equals_attention_window_by_window_and_padding_never_leaks(window):
    grid = (6, 8)  # 3, 4 and 5 do not divide it: padded at the bottom and right
    q, k, v = _qkv(grid)
    torch.testing.assert_close(windowed_attention(q, k, v, grid, window), _reference(q, k, v, grid, window))


@pytest.mark.parametrize("window", [8, 9, 20])
def test_a_window_as_large_as_the_grid_is_global_attention(window):
    grid = (6, 8)
    q, k, v = _qkv(grid)
    torch.testing.assert_close(windowed_attention(q, k, v, grid, window), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("window", [8, 20])
def test_an_encoder_with_windows_as_large_as_the_grid_equals_the_global_one_class_token_included(window):
    torch.manual_seed(0)
    plain = MAEEncoder(CONFIG).eval()
    windowed = MAEEncoder(CONFIG, window_size=window, global_blocks=[]).eval()
    windowed.load_state_dict(plain.state_dict())
    imgs = torch.randn(2, 3, 48, 64)
    torch.testing.assert_close(windowed(imgs), plain(imgs), rtol=0, atol=1e-5)


def test_small_windows_change_the_output_and_blocks_keep_whole_sequences_for_hooks():
    torch.manual_seed(0)
    plain = MAEEncoder(CONFIG).eval()
    windowed = MAEEncoder(CONFIG, window_size=2, global_blocks=[3]).eval()
    windowed.load_state_dict(plain.state_dict())
    seen = []
    windowed.blocks[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    imgs = torch.randn(2, 3, 48, 64)
    maps = windowed.forward_intermediates(imgs, indices=[0, 3], intermediates_only=True)
    assert seen == [(2, 1 + 48, 32)] and [m.shape for m in maps] == [(2, 32, 6, 8)] * 2
    assert not torch.allclose(windowed(imgs), plain(imgs), atol=1e-3)
    assert [block.attn.window_size for block in windowed.blocks] == [2, 2, 2, None]


def test_vitdet_global_blocks_by_size():
    assert vitdet_global_blocks(12) == (2, 5, 8, 11)
    assert vitdet_global_blocks(24) == (5, 11, 17, 23)
    assert vitdet_global_blocks(32) == (7, 15, 23, 31)
    with torch.device("meta"):
        encoder = mae_vit_base(encoder_only=True, window_size=14)
    assert encoder.global_blocks == (2, 5, 8, 11)
    assert [block.attn.window_size for block in encoder.blocks] == [14, 14, None] * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_size": 0}, r"window_size must be None \(global attention\) or a positive int .*, got 0"),
        ({"window_size": -2}, "window_size must be None .*, got -2"),
        ({"window_size": 2.0}, "window_size must be None .*, got 2.0"),
        ({"window_size": True}, "window_size must be None .*, got True"),
        ({"window_size": 4, "global_blocks": [4]}, r"global_blocks must be block indices in \[0, 3\], got \[4\]"),
        ({"window_size": 4, "global_blocks": [-1]}, r"global_blocks must be block indices in \[0, 3\], got \[-1\]"),
        ({"global_blocks": [1]}, r"global_blocks must be None without window_size, got \[1\]"),
    ],
)
def test_bad_windowing_options_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MAEEncoder(CONFIG, **kwargs)


def test_masked_pre_training_needs_global_attention():
    encoder = MAEEncoder(CONFIG, window_size=4)
    with pytest.raises(
        ValueError, match="window_size must be None for masked pre-training: the kept patches are no grid"
    ):
        encoder.forward_encoder(torch.randn(1, 3, 48, 64))


def test_the_windowing_is_saved_and_mae_weights_load_into_a_windowed_encoder(tmp_path, caplog):
    torch.manual_seed(0)
    mae = MaskedAutoencoderViT(CONFIG)
    with caplog.at_level("INFO", logger="masked_autoencoder"):
        encoder = MAEEncoder.from_pretrained(mae.save_pretrained(tmp_path / "mae"), window_size=4, global_blocks=[1])
    assert "freshly initialised" not in caplog.text  # windows add no parameter
    reloaded = MAEEncoder.from_pretrained(encoder.save_pretrained(tmp_path / "encoder"))
    assert (reloaded.window_size, reloaded.global_blocks) == (4, (1,))
    imgs = torch.randn(1, 3, 48, 64)
    torch.testing.assert_close(reloaded(imgs), encoder(imgs), rtol=0, atol=0)
    factory = create_model("mae_vit_tiny", encoder_only=True, depth=4, window_size=4)
    assert factory.global_blocks == (0, 1, 2, 3)


# --- decomposed relative position biases -------------------------------------------------------------------------


def _with_tables(model: MAEEncoder, seed: int = 1) -> MAEEncoder:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "rel_pos" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def _biased_reference(q, k, v, grid, rel_h, rel_w, made_for):
    """Global attention with ViTDet's decomposed bias written out: logits + q.R_h[qi - ki] + q.R_w[qj - kj],
    for tables made for a ``made_for`` (S_h, S_w) window (offset S - 1); the class token takes no bias."""
    height, width = grid
    logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    rows, cols = torch.arange(height * width) // width, torch.arange(height * width) % width
    table_h = rel_h[rows[:, None] - rows[None, :] + made_for[0] - 1]  # (L, L, d)
    table_w = rel_w[cols[:, None] - cols[None, :] + made_for[1] - 1]
    patches = q[:, :, 1:]
    bias = torch.einsum("bnqd,qkd->bnqk", patches, table_h) + torch.einsum("bnqd,qkd->bnqk", patches, table_w)
    logits[:, :, 1:, 1:] += bias
    return logits.softmax(-1) @ v


@pytest.mark.parametrize(("window", "made_for"), [(None, (6, 8)), (8, (8, 8)), (12, (12, 12))])
def test_relative_position_biases_are_vitdet_s_decomposed_bias(window, made_for):
    """A global block with tables for its grid, and windows that cover the grid (padded) with tables for the window."""
    grid, dim, heads = (6, 8), 8, 2
    attention = Attention(dim, heads, window, made_for)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for table in (attention.rel_pos_h, attention.rel_pos_w):
            table.copy_(torch.randn(table.shape, generator=generator))
    x = torch.randn(2, 1 + 48, dim, generator=generator)
    q, k, v = attention.qkv(x).view(2, 49, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    expected = _biased_reference(q, k, v, grid, attention.rel_pos_h, attention.rel_pos_w, made_for)
    expected = attention.proj(expected.transpose(1, 2).reshape(2, 49, dim))
    torch.testing.assert_close(attention(x, grid=grid), expected)


def test_zero_tables_change_nothing_and_mae_weights_report_exactly_the_tables_as_new(tmp_path, caplog):
    torch.manual_seed(0)
    mae = MaskedAutoencoderViT(CONFIG)
    folder = mae.save_pretrained(tmp_path / "mae")
    with caplog.at_level("INFO", logger="masked_autoencoder"):
        biased = MAEEncoder.from_pretrained(folder, window_size=4, global_blocks=[3], rel_pos=True)
    assert (
        "freshly initialised by design: [blocks.N.attn.rel_pos_h (4 tensors), blocks.N.attn.rel_pos_w (4 tensors)]"
        in caplog.text
    )
    assert "strict=False" not in caplog.text
    plain = MAEEncoder.from_pretrained(folder, window_size=4, global_blocks=[3])
    imgs = torch.randn(1, 3, 48, 64)
    torch.testing.assert_close(biased(imgs), plain(imgs), rtol=0, atol=1e-6)  # tables start at zero
    _with_tables(biased)
    assert not torch.allclose(biased(imgs), plain(imgs), atol=1e-3)
    reloaded = MAEEncoder.from_pretrained(biased.save_pretrained(tmp_path / "biased"))
    assert reloaded.rel_pos and reloaded.blocks[0].attn.rel_pos_h.shape == (7, 8)  # a 4-patch window: 2 * 4 - 1
    assert reloaded.blocks[3].attn.rel_pos_h.shape == (11, 8)  # the global block: the 6 x 8 grid
    torch.testing.assert_close(reloaded(imgs), biased(imgs), rtol=0, atol=0)
    with pytest.raises(ValueError, match="rel_pos must be False for masked pre-training"):
        MAEEncoder(CONFIG, rel_pos=True).forward_encoder(imgs)
    with pytest.raises(ValueError, match="rel_pos must be a bool, got 1"):
        MAEEncoder(CONFIG, rel_pos=1)


def test_tables_are_resized_linearly_for_another_grid():
    table = torch.randn(11, 4)
    assert axis_table(table, 6).shape == (6, 6, 4) and axis_table(table, 9).shape == (9, 9, 4)
    torch.testing.assert_close(axis_table(table, 6)[2, 0], table[2 - 0 + 5])
    encoder = _with_tables(MAEEncoder(CONFIG, rel_pos=True))
    assert encoder(torch.randn(1, 3, 64, 96)).shape == (1, 1 + 96, 32)  # an 8 x 12 grid from 6 x 8 tables
