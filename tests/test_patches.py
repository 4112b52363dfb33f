import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import patchify, unpatchify


def test_patchify_order_is_row_major_patches_with_pixels_in_p_q_c_order():
    imgs = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(imgs, (2, 3))
    assert patches.shape == (2, 4, 2 * 3 * 3)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                for p in range(2):
                    for q in range(3):
                        for c in range(3):
                            expected = imgs[b, c, i * 2 + p, j * 3 + q]
                            assert patches[b, i * 2 + j, (p * 3 + q) * 3 + c] == expected


def test_patchify_matches_the_official_reshape_and_einsum():
    imgs = torch.randn(2, 3, 32, 32)
    n, p, h = 2, 8, 4
    official = torch.einsum("nchpwq->nhwpqc", imgs.reshape(n, 3, h, p, h, p)).reshape(n, h * h, p * p * 3)
    assert torch.equal(patchify(imgs, 8), official)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    grid_h=st.integers(1, 5),
    grid_w=st.integers(1, 5),
    patch_h=st.integers(1, 6),
    patch_w=st.integers(1, 6),
)
def test_unpatchify_inverts_patchify_for_any_size_patch_and_channels(batch, channels, grid_h, grid_w, patch_h, patch_w):
    imgs = torch.randn(batch, channels, grid_h * patch_h, grid_w * patch_w)
    patch_size = patch_h if patch_h == patch_w else (patch_h, patch_w)
    patches = patchify(imgs, patch_size)
    assert patches.shape == (batch, grid_h * grid_w, patch_h * patch_w * channels)
    assert torch.equal(unpatchify(patches, patch_size, (grid_h, grid_w)), imgs)


def test_patchify_accepts_integer_images():
    imgs = torch.randint(0, 255, (1, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(unpatchify(patchify(imgs, 2), 2, 2), imgs)


def test_unpatchify_without_grid_size_infers_the_square_grid():
    imgs = torch.randn(2, 3, 24, 24)
    assert torch.equal(unpatchify(patchify(imgs, 8), 8), imgs)


def test_unpatchify_without_grid_size_needs_a_square_number_of_patches():
    patches = patchify(torch.zeros(1, 3, 16, 24), 8)  # a 2 x 3 grid: L = 6
    with pytest.raises(
        ValueError, match=r"^grid_size must be given: L = 6 patches \(dim 1\) do not form a square grid, got None$"
    ):
        unpatchify(patches, 8)
    assert unpatchify(patches, 8, (2, 3)).shape == (1, 3, 16, 24)


@pytest.mark.parametrize(
    ("imgs", "patch_size", "message"),
    [
        (torch.zeros(3, 32, 32), 8, r"imgs must be a 4-D tensor \(B, C, H, W\), got a tensor of shape \(3, 32, 32\)"),
        (torch.zeros(1, 3, 30, 32), 8, r"imgs must be .*divisible by the patch size \(8, 8\)"),
        (torch.zeros(1, 3, 32, 32), 0, "patch_size must be a positive int or a pair"),
        ([[1.0]], 8, "imgs must be a 4-D tensor .*, got a list"),
    ],
)
def test_patchify_rejects_bad_input(imgs, patch_size, message):
    with pytest.raises(ValueError, match=message):
        patchify(imgs, patch_size)


@pytest.mark.parametrize(
    ("patches", "grid_size", "message"),
    [
        (torch.zeros(1, 16, 192), (4, 5), r"patches must be L = 4\*5 patches"),
        (torch.zeros(1, 16, 190), 4, "patches must be a last dim divisible by P_h\\*P_w = 64"),
        (torch.zeros(16, 192), 4, r"patches must be a 3-D tensor"),
        (torch.zeros(1, 16, 192), (4, -4), "grid_size must be a positive int or a pair"),
    ],
)
def test_unpatchify_rejects_bad_input(patches, grid_size, message):
    with pytest.raises(ValueError, match=message):
        unpatchify(patches, 8, grid_size)
