"""Model FLOPs per pre-training step, and the fraction of this machine's dense fp32 matmul peak that a step reaches.

    python benchmarks/bench_flops.py                     # ViT-B/16, 224 px, batch 8, mask 0.75
    python benchmarks/bench_flops.py --model mae_vit_large_patch16 --batch 2
    python benchmarks/bench_flops.py --quick             # a tiny model, seconds (the smoke test)

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over the first (warm-up) step, forward and
  backward (matmuls, convolutions, attention; AdamW's elementwise update is not counted). torch 2.13
  registers formulas for the CUDA SDPA kernels only; the CPU kernels
  (``_scaled_dot_product_flash_attention_for_cpu`` and its backward) are counted here with torch's
  own SDPA formulas (forward 4·B·H·N²·d; backward 2.5 times that, as it recomputes the scores),
  reported as ``attention added``; nothing is added where torch counts them itself.
- Time: the median of ``--repeats`` steps (forward + backward + AdamW, fp32) after warm-up, same run.
- Peak: the best of ``--gemm-repeats`` fp32 ``torch.mm`` of two ``--gemm-size`` square matrices
  (2·n³ FLOP), same run, same threads.
Reported: FLOPs, time, achieved GFLOP/s, peak GFLOP/s, efficiency = achieved / peak.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from report import Report, add_model_flags, main_of, parser
from timing import interleaved, records_table, timed
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from workloads import (
    batch_inputs,
    build_ours,
    make_optimizer,
    output_loss,
    pick_device,
    synchronizer,
    training_step,
)

PART = "flops"
QUICK = {"model": "mae_vit_tiny_patch16", "img_size": 64, "batch": 2, "repeats": 1, "gemm_size": 256}
_aten = torch.ops.aten


def _cpu_attention(query: torch.Size, key: torch.Size, value: torch.Size, *args: object, **kwargs: object) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_attention_backward(
    grad_out: torch.Size, query: torch.Size, key: torch.Size, value: torch.Size, *args: object, **kwargs: object
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def missing_attention_formulas() -> dict[object, Callable[..., int]]:
    """FLOP formulas for the CPU SDPA kernels, for those that torch's counter does not register."""
    formulas = {
        _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
        _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
    }
    return {op: formula for op, formula in formulas.items() if op not in flop_counter.flop_registry}


def count_flops(run: Callable[[], object]) -> dict[str, int]:
    """Run ``run`` once (a training step: it doubles as a warm-up) and count its FLOPs.

    Returns ``total`` and ``attention_added``: the part that :func:`missing_attention_formulas` adds.
    """
    missing = missing_attention_formulas()
    with FlopCounterMode(display=False, custom_mapping=missing) as counter:
        run()
    added = sum(count for op, count in counter.get_flop_counts()["Global"].items() if op in missing)
    return {"total": counter.get_total_flops(), "attention_added": added}


def counted_and_timed(
    cases: dict[str, Callable[[], object]], *, repeats: int, warmup: int, device: torch.device
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Each case's FLOPs, counted in its first call (the first warm-up round), then its interleaved timings."""
    flops = {name: count_flops(run) for name, run in cases.items()}
    timings = interleaved(cases, repeats=repeats, warmup=max(warmup - 1, 0), sync=synchronizer(device))
    return flops, timings


def gemm_peak(size: int, device: torch.device, repeats: int) -> float:
    """FLOP/s of the best of ``repeats`` dense fp32 square matmuls of ``size`` (after one warm-up)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = interleaved({"mm": lambda: torch.mm(a, b)}, repeats=repeats, sync=synchronizer(device))["mm"]["min"]
    return 2 * size**3 / best


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=5)
    add_model_flags(parsed, batch=8)
    parsed.add_argument("--gemm-size", type=int, default=2048)
    parsed.add_argument("--gemm-repeats", type=int, default=5)
    return parsed


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    overrides = {"img_size": args.img_size, "mask_ratio": args.mask_ratio}
    ours = build_ours(args.model, device, **overrides)
    step = training_step(ours, output_loss, batch_inputs(ours.config, args.batch, device), make_optimizer(ours))
    flops, timings = counted_and_timed({"ours": step}, repeats=args.repeats, warmup=args.warmup, device=device)
    flops, timing = flops["ours"], timings["ours"]
    peak = gemm_peak(args.gemm_size, device, args.gemm_repeats)
    achieved = flops["total"] / timing["median"]
    return {
        "device": str(device),
        "flops": flops["total"],
        "attention_flops_added": flops["attention_added"],
        "step": timing,
        "achieved_gflops": achieved / 1e9,
        "peak_gflops": peak / 1e9,
        "efficiency": achieved / peak,
    }


def markdown(report: Report) -> str:
    settings, r = report["settings"], report["results"]
    record = {
        "GFLOP / step (attention added)": f"{r['flops'] / 1e9:.1f} ({r['attention_flops_added'] / 1e9:.1f})",
        "step (s)": timed(r["step"]),
        "GFLOP/s": f"{r['achieved_gflops']:.1f}",
        "peak GFLOP/s": f"{r['peak_gflops']:.1f}",
        "efficiency": f"{r['efficiency']:.0%}",
    }
    intro = (
        f"{settings['model']}, {settings['img_size']} px, batch {settings['batch']}, mask ratio "
        f"{settings['mask_ratio']}, fp32, {r['device']}; step time: median (min - max); peak: "
        f"{settings['gemm_size']}^3 fp32 matmul, best of {settings['gemm_repeats']}."
    )
    return intro + "\n\n" + records_table([record])


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
