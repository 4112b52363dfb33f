import torch

from masked_autoencoder.precision import autocast_dtype


def test_cpu_uses_bf16_only_with_native_support(monkeypatch):
    for amx, avx512_bf16, expected in [
        (False, False, None),
        (True, False, torch.bfloat16),
        (False, True, torch.bfloat16),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert autocast_dtype("cpu") is expected


def test_cuda_prefers_bf16_then_fp16(monkeypatch):
    for supported, expected in [(True, torch.bfloat16), (False, torch.float16)]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert autocast_dtype(torch.device("cuda", 0)) is expected


def test_other_devices_use_fp32():
    assert autocast_dtype("meta") is None
