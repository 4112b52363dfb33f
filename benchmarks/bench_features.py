"""Feature extraction (every patch, no masking): our ``forward_features`` against `transformers`' encoders.

    python benchmarks/bench_features.py                 # ViT-B/16, 224 px, batch 16, fp32, eager
    python benchmarks/bench_features.py --device cuda --dtype bf16 --compile --batch 256
    python benchmarks/bench_features.py --quick         # a tiny model, seconds

Sides, all with our encoder's weights, under ``torch.inference_mode``: ours (``forward_features``,
(B, 1 + L, D) after the final norm); ``ViTMAEModel`` with ``mask_ratio=0`` (it still shuffles the
tokens, so it gets increasing noise, which keeps the image order); ``ViTModel`` without its pooler.
The first call of each side is compared with ours (max abs difference) and is the untimed round.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import harness
import sides
import torch


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=5)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=16)
    harness.add_precision_flags(parsed)
    return parsed


def _inference(call: Callable[[], torch.Tensor], device: torch.device, dtype: str) -> Callable[[], torch.Tensor]:
    def extract() -> torch.Tensor:
        with torch.inference_mode(), sides.autocast(device, dtype):
            return call()

    return extract


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    ours = sides.build_ours(args.model, device, **harness.model_overrides(args)).eval()
    imgs, noise = sides.make_inputs(ours, args.batch)
    in_order = torch.arange(noise.shape[1], device=device, dtype=noise.dtype).expand_as(noise)
    with tempfile.TemporaryDirectory() as folder:
        files = sides.write_transformers_files(ours, Path(folder))
        vitmae = sides.load_twin("ViTMAEModel", files, device, mask_ratio=0.0).eval()
        vit = sides.load_twin("ViTModel", files, device, add_pooling_layer=False).eval()
    models = {"ours": ours.forward_features, "transformers-vitmae": vitmae, "transformers-vit": vit}
    models = {name: torch.compile(model) for name, model in models.items()} if args.compile else models
    calls = {
        "ours": lambda: models["ours"](imgs),
        "transformers-vitmae": lambda: (
            models["transformers-vitmae"](pixel_values=imgs, noise=in_order).last_hidden_state
        ),
        "transformers-vit": lambda: models["transformers-vit"](pixel_values=imgs).last_hidden_state,
    }
    cases = {name: _inference(call, device, args.dtype) for name, call in calls.items()}
    reference = cases["ours"]().float()
    diffs = {name: (case().float() - reference).abs().max().item() for name, case in cases.items() if name != "ours"}
    return {"max_abs_diff": diffs, "times": harness.interleaved(cases, rounds=args.rounds, warmup=0, device=device)}


def tables(args: argparse.Namespace, results: dict) -> str:
    mode = "compiled" if args.compile else "eager"
    intro = (
        f"{args.model}, {args.img_size} px, batch {args.batch}, {args.dtype}, {args.device}, {mode}, inference mode."
    )
    checks = [{"side": name, "max abs diff to ours": f"{diff:.1e}"} for name, diff in results["max_abs_diff"].items()]
    timings = harness.markdown_table(harness.timing_rows(results["times"], ["ours"]))
    return "\n\n".join([intro, timings, harness.markdown_table(checks)])


def main(argv: Sequence[str] | None = None) -> dict:
    return harness.run_script("features", build_parser(), argv, harness.QUICK_MODEL, run, tables)


if __name__ == "__main__":
    main()
