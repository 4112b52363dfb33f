"""Encoder feature extraction (every patch, no masking): ours against `transformers`' ViTMAEModel and ViTModel.

    python benchmarks/bench_features.py                  # ViT-B/16, 224 px, batch 32, fp32, eager and compiled
    python benchmarks/bench_features.py --no-compile --repeats 5
    python benchmarks/bench_features.py --quick          # a tiny model, seconds (the smoke test)

Sides, all with our encoder's weights, under ``torch.inference_mode``, fp32:
- ``ours``: ``MAEEncoder.forward_features`` -> (B, 1 + L, D) after the final norm;
- ``transformers-vitmae``: ViTMAEModel with ``mask_ratio=0``; it still shuffles the tokens, so it gets
  increasing noise (``arange``), which keeps them in image order;
- ``transformers-vit``: ViTModel without its pooling layer.
Before timing, each side's ``last_hidden_state`` is checked against ours (max abs diff, within 1e-4).
Then the sides run interleaved (A B, B A, ...) after warm-up: medians, min - max, ratio to ours; with
``--compile`` (the default) once more, each side compiled (``--compile-backend``), failures reported.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from report import Report, add_compile_flags, add_model_flags, group_markdown, main_of, parser
from timing import records_table
from torch import nn
from workloads import batch_inputs, build_ours, pick_device, time_sides

PART = "features"
QUICK = {"model": "mae_vit_tiny_patch16", "img_size": 64, "batch": 2, "repeats": 1, "compile": False}
SIDES = ("ours", "transformers-vitmae", "transformers-vit")
_ATOL = 1e-4
Call = Callable[[nn.Module], torch.Tensor]


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=5)
    add_model_flags(parsed, batch=32, mask_ratio=False)
    add_compile_flags(parsed)
    parsed.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    return parsed


def build_side(name: str, encoder: nn.Module, imgs: torch.Tensor) -> tuple[nn.Module, Call]:
    """One side's module, with our encoder's weights, and how to get its (B, 1 + L, D) features from it."""
    if name == "ours":
        return encoder, lambda module: module(imgs)
    from twins import identity_noise, mae_encoder, vit_encoder  # imports transformers (seconds): only when needed

    if name == "transformers-vit":
        return vit_encoder(encoder), lambda module: module(pixel_values=imgs).last_hidden_state
    noise = identity_noise(imgs, math.prod(encoder.config.grid_size))
    return mae_encoder(encoder), lambda module: module(pixel_values=imgs, noise=noise).last_hidden_state


def same_outputs(sides: dict[str, tuple[nn.Module, Call]], reference: torch.Tensor) -> dict[str, dict[str, object]]:
    """Each other side's features against ours: the max abs difference and whether it is within 1e-4."""
    others = {name: side for name, side in sides.items() if name != "ours"}
    with torch.inference_mode():
        diffs = {name: (call(module) - reference).abs().max().item() for name, (module, call) in others.items()}
    return {name: {"max_abs_diff": diff, "match": diff <= _ATOL} for name, diff in diffs.items()}


def time_group(
    sides: dict[str, tuple[nn.Module, Call]], backend: str | None, args: argparse.Namespace, device: torch.device
) -> dict[str, object]:
    """Time the sides' feature extraction interleaved, eager (``backend`` None) or compiled."""

    def case(name: str, module: nn.Module) -> Callable[[], torch.Tensor]:
        def extract() -> torch.Tensor:
            with torch.inference_mode():
                return sides[name][1](module)

        return extract

    modules = {name: module for name, (module, _) in sides.items()}
    return time_sides(modules, case, backend, repeats=args.repeats, warmup=args.warmup, device=device)


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    encoder = build_ours(args.model, device, encoder_only=True, img_size=args.img_size).eval()
    imgs, _ = batch_inputs(encoder.config, args.batch, device)
    sides = {name: build_side(name, encoder, imgs) for name in args.sides}
    with torch.inference_mode():
        reference = encoder.forward_features(imgs)
    backends = [None, args.compile_backend] if args.compile else [None]
    return {
        "device": str(device),
        "same_outputs": same_outputs(sides, reference),
        "groups": [time_group(sides, backend, args, device) for backend in backends],
    }


def markdown(report: Report) -> str:
    settings, results = report["settings"], report["results"]
    parts = [f"{settings['model']}, {settings['img_size']} px, batch {settings['batch']}, fp32, {results['device']}."]
    for group in results["groups"]:
        parts += group_markdown("", group)
    checks = results["same_outputs"].items()
    records = [
        {"same features as ours": n, "max abs diff": f"{c['max_abs_diff']:.1e}", "within 1e-4": c["match"]}
        for n, c in checks
    ]
    parts.append(records_table(records))
    return "\n\n".join(parts)


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
