"""Every benchmark, each in a fresh process (no heap, cache or compiled code carried from one to the next).

    python benchmarks/run_all.py                        # the full run: benchmarks/results/<name>.json and .md
    python benchmarks/run_all.py --quick                # every script on a tiny model, nothing written

``--quick``, ``--output`` and ``--device`` go to every script (``--device`` to all but the loading,
which runs on the CPU). A script that fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ("step", "speedup", "features", "memory", "loading", "masking", "dense", "video")


def main(argv: Sequence[str] | None = None) -> int:
    parsed = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS))
    parsed.add_argument("--quick", action="store_true", help="every script on a tiny model, seconds")
    parsed.add_argument("--output", help="folder for the results (default: benchmarks/results, none with --quick)")
    parsed.add_argument("--device", choices=("cpu", "cuda"))
    args = parsed.parse_args(argv)
    flags = ["--quick"] * args.quick + (["--output", args.output] if args.output else [])
    failed = []
    for name in args.only:
        start = time.perf_counter()
        device = ["--device", args.device] if args.device and name != "loading" else []
        done = subprocess.run([sys.executable, str(HERE / f"bench_{name}.py"), *flags, *device], check=False)
        print(f"bench_{name}.py: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        failed += [name] if done.returncode else []
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
