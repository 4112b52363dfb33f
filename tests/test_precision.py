import re
import shutil
import subprocess

import pytest
import torch

from masked_autoencoder import precision
from masked_autoencoder.precision import autocast_dtype, cpu_has_native_bf16, lists_native_bf16

# /proc/cpuinfo as Linux writes it: one block per core, each with the same flags line.
_CORE = "processor\t: {index}\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma {extra}\nbugs\t\t: spectre_v1\n"


def _cpuinfo(extra: str) -> str:
    return "\n".join(_CORE.format(index=index, extra=extra) for index in range(2))


@pytest.fixture
def cpuinfo_file(tmp_path, monkeypatch):
    """Point the detection at a file of ours; the cached answer is forgotten before and after."""
    path = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "CPUINFO", path)
    cpu_has_native_bf16.cache_clear()
    yield path
    cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("extra", "native"),
    [
        ("", False),
        ("avx512f avx512bw avx512_vnni", False),  # AVX-512 without its bf16 instructions
        ("avx512f avx512_bf16", True),
        ("amx_tile amx_bf16 amx_int8", True),
        ("avx512_bf16_extra", False),  # whole flags only
    ],
    ids=["avx2-only", "avx512-no-bf16", "avx512-bf16", "amx-bf16", "prefix-of-a-flag"],
)
def test_cpu_uses_bf16_only_where_its_flags_say_it_is_native(cpuinfo_file, extra, native):
    cpuinfo_file.write_text(_cpuinfo(extra))
    assert lists_native_bf16(_cpuinfo(extra)) is native
    assert autocast_dtype("cpu") is (torch.bfloat16 if native else None)


def test_flags_are_read_from_the_flags_line_only():
    assert not lists_native_bf16("model name\t: amx_bf16 avx512_bf16 in its name\nflags\t\t: fpu avx2\n")
    assert not lists_native_bf16("")


def test_without_cpuinfo_the_cpu_runs_fp32(cpuinfo_file):
    assert not cpuinfo_file.exists()  # e.g. macOS or Windows
    assert not cpu_has_native_bf16()
    assert autocast_dtype("cpu") is None


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="lscpu is Linux's")
def test_detection_agrees_with_lscpu_on_this_machine():
    listed = re.search(r"^Flags:\s*(.*)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout, re.M)
    if listed is None:
        pytest.skip("this lscpu prints no Flags line")
    assert cpu_has_native_bf16() is bool({"amx_bf16", "avx512_bf16"} & set(listed[1].split()))


@pytest.mark.skipif(not hasattr(torch.cpu, "get_capabilities"), reason="torch.cpu.get_capabilities: torch > 2.9")
def test_detection_agrees_with_torch_on_this_machine():
    capabilities = torch.cpu.get_capabilities()  # cpuinfo's own CPUID reading: an independent witness
    assert cpu_has_native_bf16() is bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def test_cuda_prefers_bf16_then_fp16(monkeypatch):
    for supported, expected in [(True, torch.bfloat16), (False, torch.float16)]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert autocast_dtype(torch.device("cuda", 0)) is expected


def test_other_devices_use_fp32():
    assert autocast_dtype("meta") is None
