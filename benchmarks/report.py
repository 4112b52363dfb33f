"""What every benchmark script shares: its common flags, ``--quick`` settings, and its JSON and markdown report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from timing import machine, markdown_table, table

Report = dict[str, object]
"""A part's result: ``part``, ``command``, ``machine``, ``settings`` (the parsed flags) and ``results``."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` keeps the module docstring's layout (its command lines) and shows every default."""


def parser(doc: str, *, repeats: int | None, device: bool = True) -> argparse.ArgumentParser:
    """A part's parser with the common flags: ``--output``, ``--quick``, ``--repeats``, ``--warmup``, ``--device``.

    ``repeats`` is the default repeat count, None for a part that does not repeat (no ``--repeats``
    nor ``--warmup``); ``device=False`` for a part that runs on the CPU only.
    """
    parsed = argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)
    parsed.add_argument("--output", type=Path, help="write the results as JSON here")
    parsed.add_argument("--quick", action="store_true", help="tiny settings that run in seconds (the smoke test)")
    if repeats is not None:
        parsed.add_argument("--repeats", type=int, default=repeats, help="timed runs per case")
        parsed.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compilation happens there)")
    if device:
        parsed.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu or cuda")
    return parsed


def add_model_flags(parsed: argparse.ArgumentParser, *, batch: int | None, mask_ratio: bool = True) -> None:
    """``--model`` (ViT-B/16), ``--batch`` (unless None), ``--img-size`` (224), ``--mask-ratio`` (0.75) if asked."""
    parsed.add_argument("--model", default="mae_vit_base_patch16")
    if batch is not None:
        parsed.add_argument("--batch", type=int, default=batch)
    parsed.add_argument("--img-size", type=int, default=224)
    if mask_ratio:
        parsed.add_argument("--mask-ratio", type=float, default=0.75)


def add_compile_flags(parsed: argparse.ArgumentParser) -> None:
    """``--compile/--no-compile`` (also time each side compiled) and ``--compile-backend`` (inductor)."""
    parsed.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="also torch.compile")
    parsed.add_argument("--compile-backend", default="inductor", help="e.g. eager: the code path without inductor")


def parse(parsed: argparse.ArgumentParser, quick: dict[str, object], argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick`` the defaults become ``quick``, and flags given explicitly still win."""
    args = parsed.parse_args(argv)
    if args.quick:
        parsed.set_defaults(**quick)
        args = parsed.parse_args(argv)
    return args


def command(script: str, argv: Sequence[str] | None) -> str:
    """The command line that reproduces a run, from the repository's root."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])


def finish(
    part: str,
    script: str,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    results: dict[str, object],
    markdown: Callable[[Report], str],
) -> Report:
    """Assemble the report, print it as markdown, and write it as JSON to ``--output``."""
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report: Report = {
        "part": part,
        "command": command(script, argv),
        "machine": machine(),
        "settings": settings,
        "results": results,
    }
    print(markdown(report), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2))
    return report


def main_of(
    part: str,
    script: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    quick: dict[str, object],
    run: Callable[[argparse.Namespace], dict[str, object]],
    markdown: Callable[[Report], str],
) -> Callable[[Sequence[str] | None], Report]:
    """A part's ``main(argv)``: parse (``--quick`` included), run, print the markdown, write the JSON."""

    def main(argv: Sequence[str] | None = None) -> Report:
        args = parse(build_parser(), quick, argv)
        return finish(part, script, args, argv, run(args), markdown)

    return main


def machine_markdown(values: dict[str, object]) -> str:
    """The machine record as a two-column markdown table."""
    return markdown_table(["machine", ""], list(values.items()))


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(message, file=sys.stderr, flush=True)


def group_markdown(heading: str, group: dict[str, object]) -> list[str]:
    """A group of interleaved timings (see ``workloads.time_sides``) as markdown paragraphs.

    A bold heading (``heading`` then eager or compiled), the table against ours, each side that failed.
    """
    mode = f"compiled ({group['compiled']})" if group["compiled"] else "eager"
    parts = [f"**{heading}{mode}**", table(group["results"], baseline="ours", first=True)]
    return parts + [f"- {name} failed: `{error}`" for name, error in group["errors"].items()]
