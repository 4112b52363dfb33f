"""The benchmarks' harness: interleaved timing and paired ratios, a step's memory, the machine, the flags, the report.

Every script times its cases in one process, round-robin after warm-up, reversing the order every
other round, and compares them by the *paired* ratio: the median over rounds of each round's own
ratio, which cancels the slow drift of a shared machine that moves two medians apart. Memory is
measured one side per fresh process (:func:`in_fresh_processes`, :func:`step_memory`). Each writes
``<name>.json`` (the raw per-round times, the machine, the command) and ``<name>.md`` (its tables).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
QUICK_MODEL = {"model": "mae_vit_tiny_patch16", "img_size": 64, "batch": 2, "depth": 2, "decoder_depth": 1}
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
_MB = 2**20
# Settings a measuring process does not take: it prints its figures and writes nothing.
_PARENT_ONLY = ("quick", "output", "rounds", "side")

Times = dict[str, list[float]]
"""Per case, the seconds of each timed round, in round order."""


def _cpuinfo(field: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith(field))
    except (OSError, StopIteration):
        return ""


def machine() -> dict[str, object]:
    """What every figure depends on: the CPU and its vector units, the threads, the versions, the GPU."""
    flags = _cpuinfo("flags").split()
    return {
        "cpu": _cpuinfo("model name") or platform.processor(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": [flag for flag in _CPU_FLAGS if flag in flags],  # amx / avx512_bf16: bf16 runs natively
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work before a clock is read: nothing on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def interleaved(
    cases: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1, device: torch.device | None = None
) -> Times:
    """Time every case once per round, ``warmup`` untimed rounds first; every other round in reverse order.

    Reversing (A B, B A, ...) keeps a case from always finding its operands in the caches the case
    before it filled. Garbage is collected before each round, so that a collection seldom falls in a call.
    """
    sync = synchronizer(device or torch.device("cpu"))
    times: Times = {name: [] for name in cases}
    for number in range(warmup + rounds):
        gc.collect()
        for name in list(cases) if number % 2 == 0 else list(reversed(cases)):
            sync()
            start = time.perf_counter()
            cases[name]()
            sync()
            if number >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: Sequence[float], reference: Sequence[float]) -> float:
    """The median over rounds of ``times[i] / reference[i]``: rounds ran back to back, so drift cancels."""
    return statistics.median(a / b for a, b in zip(times, reference, strict=True))


def timing_rows(times: Times, baselines: Sequence[str]) -> list[dict[str, str]]:
    """A table row per case: median, min - max, and the paired ratio to each baseline."""
    rows = []
    for name, seconds in times.items():
        row = {
            "case": name,
            "median (s)": f"{statistics.median(seconds):.3f}",
            "min - max (s)": f"{min(seconds):.3f} - {max(seconds):.3f}",
        }
        row |= {f"paired / {base}": f"{paired_ratio(seconds, times[base]):.2f}x" for base in baselines}
        rows.append(row)
    return rows


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1)) / 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as clear_refs:
        clear_refs.write("5")  # the peak (VmHWM) := the current resident memory


def _saved_mb(step: Callable[[], object], parameters: list[torch.Tensor]) -> float:
    """Run ``step``, adding up the distinct non-parameter storages that autograd saves for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    owned = {p.untyped_storage().data_ptr() for p in parameters}
    return sum(size for pointer, size in storages.items() if pointer not in owned) / _MB


def step_memory(step: Callable[[], object], parameters: list[torch.Tensor], device: torch.device) -> dict[str, float]:
    """A warm-up ``step`` (counting what autograd saves), then a measured one; MB.

    peak: the process's peak resident memory in the measured step (on a GPU: peak allocated), reset
    through ``/proc/self/clear_refs`` (Linux); static: the memory after the warm-up (libraries,
    weights, and whatever the step keeps, such as gradients zeroed in place); step extra: peak - static;
    saved: what autograd keeps for backward (parameters excluded, each storage once), whatever the
    allocator does. Run it in a process of :func:`in_fresh_processes`, whose glibc returns freed blocks.
    """
    saved = _saved_mb(step, parameters)
    cuda = device.type == "cuda"
    static = torch.cuda.memory_allocated() / _MB if cuda else _status_mb("VmRSS")
    _reset_peak(device)
    step()
    synchronizer(device)()
    peak = torch.cuda.max_memory_allocated() / _MB if cuda else _status_mb("VmHWM")
    return {"peak": peak, "static": static, "step extra": peak - static, "saved": saved}


def _flags(args: argparse.Namespace) -> list[str]:
    """The command-line flags that give a measuring process ``args``'s settings."""
    flags = []
    for field, value in vars(args).items():
        if field in _PARENT_ONLY or value is None or value is False:
            continue
        flag = "--" + field.replace("_", "-")
        values = [] if value is True else list(value) if isinstance(value, list) else [value]
        flags += [flag, *map(str, values)]
    return flags


def _in_process(script: str, args: argparse.Namespace, side: str) -> dict[str, float]:
    # glibc returns every freed block above 64 KiB: else the measured step reuses pages the warm-up
    # kept, and the resident peak under-counts.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    command = [sys.executable, script, *_flags(args), f"--side={side}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} --side={side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def in_fresh_processes(
    script: str, args: argparse.Namespace, sides: Sequence[str], *, workers: int
) -> dict[str, dict[str, float]]:
    """Per side, the JSON that ``script --side=SIDE``, with ``args``'s settings, prints last, each in a fresh
    process, ``workers`` at a time: no heap, library or cache carried from one side to another."""
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(sides, pool.map(lambda side: _in_process(script, args, side), sides), strict=True))


