"""Shared benchmark helpers: interleaved timing with medians and spread, a record of the machine, markdown tables."""

from __future__ import annotations

import gc
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from masked_autoencoder.precision import autocast_dtype


def _nothing() -> None:
    pass


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, object]:
    """The CPU, its vector capability (AVX2 / AVX512 / AMX), threads, versions, GPU: recorded with every result."""
    return {
        "cpu": _cpu_model(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "amx": torch.cpu._is_amx_tile_supported(),
        "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
        "cpu_bf16_native": autocast_dtype("cpu") is torch.bfloat16,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _stats(times: Sequence[float], first: float) -> dict[str, object]:
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "repeats": len(times),
        "first": first,
        "times": list(times),  # in round order: what paired_ratio compares
    }


def _time_call(
    name: str, run: Callable[[], object], sync: Callable[[], None], times: list[float], errors: dict[str, str] | None
) -> None:
    """Append the duration of one call to ``times``, or record its error (re-raised without ``errors``)."""
    sync()
    start = time.perf_counter()
    try:
        run()
        sync()
    except Exception as error:
        if errors is None:
            raise
        errors[name] = f"{type(error).__name__}: {error}"[:500]
        return
    times.append(time.perf_counter() - start)


def interleaved(
    cases: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = _nothing,
    errors: dict[str, str] | None = None,
) -> dict[str, dict[str, object]]:
    """Time each case ``repeats`` times, round-robin (A B, B A, A B ...), after ``warmup`` untimed rounds.

    Returns per case the median, min and max in seconds of the timed rounds, their count,
    ``times`` (each timed round's, in order) and ``first``: the very first call (with any
    compilation). Garbage is collected between rounds, never during a call. ``sync`` runs before
    and after each call (``torch.cuda.synchronize`` on a GPU). With ``errors``, a case that raises
    is dropped and its error recorded there (a model that cannot compile); without, the error
    propagates.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    collecting = gc.isenabled()
    gc.disable()  # no collection pause inside a timed call: one collection between rounds instead
    try:
        for round_number in range(warmup + repeats):
            gc.collect()
            # Every other round reversed: no case always runs first, in the caches the collection just evicted.
            order = list(cases.items()) if round_number % 2 == 0 else list(reversed(cases.items()))
            for name, run in order:
                if errors is None or name not in errors:
                    _time_call(name, run, sync, times[name], errors)
    finally:
        if collecting:
            gc.enable()
    failed = errors or {}
    return {name: _stats(ts[warmup:], ts[0]) for name, ts in times.items() if name not in failed}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table from a header and rows of cells (formatted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def records_table(records: Sequence[dict[str, object]]) -> str:
    """A markdown table of records: one dict per row, its keys the header (in order of appearance), blanks for none."""
    header = list(dict.fromkeys(key for record in records for key in record))
    return markdown_table(header, [[record.get(key, "") for key in header] for record in records])


def timed(result: dict[str, float]) -> str:
    """``median (min - max)`` of a timing result, in seconds."""
    return f"{result['median']:.3f} ({spread(result)})"


def spread(result: dict[str, float]) -> str:
    """``min - max`` of a timing result, in seconds."""
    return f"{result['min']:.3f} - {result['max']:.3f}"


def ratio(result: dict[str, float] | None, baseline: dict[str, float] | None) -> str:
    """``result / baseline`` of the medians as ``1.23x``, or ``n/a`` where either is missing."""
    if result is None or baseline is None:
        return "n/a"
    return f"{result['median'] / baseline['median']:.2f}x"


def paired_ratio(result: dict[str, object] | None, baseline: dict[str, object] | None) -> str:
    """The median over rounds of ``result / baseline`` within each round, as ``1.23x``; ``n/a`` where not paired.

    Each round runs every case back to back, so a round's ratio cancels a machine's slow drift
    (frequency, neighbours on a shared host) that moves both medians apart from run to run.
    """
    times, reference = (result or {}).get("times"), (baseline or {}).get("times")
    if not times or not reference or len(times) != len(reference):
        return "n/a"
    return f"{statistics.median(a / b for a, b in zip(times, reference, strict=True)):.2f}x"


def table(results: dict[str, dict[str, object]], baseline: str, first: bool = False) -> str:
    """A markdown table of medians, spreads and ratios to ``baseline`` (n/a where the baseline has no result).

    Two ratios: of the medians, and the median of the rounds' own ratios (:func:`paired_ratio`).
    ``first`` adds the duration of each case's first call (which includes any compilation).
    """
    header = ["case", "median (s)", "min - max (s)", f"/ {baseline}", f"paired / {baseline}"]
    header += ["first call (s)"] if first else []
    rows = []
    for name, r in results.items():
        reference = results.get(baseline)
        row = [name, f"{r['median']:.3f}", spread(r), ratio(r, reference), paired_ratio(r, reference)]
        rows.append(row + ([f"{r['first']:.1f}"] if first else []))
    return markdown_table(header, rows)
