"""One MAE pre-training step (forward, backward, fused AdamW): ours against `transformers`' ViTMAEForPreTraining.

    python benchmarks/bench_step.py                     # ViT-B/16, 224 px, batch 8, fp32, eager
    python benchmarks/bench_step.py --device cuda --dtype bf16 --compile --batch 64
    python benchmarks/bench_step.py --quick             # a tiny model, seconds

Sides: ours, and ViTMAEForPreTraining with ``attn_implementation`` sdpa and eager, loaded with our
weights; the same images, masking noise, dtype and AdamW. First each side's loss on those inputs,
without gradients (fp32: equal to ~1e-6). Then the steps, interleaved, after one untimed round (where
``--compile`` compiles). The step's FLOPs are counted once, on our eager fp32 forward and backward
(attention on the CPU added); each side's rate is those FLOPs over its median step, set against the
fastest of five square matmuls of ``--peak-size`` in the same dtype on the same threads.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import harness
import sides
import torch

ATTENTION = {"transformers-sdpa": "sdpa", "transformers-eager": "eager"}


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=8)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=8)
    harness.add_precision_flags(parsed)
    parsed.add_argument("--peak-size", type=int, default=2048, help="side of the matmul that measures the peak")
    return parsed


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    ours = sides.build_ours(args.model, device, **harness.model_overrides(args))
    imgs, noise = sides.make_inputs(ours, args.batch)
    models = {"ours": (ours, sides.ours_loss(imgs, noise))}
    with tempfile.TemporaryDirectory() as folder:
        files = sides.write_transformers_files(ours, Path(folder))
        for name, attention in ATTENTION.items():
            twin = sides.load_twin("ViTMAEForPreTraining", files, device, attn_implementation=attention)
            models[name] = (twin.train(), sides.transformers_loss(imgs, noise))
    with torch.no_grad(), sides.autocast(device, args.dtype):
        losses = {name: loss(model).item() for name, (model, loss) in models.items()}
    flops = sides.forward_backward_flops(ours, models["ours"][1])
    steps = {name: sides.train_step(*model, args.dtype, compile=args.compile) for name, model in models.items()}
    times = harness.interleaved(steps, rounds=args.rounds, device=device)
    peak = sides.matmul_peak(device, args.dtype, args.peak_size)
    return {"losses": losses, "flops": flops, "peak_flops": peak, "times": times}


def tables(args: argparse.Namespace, results: dict) -> str:
    flops, peak, losses, times = results["flops"], results["peak_flops"], results["losses"], results["times"]
    rows = harness.timing_rows(times, ["ours"])
    for row, seconds in zip(rows, times.values(), strict=True):
        rate = flops / statistics.median(seconds)
        row |= {"GFLOP/s": f"{rate / 1e9:.1f}", "of matmul peak": f"{rate / peak:.0%}"}
    checks = [
        {"side": name, "loss": f"{value:.6f}", "diff to ours": f"{value - losses['ours']:.1e}"}
        for name, value in losses.items()
    ]
    intro = (
        f"{args.model}, {args.img_size} px, batch {args.batch}, {args.dtype}, {args.device}, "
        f"{'compiled' if args.compile else 'eager'}; {flops / 1e9:.1f} GFLOP per step; "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s ({args.peak_size}^3, {args.dtype})."
    )
    return "\n\n".join([intro, harness.markdown_table(rows), harness.markdown_table(checks)])


def main(argv: Sequence[str] | None = None) -> dict:
    return harness.run_script("step", build_parser(), argv, harness.QUICK_MODEL | {"peak_size": 256}, run, tables)


if __name__ == "__main__":
    main()
