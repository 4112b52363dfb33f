"""Pre-training step time (forward + backward + AdamW step): ours against `transformers`' ViTMAEForPreTraining.

    python benchmarks/bench_step.py           # ViT-B/16, 224 px, batch 8, mask 0.75: fp32 and bf16, eager and compiled
    python benchmarks/bench_step.py --precisions fp32 --no-compile --repeats 3
    python benchmarks/bench_step.py --sides ours ours-checkpointing --precisions fp32 --no-compile
    python benchmarks/bench_step.py --quick   # a tiny model, seconds (the smoke test)

Sides (``--sides``): ``ours``, ``ours-checkpointing`` (gradient checkpointing), ``transformers-sdpa`` and
``transformers-eager`` (their ``attn_implementation``). Every side has the same weights, images,
masking noise, precision and threads, the same AdamW, and ``zero_grad(set_to_none=True)``. Each group
(a precision, eager or ``torch.compile`` with ``--compile-backend``) times its sides interleaved
(A B, B A, ...) after warm-up: medians, min - max, ratio to ours, and the first call (with compilation).
A side that fails to compile is reported with its error.

Checked before timing, on the same weights, images and noise: each other side's fp32 loss and
predictions against ours; the loss in bf16 autocast against fp32 (the 1e-2 criterion).

Where bf16 is not native (an AVX2-only CPU: bf16 matmuls ~80x slower than fp32), bf16 runs for ours
only, not compiled: one step, no warm-up, no interleaving partner, batch ``--slow-bf16-batch``; the
report says so. On a GPU the same script runs everything (bf16 autocast, torch.compile).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from report import Report, add_compile_flags, add_model_flags, group_markdown, main_of, parser
from timing import records_table
from workloads import (
    PRECISIONS,
    PRETRAINING_SIDES,
    LossFn,
    batch_inputs,
    bf16_is_native,
    build_ours,
    make_optimizer,
    output_loss,
    pick_device,
    precision_context,
    pretraining_side,
    time_sides,
    training_step,
)

from masked_autoencoder import MAEEncoder

PART = "step"
QUICK = {
    "model": "mae_vit_tiny_patch16",
    "img_size": 64,
    "batch": 2,
    "repeats": 1,
    "compile": False,
    "sides": list(PRETRAINING_SIDES),
}
_PARITY_ATOL = 1e-4
_BF16_LOSS_TOLERANCE = 1e-2
Sides = dict[str, tuple[torch.nn.Module, LossFn]]


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=10)  # paired ratios of seconds-long steps need rounds
    add_model_flags(parsed, batch=8)
    parsed.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    add_compile_flags(parsed)
    default_sides = ["ours", "transformers-sdpa", "transformers-eager"]
    parsed.add_argument("--sides", nargs="+", choices=PRETRAINING_SIDES, default=default_sides)
    parsed.add_argument("--slow-bf16-batch", type=int, default=1, help="bf16 batch where bf16 is not native")
    return parsed


def _loss_and_pred(module: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, torch.Tensor]:
    """The loss and predictions (B, L, P*P*C) of ours or of `transformers`' model, without gradients."""
    imgs, noise = inputs
    with torch.no_grad():
        if isinstance(module, MAEEncoder):
            out = module(imgs, noise=noise)
            return out.loss.item(), out.pred
        out = module(pixel_values=imgs, noise=noise)
        return out.loss.item(), out.logits


def parity(ours: MAEEncoder, sides: Sides, inputs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, dict[str, object]]:
    """Each other side's fp32 loss and predictions against ours: the differences and whether they are within 1e-4."""
    loss, pred = _loss_and_pred(ours, inputs)
    checks = {}
    for name, (module, _) in sides.items():
        if module is not ours:
            their_loss, their_pred = _loss_and_pred(module, inputs)
            loss_diff, pred_diff = abs(their_loss - loss), (their_pred - pred).abs().max().item()
            match = loss_diff <= _PARITY_ATOL and pred_diff <= _PARITY_ATOL
            checks[name] = {"loss_abs_diff": loss_diff, "pred_max_abs_diff": pred_diff, "match": match}
    return checks


