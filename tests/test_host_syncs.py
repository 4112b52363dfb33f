"""The forward pass waits for the device only where the data decides a size: never for the default model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from conftest import TINY

from masked_autoencoder import MaskedAutoencoderViT

# Every way a tensor's value reaches Python: each waits for the device (a host sync) on an accelerator.
_TO_HOST = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture
def model() -> MaskedAutoencoderViT:
    """Built before any counting starts: construction may read values (drop-path rates), the forward must not."""
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).train()


@pytest.fixture
def host_reads(model: MaskedAutoencoderViT, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record each read of a tensor's value by Python (a host sync on an accelerator), by method name."""
    reads: list[str] = []
    for name in _TO_HOST:
        original = getattr(torch.Tensor, name)

        def counted(tensor: torch.Tensor, *args: object, _name: str = name, _original: object = original) -> object:
            reads.append(_name)
            return _original(tensor, *args)  # type: ignore[operator]

        monkeypatch.setattr(torch.Tensor, name, counted)
    yield reads


def test_the_default_forward_and_backward_read_no_tensor_value(host_reads, model, images):
    out = model(images)
    out.loss.backward()
    assert host_reads == []


def test_a_ratio_per_image_reads_the_device_once_per_call(host_reads, model, images):
    model(images, mask_ratio=torch.tensor([0.5, 0.75]))
    assert host_reads == ["tolist"]


def test_a_caller_mask_reads_the_device_once_per_call(model, images, host_reads):
    mask = torch.arange(16).expand(2, -1) < 12
    model(images, mask=mask)
    assert host_reads == ["tolist"]


def test_the_counter_sees_every_kind_of_read(host_reads):
    value = torch.tensor(1)
    _ = value.item(), value.tolist(), bool(value), int(value), float(value), [0, 1][value]
    assert sorted(host_reads) == sorted(_TO_HOST)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's sync debug mode needs CUDA")
def test_the_default_forward_makes_no_cuda_sync(model, images):
    model.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(images.cuda()).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
