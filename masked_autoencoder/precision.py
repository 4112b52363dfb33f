"""Which reduced precision the hardware runs fast: bf16 where it is native, fp32 where it would crawl."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""The CPU features that run bf16 matmuls natively, as Linux names them among a CPU's flags."""
CPUINFO = Path("/proc/cpuinfo")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype worth using on a device, or None for plain fp32.

    CUDA: bf16 where supported, else fp16 (use a GradScaler). CPU: bf16 only with AMX-BF16 or
    AVX512-BF16; on other CPUs (e.g. AVX2-only) a bf16 or fp16 matmul runs about 80x slower than
    fp32 (measured: 0.8 vs 63 GFLOP/s at 1024x1024), so fp32 it is.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU runs bf16 natively (AMX-BF16 or AVX512-BF16); False where Linux does not say."""
    # Asked of the OS: torch.cpu.get_capabilities() is public only after torch 2.9, our floor; before, only private.
    try:
        cpuinfo = CPUINFO.read_text(encoding="utf-8")
    except OSError:  # not Linux: conservatively no, as fp32 is always correct
        return False
    return lists_native_bf16(cpuinfo)


def lists_native_bf16(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text names AMX-BF16 or AVX512-BF16 in its first ``flags`` line (every core's agree)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return not NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return False
