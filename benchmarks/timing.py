"""Shared benchmark helpers: interleaved timing with medians and spread, and a record of the machine."""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> dict[str, object]:
    """The CPU, its vector capability and the thread count: every result is recorded with them."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def interleaved(
    cases: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Time each case ``repeats`` times, round-robin (A B A B ...), after ``warmup`` untimed rounds.

    Returns per case the median, min and max in seconds, so that a noisy machine still gives a fair ratio.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + repeats):
        for name, run in cases.items():
            gc.collect()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: {"median": statistics.median(ts), "min": min(ts), "max": max(ts)} for name, ts in times.items()}


def table(results: dict[str, dict[str, float]], baseline: str) -> str:
    """A markdown table of medians, spreads and ratios to ``baseline``."""
    rows = ["| case | median (s) | min - max (s) | / " + baseline + " |", "|---|---|---|---|"]
    for name, r in results.items():
        ratio = r["median"] / results[baseline]["median"]
        rows.append(f"| {name} | {r['median']:.3f} | {r['min']:.3f} - {r['max']:.3f} | {ratio:.2f}x |")
    return "\n".join(rows)
