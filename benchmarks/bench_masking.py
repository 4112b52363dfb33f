"""What each masking strategy costs in a pre-training step, and a mask ratio per image against one ratio.

    python benchmarks/bench_masking.py                  # ViT-B/16, 224 px, batch 8, fp32, eager
    python benchmarks/bench_masking.py --quick          # a tiny model, seconds

Cases, all one step (forward, backward, fused AdamW) of the same model on the same images:
``random`` (one ratio, 0.75, the paper's), ``block`` and ``grid`` (0.75), ``per-image 0.75`` (a (B,)
tensor of 0.75: the same tokens, plus the attention mask and one host sync), and ``per-image 0.6-0.9``
(ratios spread evenly, mean 0.75: each image is padded to the 40% of patches that the 0.6 image keeps).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import harness
import sides
import torch

from masked_autoencoder import BlockMasking, GridMasking


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=4)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=8)
    return parsed


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    model = sides.build_ours(args.model, device, **harness.model_overrides(args))
    imgs, _ = sides.make_inputs(model, args.batch)
    spread = torch.linspace(0.6, 0.9, args.batch, device=device)
    calls = {
        "random": {},
        "block": {"masking": BlockMasking(0.75)},
        "grid": {"masking": GridMasking()},
        "per-image 0.75": {"mask_ratio": torch.full((args.batch,), 0.75, device=device)},
        "per-image 0.6-0.9": {"mask_ratio": spread},
    }
    cases = {name: sides.train_step(model, lambda module, kw=kw: module(imgs, **kw).loss) for name, kw in calls.items()}
    return {"times": harness.interleaved(cases, rounds=args.rounds, device=device)}


def tables(args: argparse.Namespace, results: dict) -> str:
    intro = f"{args.model}, {args.img_size} px, batch {args.batch}, fp32, {args.device}, eager; one training step."
    return "\n\n".join([intro, harness.markdown_table(harness.timing_rows(results["times"], ["random"]))])


def main(argv: Sequence[str] | None = None) -> dict:
    return harness.run_script("masking", build_parser(), argv, harness.QUICK_MODEL, run, tables)


if __name__ == "__main__":
    main()
