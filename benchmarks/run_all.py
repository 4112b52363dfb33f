"""Every benchmark in one command: one results JSON, and a markdown file with every table, the machine and the command.

    python benchmarks/run_all.py --output benchmarks/results --plot docs/images/scaling.png   # the full suite
    python benchmarks/run_all.py --quick --output /tmp/bench                                  # tiny settings
    python benchmarks/run_all.py --parts step flops --output benchmarks/results

The parts, each with its defaults (or ``--quick``), in this process (bench_memory.py starts one
process per setting itself): 1 ``step`` (bench_step.py), 2 ``speedup``, 3 ``features``, 4 ``memory``,
5 ``loading``, 6 ``flops``, 7 ``scaling``. Each part writes ``<output>/<part>.json``; this writes
``<output>/results.json`` (every report, the machine, the command, each part's duration) and
``<output>/results.md``, ready for docs/performance.md. The scaling plot goes to ``--plot``
(default ``<output>/scaling.png``). A part that fails is reported and the others still run; the
exit status is then 1. Progress goes to stderr, each part's tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import bench_features
import bench_flops
import bench_loading
import bench_memory
import bench_scaling
import bench_speedup
import bench_step
from report import HelpFormatter, Report, command, machine_markdown, progress
from timing import machine

# name -> (script, title), in the order.
PARTS: dict[str, tuple[ModuleType, str]] = {
    "step": (bench_step, "Pre-training step: ours against transformers"),
    "speedup": (bench_speedup, "The paper's speed-up: mask tokens out of the encoder"),
    "features": (bench_features, "Feature extraction"),
    "memory": (bench_memory, "Peak memory of a training step"),
    "loading": (bench_loading, "Loading weights"),
    "flops": (bench_flops, "FLOPs and efficiency"),
    "scaling": (bench_scaling, "Scaling with batch, image and model size"),
}


def build_parser() -> argparse.ArgumentParser:
    parsed = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parsed.add_argument("--output", type=Path, default=Path("benchmarks/results"), help="folder for the results")
    parsed.add_argument("--quick", action="store_true", help="every part's tiny settings (the smoke test)")
    parsed.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parsed.add_argument("--plot", type=Path, help="the scaling plot (PNG); default <output>/scaling.png")
    return parsed


def part_argv(name: str, args: argparse.Namespace) -> list[str]:
    """The flags a part runs with here."""
    argv = ["--quick"] if args.quick else []
    argv += ["--output", str(args.output / f"{name}.json")]
    if name == "scaling":
        argv += ["--plot", str(args.plot or args.output / "scaling.png")]
    return argv


def results_markdown(summary: dict[str, object]) -> str:
    """Every part's tables under a heading with its command, after the machine and the suite's command."""
    parts = [
        "# Benchmark results",
        f"`{summary['command']}`",
        machine_markdown(summary["machine"]),
    ]
    for number, (name, (module, title)) in enumerate(PARTS.items(), start=1):
        if name in summary["reports"]:
            report = summary["reports"][name]
            seconds = summary["seconds"][name]
            parts += [f"## {number}. {title}", f"`{report['command']}` ({seconds:.0f} s)", module.markdown(report)]
        elif name in summary["errors"]:
            parts += [f"## {number}. {title}", f"Failed:\n```\n{summary['errors'][name]}\n```"]
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Report] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for index, name in enumerate(args.parts, start=1):
        progress(f"[{index}/{len(args.parts)}] {name} ...")
        start = time.perf_counter()
        try:
            reports[name] = PARTS[name][0].main(part_argv(name, args))
        except Exception:
            errors[name] = traceback.format_exc()
            progress(f"{name} failed:\n{errors[name]}")
        seconds[name] = time.perf_counter() - start
        progress(f"[{index}/{len(args.parts)}] {name}: {seconds[name]:.0f} s")
    summary = {
        "command": command(__file__, argv),
        "machine": machine(),
        "reports": reports,
        "errors": errors,
        "seconds": seconds,
    }
    (args.output / "results.json").write_text(json.dumps(summary, indent=2))
    (args.output / "results.md").write_text(results_markdown(summary))
    progress(f"wrote {args.output / 'results.json'} and {args.output / 'results.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
