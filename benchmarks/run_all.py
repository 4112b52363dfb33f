"""Every benchmark in one command: one results JSON, and a markdown file with every table, the machine and the command.

    python benchmarks/run_all.py --output benchmarks/results --plot docs/images/scaling.png   # the full suite
    python benchmarks/run_all.py --quick --output /tmp/bench                                  # tiny settings
    python benchmarks/run_all.py --parts step flops --output benchmarks/results

The parts, each with its defaults (or ``--quick``), each in a fresh process, so that none inherits
another's heap, allocator state or compiled code (bench_memory.py also starts one process per
setting itself): 1 ``step`` (bench_step.py), 2 ``speedup``, 3 ``features``, 4 ``memory``,
5 ``loading``, 6 ``flops``, 7 ``scaling``, 8 ``profile`` (what limits parts 1 and 3). Each part
writes ``<output>/<part>.json``; this writes ``<output>/results.json`` (every report, the machine,
the command, each part's duration) and ``<output>/results.md``, ready for docs/performance.md. The
scaling plot goes to ``--plot`` (default ``<output>/scaling.png``). A part that fails is reported
and the others still run; the exit status is then 1. Progress goes to stderr, each part's tables to
stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import bench_features
import bench_flops
import bench_loading
import bench_memory
import bench_profile
import bench_scaling
import bench_speedup
import bench_step
from report import HelpFormatter, Report, command, machine_markdown, progress
from timing import machine

_LOG_TAIL_LINES = 60  # of a failed part's stderr, kept in the results
# name -> (script, title), in the order.
PARTS: dict[str, tuple[ModuleType, str]] = {
    "step": (bench_step, "Pre-training step: ours against transformers"),
    "speedup": (bench_speedup, "The paper's speed-up: mask tokens out of the encoder"),
    "features": (bench_features, "Feature extraction"),
    "memory": (bench_memory, "Peak memory of a training step"),
    "loading": (bench_loading, "Loading weights"),
    "flops": (bench_flops, "FLOPs and efficiency"),
    "scaling": (bench_scaling, "Scaling with batch, image and model size"),
    "profile": (bench_profile, "Where the time goes: operator groups, ours against transformers"),
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


def run_part(name: str, args: argparse.Namespace) -> tuple[int, str]:
    """Run a part's script in a fresh process: its exit status and the end of its stderr (for a failure report).

    Its stdout (the tables) and stderr (progress) pass through as they come.
    """
    command = [sys.executable, str(Path(PARTS[name][0].__file__)), *part_argv(name, args)]
    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as part:
        assert part.stderr is not None
        for line in part.stderr:
            sys.stderr.write(line)
            tail.append(line)
    return part.returncode, "".join(tail)


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
        returncode, log_tail = run_part(name, args)
        if returncode == 0:
            reports[name] = json.loads((args.output / f"{name}.json").read_text())
        else:
            errors[name] = log_tail
            progress(f"{name} failed (exit {returncode})")
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
