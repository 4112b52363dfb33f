"""The ViT-B/16 backbone at ViTDet's 1024 x 1024: windowed against global attention, time and peak memory.

    python benchmarks/bench_dense.py                    # ViT-B/16, 1024 px, batch 1, fp32, 3 rounds
    python benchmarks/bench_dense.py --quick            # a tiny model at 256 px, seconds

Sides, one encoder (``encoder_only=True``) from the same seed on the same images: global attention in
every block (the default); ViTDet's windowed attention (``--window-size``, 14, in every block but
``--global-blocks``, ViTDet's by default: 2, 5, 8, 11 for ViT-B) with its relative position biases
(``rel_pos=True``); and the same windows without them. The work is one forward and backward of the mean
square of ``forward_features`` (B, 1 + L, D): the backbone alone, since a pyramid or a neck on top adds
the same work to every side and only dilutes the difference. No optimizer step.

Time: the sides interleaved in this process, after one untimed round. Memory: each side in a fresh
process, one after another (the largest needs GBs), a warm-up then a measured forward and backward,
the gradients zeroed in place so that they count as static (``harness.step_memory``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import harness
import sides
import torch
from torch import nn

SIDES = ("global", "windowed-rel-pos", "windowed")
REFERENCE = "global"
QUICK = harness.QUICK_MODEL | {"img_size": 256, "batch": 1, "depth": 2, "window_size": 8, "global_blocks": [1]}


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=3)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=1)
    harness.add_precision_flags(parsed)
    parsed.set_defaults(img_size=1024)
    parsed.add_argument("--window-size", type=int, default=14, help="patches a side of a window (ViTDet: 14)")
    parsed.add_argument("--global-blocks", type=int, nargs="+", help="global blocks of the windowed sides")
    harness.add_side_flag(parsed, SIDES)
    return parsed


def _forward_backward(side: str, args: argparse.Namespace) -> tuple[Callable[[], None], nn.Module]:
    """One side's forward and backward as a closure (gradients zeroed in place first), and its encoder.

    The encoders come from the same seed (the relative position tables start at zero, drawing nothing).
    """
    device = torch.device(args.device)
    windowing = {} if side == "global" else {"window_size": args.window_size, "global_blocks": args.global_blocks}
    windowing |= {"rel_pos": True} if side == "windowed-rel-pos" else {}
    overrides = harness.model_overrides(args) | windowing
    encoder = sides.build_ours(args.model, device, encoder_only=True, **overrides)
    imgs, _ = sides.make_inputs(encoder, args.batch)
    run = torch.compile(encoder) if args.compile else encoder

    def step() -> None:
        encoder.zero_grad(set_to_none=False)
        with sides.autocast(device, args.dtype):
            loss = run(imgs).float().square().mean()
        loss.backward()

    return step, encoder


def measure(side: str, args: argparse.Namespace) -> dict[str, float]:
    """In this process: one side's memory over a warm-up and a measured forward and backward."""
    step, encoder = _forward_backward(side, args)
    return harness.step_memory(step, list(encoder.parameters()), torch.device(args.device))


def run(args: argparse.Namespace) -> dict:
    steps = {side: _forward_backward(side, args)[0] for side in SIDES}
    times = harness.interleaved(steps, rounds=args.rounds, device=torch.device(args.device))
    del steps  # the encoders and their gradients: the memory processes need the room
    memory = harness.in_fresh_processes(__file__, args, SIDES, workers=1)
    return {"times": times, "memory": memory}


def tables(args: argparse.Namespace, results: dict) -> str:
    global_blocks = ", ".join(map(str, args.global_blocks)) if args.global_blocks else "ViTDet's"
    intro = (
        f"{args.model} encoder, {args.img_size} px, batch {args.batch}, {args.dtype}, {args.device}, "
        f"{'compiled' if args.compile else 'eager'}; forward + backward of forward_features; windows of "
        f"{args.window_size} patches, global blocks {global_blocks}."
    )
    return intro + "\n\n" + harness.time_and_memory_tables(results, REFERENCE)


def main(argv: Sequence[str] | None = None) -> dict | None:
    return harness.run_script("dense", build_parser(), argv, QUICK, run, tables, measure)


if __name__ == "__main__":
    main()
