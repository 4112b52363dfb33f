"""The paper's speed-up: our MAE against the same ViT with mask tokens in the encoder (He et al., 2021, Table 2).

    python benchmarks/bench_speedup.py                   # B/16, L/16, H/14 at 224 px; decoder depth 8 and 1
    python benchmarks/bench_speedup.py --models mae_vit_large_patch16 --batches 4 --decoder-depths 8
    python benchmarks/bench_speedup.py --quick           # a tiny model, seconds (the smoke test)

The baseline (``baselines.MaskTokensInEncoder``) runs our model's own modules and weights: its
encoder sees every patch, the removed ones as a learned mask token plus their position; the decoder
gets every token; the loss is on the removed patches. Both sides train the same parameters with one
AdamW (the baseline's extra mask token has no gradient in our step, so AdamW skips it there), on the
same images and noise, fp32, interleaved (A B, B A, ...) after warm-up. Reported per model and decoder
depth: the step times (forward + backward + AdamW), the ratio baseline / ours, the ratio of their
FLOPs (counted in the first warm-up step, as in bench_flops.py), and the depth-8 baseline over ours
(the paper's convention: its baseline always has the 8-block decoder). The batch per model
(``--batches``) defaults to 8, 8, 2 on a CPU (64, 32, 16 on a GPU) and is recorded.
"""

from __future__ import annotations

import argparse

import torch
from baselines import MaskTokensInEncoder
from bench_flops import counted_and_timed
from report import Report, main_of, parser, progress
from timing import paired_ratio, ratio, records_table, timed
from workloads import batch_inputs, build_ours, make_optimizer, output_loss, pick_device, training_step

PART = "speedup"
QUICK = {"models": ["mae_vit_tiny_patch16"], "batches": [2], "img_size": 64, "repeats": 1}
_MODELS = ["mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"]
# ViT-L at batch 8 on a CPU (~10 s a step): at batch 2, AdamW's fixed cost took the ratio from ~3.0x to ~2.5x.
_BATCHES = {"cpu": [8, 8, 2], "cuda": [64, 32, 16]}


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=3)
    parsed.add_argument("--models", nargs="+", default=_MODELS)
    parsed.add_argument(
        "--batches", nargs="+", type=int, help="one per model (none given: 8 8 2 on a CPU, 64 32 16 on a GPU)"
    )
    parsed.add_argument("--decoder-depths", nargs="+", type=int, default=[8, 1])
    parsed.add_argument("--img-size", type=int, default=224)
    parsed.add_argument("--mask-ratio", type=float, default=0.75)
    return parsed


def compare(name: str, batch: int, device: torch.device, args: argparse.Namespace, **overrides: object) -> dict:
    """Time ours against the baseline, interleaved, with the same weights and optimizer; count both FLOPs."""
    mae = build_ours(name, device, **overrides)
    sides = {"ours": mae, "baseline": MaskTokensInEncoder(mae).to(device)}
    optimizer = make_optimizer(sides["baseline"])  # its parameters: the MAE's and the baseline's mask token
    inputs = batch_inputs(mae.config, batch, device)
    cases = {side: training_step(module, output_loss, inputs, optimizer) for side, module in sides.items()}
    flops, results = counted_and_timed(cases, repeats=args.repeats, warmup=args.warmup, device=device)
    flops = {side: counted["total"] for side, counted in flops.items()}
    return {"model": name, "batch": batch, **overrides, "results": results, "flops": flops}


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    batches = args.batches or _BATCHES[device.type][: len(args.models)]
    if len(batches) != len(args.models):
        raise ValueError(f"--batches: one batch per model, got {batches} for {args.models}")
    rows = []
    for name, batch in zip(args.models, batches, strict=True):
        for depth in args.decoder_depths:
            progress(f"speedup: {name}, decoder depth {depth}, batch {batch}")
            overrides = {"decoder_depth": depth, "img_size": args.img_size, "mask_ratio": args.mask_ratio}
            rows.append(compare(name, batch, device, args, **overrides))
    return {"device": str(device), "rows": rows}


def _record(row: dict[str, object], rows: list[dict[str, object]]) -> dict[str, object]:
    """One table row; the last column is the paper's Table 2 convention: the depth-8 baseline over ours."""
    ours, baseline = row["results"]["ours"], row["results"]["baseline"]
    deepest = [r["results"]["baseline"] for r in rows if r["model"] == row["model"] and r["decoder_depth"] == 8]
    return {
        "model": row["model"],
        "decoder depth": row["decoder_depth"],
        "batch": row["batch"],
        "ours (s)": timed(ours),
        "baseline (s)": timed(baseline),
        "time baseline / ours": ratio(baseline, ours),
        "paired baseline / ours": paired_ratio(baseline, ours),
        "FLOPs baseline / ours": f"{row['flops']['baseline'] / row['flops']['ours']:.2f}x",
        "baseline (depth 8) / ours": ratio(deepest[0] if deepest else None, ours),
    }


def markdown(report: Report) -> str:
    settings, results = report["settings"], report["results"]
    intro = (
        f"{settings['img_size']} px, mask ratio {settings['mask_ratio']}, fp32, {results['device']}; "
        "baseline: the same ViT with mask tokens in the encoder; times are medians (min - max)."
    )
    return intro + "\n\n" + records_table([_record(row, results["rows"]) for row in results["rows"]])


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
