"""Tiny configurations shared by the tests: a few thousand parameters, milliseconds per step."""

from __future__ import annotations

import pytest
import torch

from masked_autoencoder import MAEConfig, MaskedAutoencoderViT

TINY = MAEConfig(
    img_size=32,
    patch_size=8,
    in_chans=3,
    embed_dim=32,
    depth=2,
    num_heads=4,
    decoder_embed_dim=16,
    decoder_depth=1,
    decoder_num_heads=2,
)


@pytest.fixture
def tiny_config() -> MAEConfig:
    return TINY


@pytest.fixture
def tiny_model() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).eval()


@pytest.fixture
def images() -> torch.Tensor:
    """(2, 3, 32, 32) random images: a 4 x 4 grid of 8 x 8 patches."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
