"""Tiny configurations shared by the tests: a few thousand parameters, milliseconds per step."""

from __future__ import annotations

import os

# huggingface_hub reads this once, when first imported: set it before anything imports it. The tests never download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket
from collections.abc import Iterator

import pytest
import torch

from masked_autoencoder import MAEConfig, MaskedAutoencoderViT


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail the test on any real socket connection, even one the code under test catches and recovers from.

    Yields the addresses tried, so that a test of this guard can check and clear them.
    """
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"the tests make no network connections: tried {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    if attempts:
        pytest.fail(f"the test tried to open network connections: {attempts}")


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
