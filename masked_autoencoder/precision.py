"""Which reduced precision the hardware runs fast: bf16 where it is native, fp32 where it would crawl."""

from __future__ import annotations

import torch


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype worth using on a device, or None for plain fp32.

    CUDA: bf16 where supported, else fp16 (use a GradScaler). CPU: bf16 only with AMX or
    AVX512-BF16; on other CPUs (e.g. AVX2-only) a bf16 or fp16 matmul runs about 80x slower than
    fp32 (measured: 0.8 vs 63 GFLOP/s at 1024x1024), so fp32 it is.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        return torch.bfloat16
    return None
