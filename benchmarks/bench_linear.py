"""The forward product of a linear layer: ``F.linear`` (BLAS sgemm) against ``fast_linear`` (oneDNN on the CPU).

    python benchmarks/bench_linear.py                  # widths 192 - 1280, 50 - 1600 tokens, the ViT layer shapes
    python benchmarks/bench_linear.py --quick          # two small shapes, seconds (the smoke test)

For every width D and token count (rows of the product: batch x tokens), the three shapes of a ViT
block's linear layers: qkv (D -> 3D), fc1 (D -> 4D) and fc2 (4D -> D); fp32, no autograd, the two
sides interleaved after warm-up. The encoder of a ViT-B/16 MAE step at batch 8 multiplies 400 rows
(8 x 50 kept tokens), its decoder 1576 (8 x 197). Reported: each side's median, the speed-up
(F.linear / fast_linear), and whether ``fast_linear`` ran on oneDNN there (below its size limit,
it is ``F.linear`` itself). Where the speed-up is above 1, our layers' forward products are faster.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from report import Report, main_of, parser
from timing import interleaved, markdown_table

from masked_autoencoder.fast_linear import fast_linear, runs_on_onednn

PART = "linear"
QUICK = {"widths": [192, 512], "tokens": [50], "repeats": 2}
LAYERS = {"qkv": (1, 3), "fc1": (1, 4), "fc2": (4, 1)}  # (in, out) as multiples of the width


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=30, device=False)
    parsed.add_argument("--widths", type=int, nargs="+", default=[192, 384, 512, 768, 1024, 1280])
    parsed.add_argument("--tokens", type=int, nargs="+", default=[50, 200, 400, 1600])
    return parsed


def time_layer(rows: int, width_in: int, width_out: int, args: argparse.Namespace) -> dict[str, object]:
    """Both sides' forward product on (rows, width_in) through a (width_out, width_in) weight."""
    x, weight, bias = torch.randn(rows, width_in), torch.randn(width_out, width_in), torch.randn(width_out)
    cases = {"F.linear": lambda: F.linear(x, weight, bias), "fast_linear": lambda: fast_linear(x, weight, bias)}
    with torch.no_grad():
        timings = interleaved(cases, repeats=args.repeats, warmup=args.warmup)
    speedup = timings["F.linear"]["median"] / timings["fast_linear"]["median"]
    return {"timings": timings, "speedup": speedup, "onednn": runs_on_onednn(x, weight, bias)}


def run(args: argparse.Namespace) -> dict[str, object]:
    points = []
    for width in args.widths:
        for rows in args.tokens:
            for layer, (times_in, times_out) in LAYERS.items():
                point = time_layer(rows, width * times_in, width * times_out, args)
                points.append({"width": width, "rows": rows, "layer": layer, **point})
    return {"device": "cpu", "points": points}


def markdown(report: Report) -> str:
    points = report["results"]["points"]
    cells = {(p["width"], p["rows"], p["layer"]): p for p in points}
    keys = sorted({(p["width"], p["rows"]) for p in points})
    rows = []
    for width, tokens in keys:
        speedups = []
        for layer in LAYERS:
            point = cells[width, tokens, layer]
            speedups.append(f"{point['speedup']:.2f}x" + ("" if point["onednn"] else " (F.linear)"))
        rows.append([width, tokens, *speedups])
    intro = (
        "Speed-up of the forward product, F.linear (BLAS) time / fast_linear time, medians of "
        f"{report['settings']['repeats']} interleaved rounds, fp32; (F.linear): below the size limit, "
        "fast_linear is F.linear itself."
    )
    return intro + "\n\n" + markdown_table(["width D", "rows", *(f"{name} speed-up" for name in LAYERS)], rows)


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