def add_side_flag(parsed: argparse.ArgumentParser, sides: Sequence[str]) -> None:
    """``--side``, hidden: set by :func:`in_fresh_processes` in the measuring process."""
    parsed.add_argument("--side", choices=sides, help=argparse.SUPPRESS)


def memory_rows(memory: dict[str, dict[str, float]], reference: str) -> list[dict[str, str]]:
    """A table row per side of :func:`step_memory`'s figures (MB), then per other side its ratios to ``reference``."""
    rows = [{"side": side} | {f"{key} (MB)": f"{mb:.0f}" for key, mb in mbs.items()} for side, mbs in memory.items()]
    for side, figures in memory.items():
        if side != reference:
            ratios = {f"{key} (MB)": f"{mb / memory[reference][key]:.2f}" for key, mb in figures.items()}
            rows.append({"side": f"{side} / {reference}"} | ratios)
    return rows


def time_and_memory_tables(results: dict, reference: str) -> str:
    """The tables of a script that times its sides (``results["times"]``) and measures their memory
    (``results["memory"]``), each against ``reference``."""
    timings = markdown_table(timing_rows(results["times"], [reference]))
    return timings + "\n\n" + markdown_table(memory_rows(results["memory"], reference))


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
    """A markdown table of rows (dicts with the same keys, the header)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows])


def parser(doc: str, *, rounds: int | None, device: bool = True) -> argparse.ArgumentParser:
    """The common flags: ``--quick``, ``--output``, ``--device`` unless CPU-only, ``--rounds`` where it times rounds."""
    parsed = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--quick", action="store_true", help="a tiny model, seconds; writes only with --output")
    parsed.add_argument("--output", type=Path, default=RESULTS, help="folder for <name>.json and <name>.md")
    if device:
        parsed.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    if rounds is not None:
        parsed.add_argument("--rounds", type=int, default=rounds, help="timed rounds, after one untimed")
    return parsed


def add_model_flags(parsed: argparse.ArgumentParser, model: str, batch: int) -> None:
    """``--model``, ``--batch``, ``--img-size`` (224), ``--depth`` and ``--decoder-depth`` (the model's)."""
    parsed.add_argument("--model", default=model)
    parsed.add_argument("--batch", type=int, default=batch)
    parsed.add_argument("--img-size", type=int, default=224)
    parsed.add_argument("--depth", type=int, help="encoder blocks (default: the model's)")
    parsed.add_argument("--decoder-depth", type=int, help="decoder blocks (default: the model's)")


def model_overrides(args: argparse.Namespace) -> dict[str, int]:
    """The config fields that the model flags change."""
    given = {"img_size": args.img_size, "depth": args.depth, "decoder_depth": args.decoder_depth}
    return {field: value for field, value in given.items() if value is not None}


def add_precision_flags(parsed: argparse.ArgumentParser) -> None:
    """``--dtype`` (bf16: torch.autocast) and ``--compile`` (torch.compile every side)."""
    parsed.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast")
    parsed.add_argument("--compile", action="store_true", help="torch.compile every side (first call untimed)")


def _machine_line(info: dict[str, object]) -> str:
    gpu = f", {info['gpu']}" if info["gpu"] else ""
    flags = " ".join(info["cpu_flags"]) or "none"
    return (
        f"{info['cpu']} ({info['capability']}; {flags}), {info['threads']} threads{gpu}; "
        f"torch {info['torch']}, transformers {info['transformers']}, Python {info['python']}"
    )


def report(name: str, args: argparse.Namespace, argv: Sequence[str] | None, results: dict, tables: str) -> dict:
    """Print the tables; with ``--output``, write ``<name>.json`` (everything) and ``<name>.md`` (the tables)."""
    command = shlex.join(["python", f"benchmarks/bench_{name}.py", *(sys.argv[1:] if argv is None else argv)])
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    record = {
        "benchmark": name,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "settings": settings,
        "results": results,
    }
    text = f"`{command}`, {record['date']}, {_machine_line(record['machine'])}\n\n{tables}\n"
    print(text, flush=True)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        (args.output / f"{name}.md").write_text(text)
    return record


def run_script(
    name: str,
    parsed: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    quick: dict[str, object],
    run: Callable[[argparse.Namespace], dict],
    tables: Callable[[argparse.Namespace, dict], str],
    measure: Callable[[str, argparse.Namespace], dict] | None = None,
) -> dict | None:
    """A script's ``main``: parse, run, report. With ``--quick``, ``quick``, two rounds and no files are the
    defaults (flags given still win). With ``--side`` (a process of :func:`in_fresh_processes`): print
    ``measure(side, args)`` as JSON, and nothing else."""
    args = parsed.parse_args(argv)
    if measure is not None and args.side:
        print(json.dumps(measure(args.side, args)))
        return None
    if args.quick:
        parsed.set_defaults(output=None, **quick, **({"rounds": 2} if hasattr(args, "rounds") else {}))
        args = parsed.parse_args(argv)
    results = run(args)
    return report(name, args, argv, results, tables(args, results))