def bf16_loss(module: torch.nn.Module, loss_fn: LossFn, inputs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, object]:
    """The loss in fp32 and in bf16 autocast, on the same weights, images and noise."""
    with torch.no_grad():
        fp32 = loss_fn(module, *inputs).item()
        with precision_context(inputs[0].device, "bf16"):
            bf16 = loss_fn(module, *inputs).item()
    diff = abs(bf16 - fp32)
    return {
        "fp32": fp32,
        "bf16": bf16,
        "abs_diff": diff,
        "rel_diff": diff / abs(fp32),
        "within_1e-2": diff <= _BF16_LOSS_TOLERANCE,
    }


def _slow_bf16_note(batch: int) -> str:
    return (
        "bf16 is not native here (a CPU without AMX or AVX512-BF16: ~80x slower than fp32): ours only, "
        f"not compiled, one step without warm-up and without an interleaving partner, batch {batch}"
    )


def time_group(
    sides: Sides,
    inputs: tuple[torch.Tensor, torch.Tensor],
    precision: str,
    backend: str | None,
    args: argparse.Namespace,
) -> dict[str, object]:
    """Time the sides' training steps interleaved, in one precision, eager (``backend`` None) or compiled."""

    def case(name: str, module: torch.nn.Module) -> Callable[[], torch.Tensor]:
        return training_step(module, sides[name][1], inputs, make_optimizer(module), precision)

    device, batch = inputs[0].device, len(inputs[0])
    slow = precision == "bf16" and not bf16_is_native(device)
    repeats, warmup = (1, 0) if slow else (args.repeats, args.warmup)
    modules = {name: module for name, (module, _) in sides.items()}
    group = time_sides(modules, case, backend, repeats=repeats, warmup=warmup, device=device)
    return {"precision": precision, "batch": batch, **group, "note": _slow_bf16_note(batch) if slow else ""}


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    ours = build_ours(args.model, device, img_size=args.img_size, mask_ratio=args.mask_ratio)
    sides: Sides = {side: pretraining_side(side, ours) for side in args.sides}
    inputs = batch_inputs(ours.config, args.batch, device)
    results: dict[str, object] = {"device": str(device), "parity": parity(ours, sides, inputs), "groups": []}
    for precision in args.precisions:
        if precision == "bf16" and not bf16_is_native(device):
            chosen, batch = {"ours": (ours, output_loss)}, min(args.batch, args.slow_bf16_batch)
            backends: list[str | None] = [None]
        else:
            chosen, batch = sides, args.batch
            backends = [None, args.compile_backend] if args.compile else [None]
        group_inputs = batch_inputs(ours.config, batch, device)
        if precision == "bf16":
            results["bf16_loss"] = {name: bf16_loss(module, fn, group_inputs) for name, (module, fn) in chosen.items()}
        results["groups"] += [time_group(chosen, group_inputs, precision, backend, args) for backend in backends]
    return results


def _checks_markdown(results: dict[str, object]) -> list[str]:
    """The output checks as tables: each side against ours in fp32, and bf16 against fp32."""
    parity = [
        {
            "same outputs as ours (fp32)": name,
            "loss diff": f"{check['loss_abs_diff']:.1e}",
            "max pred diff": f"{check['pred_max_abs_diff']:.1e}",
            "within 1e-4": check["match"],
        }
        for name, check in results["parity"].items()
    ]
    losses = [
        {
            "loss, bf16 vs fp32": name,
            "fp32": f"{check['fp32']:.5f}",
            "bf16": f"{check['bf16']:.5f}",
            "abs diff": f"{check['abs_diff']:.1e}",
            "within 1e-2": check["within_1e-2"],
        }
        for name, check in results.get("bf16_loss", {}).items()
    ]
    return [records_table(records) for records in (parity, losses) if records]


def markdown(report: Report) -> str:
    settings, results = report["settings"], report["results"]
    parts = [
        f"{settings['model']}, {settings['img_size']} px, mask ratio {settings['mask_ratio']}, "
        f"{results['device']}, forward + backward + AdamW step."
    ]
    for group in results["groups"]:
        parts += group_markdown(f"{group['precision']}, batch {group['batch']}, ", group)
        parts += [f"- {group['note']}"] if group["note"] else []
    return "\n\n".join(parts + _checks_markdown(results))


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
