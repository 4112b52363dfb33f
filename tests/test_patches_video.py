"""patchify / unpatchify of clips (B, C, T, H, W) into tubelets, in VideoMAE's order."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import patchify, unpatchify


def videomae_targets(clips: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """VideoMAE's pre-training target layout, written from its description: frames (B, T, C, H, W) viewed as
    (B, T/t, t, C, H/P, P, W/P, P), tubelets (T/t, H/P, W/P) first, then (t, P, P, C) inside each."""
    frames = clips.transpose(1, 2)  # VideoMAE takes (B, T, C, H, W)
    b, t, c, h, w = frames.shape
    view = frames.reshape(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    return view.permute(0, 1, 4, 6, 2, 5, 7, 3).reshape(b, -1, tubelet * patch * patch * c)


def test_tubelets_are_listed_time_row_column_with_pixels_frame_row_column_channel():
    clips = torch.arange(1 * 2 * 4 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 4, 6)
    tubelets = patchify(clips, (2, 2, 3))
    assert tubelets.shape == (1, 2 * 2 * 2, 2 * 2 * 3 * 2)
    for ti in range(2):
        for hi in range(2):
            for wi in range(2):
                for u in range(2):
                    for p in range(2):
                        for q in range(3):
                            for c in range(2):
                                expected = clips[0, c, ti * 2 + u, hi * 2 + p, wi * 3 + q]
                                got = tubelets[0, (ti * 2 + hi) * 2 + wi, ((u * 2 + p) * 3 + q) * 2 + c]
                                assert got == expected


def test_tubelet_order_is_videomaes_target_order():
    clips = torch.randn(2, 3, 4, 8, 8)
    assert torch.equal(patchify(clips, 4, tubelet_size=2), videomae_targets(clips, 2, 4))
    assert torch.equal(patchify(clips, (2, 4, 4)), patchify(clips, 4, tubelet_size=2))


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 3),
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    tubelet=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
)
def test_unpatchify_inverts_patchify_for_clips(channels, grid, tubelet):
    clips = torch.randn(2, channels, *(g * t for g, t in zip(grid, tubelet, strict=True)))
    tubelets = patchify(clips, tubelet)
    assert tubelets.shape == (2, grid[0] * grid[1] * grid[2], tubelet[0] * tubelet[1] * tubelet[2] * channels)
    assert torch.equal(unpatchify(tubelets, tubelet, grid), clips)
    assert torch.equal(unpatchify(tubelets, tubelet[1:], grid, tubelet_size=tubelet[0]), clips)


def test_one_frame_tubelets_of_a_clip_are_each_frames_patches():
    clips = torch.randn(1, 3, 2, 8, 8)
    per_frame = torch.cat([patchify(clips[:, :, index], 4) for index in range(2)], dim=1)
    assert torch.equal(patchify(clips, 4), per_frame)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: patchify(torch.zeros(1, 3, 5, 8, 8), 4, tubelet_size=2), r"imgs must be .*divisible by the tubelet"),
        (lambda: patchify(torch.zeros(1, 3, 8, 8), 4, tubelet_size=2), r"tubelet_size must be None or 1 for images"),
        (lambda: patchify(torch.zeros(1, 3, 8, 8), (2, 4, 4)), r"patch_size must be P or \(P_h, P_w\)"),
        (lambda: patchify(torch.zeros(1, 3, 4, 8, 8), (2, 4, 4), tubelet_size=1), r"tubelet_size must be None or 2"),
        (lambda: patchify(torch.zeros(1, 3, 4, 8, 8), 4, tubelet_size=0), r"tubelet_size must be a positive int"),
        (lambda: unpatchify(torch.zeros(1, 8, 32), 4, tubelet_size=2), r"grid_size must be the \(T', H', W'\)"),
        (lambda: unpatchify(torch.zeros(1, 8, 96), 4, (2, 2, 3), tubelet_size=2), r"patches must be .*L = 2\*2\*3"),
    ],
)
def test_bad_clips_and_sizes_are_refused_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
