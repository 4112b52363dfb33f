"""Where the time goes: `torch.profiler`'s self time per operator group, ours against `transformers`.

    python benchmarks/bench_profile.py                   # ViT-B/16, 224 px: part 1's step and part 3's features
    python benchmarks/bench_profile.py --workloads step --repeats 5
    python benchmarks/bench_profile.py --quick           # a tiny model, seconds (the smoke test)

Workloads (``--workloads``), each on the same weights and inputs for every side, fp32, eager:
- ``step``: part 1's pre-training step (forward, backward, AdamW; batch ``--step-batch``), ours against
  ``transformers-sdpa``;
- ``features``: part 3's feature extraction (``torch.inference_mode``, batch ``--features-batch``), ours
  against ``transformers-vitmae`` and ``transformers-vit``.
Each side runs once unprofiled (warm-up), then ``--repeats`` profiled calls, interleaved (A B, B A, ...).
Reported per side: the self time of every operator, summed into groups (matrix products, attention,
GELU, layer norm, optimizer, autograd's nodes and Python around the operators, every other operator), in ms per
call and as a share of the profiled total, each group's ratio to ours, and our largest operators.
Self time on the CPU, device time on a GPU. The profiler adds its own cost to every operator: read
the shares and the groups' ratios, and take wall times from parts 1 and 3.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable

import torch
from bench_features import build_side
from report import Report, add_model_flags, main_of, parser
from timing import interleaved, records_table
from torch.profiler import ProfilerActivity, profile
from workloads import (
    batch_inputs,
    build_ours,
    make_optimizer,
    pick_device,
    pretraining_side,
    synchronizer,
    training_step,
)

PART = "profile"
QUICK = {"model": "mae_vit_tiny_patch16", "img_size": 64, "step_batch": 2, "features_batch": 2, "repeats": 1}
WORKLOADS = ("step", "features")
OTHER_OPERATORS = "other operators"
# Operator groups, the first match wins: (group, exact operator names, substrings of a name).
OPERATOR_GROUPS: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    (
        "matrix products",
        frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution"}),
        ("convolution_backward",),
    ),
    ("attention", frozenset(), ("scaled_dot_product", "flash_attention", "efficient_attention", "softmax")),
    ("GELU", frozenset(), ("gelu",)),
    ("layer norm", frozenset(), ("layer_norm",)),
    ("optimizer", frozenset(), ("adam", "Optimizer.")),
)
# Scopes that are not operators (autograd's nodes, custom Functions): their self time is the engine's and Python's.
_OUTSIDE_OPERATORS = "autograd nodes, Python"
_TOP_OPERATORS = 12


def operator_group(name: str) -> str:
    """The group of a profiled operator, by its name (``aten::addmm``, ``MmBackward0``, ...)."""
    for group, names, parts in OPERATOR_GROUPS:
        if name in names or any(part in name for part in parts):
            return group
    return OTHER_OPERATORS if name.startswith("aten::") else _OUTSIDE_OPERATORS


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=3)
    add_model_flags(parsed, batch=None)  # each workload has its own batch, as in parts 1 and 3
    parsed.add_argument("--step-batch", type=int, default=8)
    parsed.add_argument("--features-batch", type=int, default=32)
    parsed.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    return parsed


def profiled(run: Callable[[], object], device: torch.device, totals: collections.Counter) -> Callable[[], None]:
    """``run`` under the profiler; every call adds each operator's self time (seconds) to ``totals``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])

    def call() -> None:
        with profile(activities=activities) as recorded:
            run()
        for event in recorded.key_averages():
            # On a GPU the kernels' time is the cost; the CPU's is only the launching.
            micros = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
            totals[event.key] += micros / 1e6

    return call


def profile_sides(
    cases: dict[str, Callable[[], object]], *, repeats: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Each case's self time per operator, in seconds per call, over ``repeats`` interleaved profiled calls."""
    for run in cases.values():
        run()  # warm-up, unprofiled
    totals = {name: collections.Counter() for name in cases}
    wrapped = {name: profiled(run, device, totals[name]) for name, run in cases.items()}
    interleaved(wrapped, repeats=repeats, warmup=0, sync=synchronizer(device))
    return {name: {op: seconds / repeats for op, seconds in ops.most_common()} for name, ops in totals.items()}


def grouped(operators: dict[str, float]) -> dict[str, float]:
    """Seconds per operator -> seconds per group, every group present, largest first."""
    groups = dict.fromkeys([group for group, _, _ in OPERATOR_GROUPS] + [_OUTSIDE_OPERATORS, OTHER_OPERATORS], 0.0)
    for name, seconds in operators.items():
        groups[operator_group(name)] += seconds
    return dict(sorted(groups.items(), key=lambda item: -item[1]))


def step_cases(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[], object]]:
    """Part 1's training step for ours and transformers-sdpa, same weights, images, noise and AdamW."""
    ours = build_ours(args.model, device, img_size=args.img_size, mask_ratio=args.mask_ratio)
    inputs = batch_inputs(ours.config, args.step_batch, device)
    sides = {side: pretraining_side(side, ours) for side in ("ours", "transformers-sdpa")}
    return {side: training_step(module, fn, inputs, make_optimizer(module)) for side, (module, fn) in sides.items()}


def features_cases(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[], object]]:
    """Part 3's feature extraction for ours, transformers-vitmae and transformers-vit, same weights and images."""
    encoder = build_ours(args.model, device, encoder_only=True, img_size=args.img_size).eval()
    imgs, _ = batch_inputs(encoder.config, args.features_batch, device)

    def extract(module: torch.nn.Module, call: Callable[[torch.nn.Module], torch.Tensor]) -> Callable[[], object]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return call(module)

        return run

    names = ("ours", "transformers-vitmae", "transformers-vit")
    return {name: extract(*build_side(name, encoder, imgs)) for name in names}


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    builders = {"step": step_cases, "features": features_cases}
    batches = {"step": args.step_batch, "features": args.features_batch}
    results: dict[str, object] = {"device": str(device), "workloads": {}}
    for workload in args.workloads:
        operators = profile_sides(builders[workload](args, device), repeats=args.repeats, device=device)
        results["workloads"][workload] = {
            "batch": batches[workload],
            "groups": {side: grouped(ops) for side, ops in operators.items()},
            "operators": operators,
        }
    return results


def groups_table(groups: dict[str, dict[str, float]]) -> str:
    """One row per group (ours' order): each side's ms per call and share, and its ratio to ours."""
    ours = groups["ours"]
    totals = {side: sum(seconds.values()) for side, seconds in groups.items()}
    records = []
    for group in [*ours, "total"]:
        record: dict[str, object] = {"group": group}
        for side, seconds in groups.items():
            value = totals[side] if group == "total" else seconds[group]
            record[f"{side} (ms)"] = f"{value * 1e3:.1f}"
            record[f"{side} share"] = f"{value / totals[side]:.1%}"
            if side != "ours":
                mine = totals["ours"] if group == "total" else ours[group]
                record[f"{side} / ours"] = f"{value / mine:.2f}x" if mine else "n/a"
        records.append(record)
    return records_table(records)


def top_table(operators: dict[str, float]) -> str:
    """Our largest operators by self time: ms per call, share of the total, group."""
    total = sum(operators.values())
    records = [
        {"operator (ours)": f"`{name}`", "ms": f"{seconds * 1e3:.1f}", "share": f"{seconds / total:.1%}"}
        | {"group": operator_group(name)}
        for name, seconds in list(operators.items())[:_TOP_OPERATORS]
    ]
    return records_table(records)


def markdown(report: Report) -> str:
    settings, results = report["settings"], report["results"]
    parts = [
        f"{settings['model']}, {settings['img_size']} px, fp32, eager, {results['device']}; self time per call "
        f"(profiled, {settings['repeats']} calls per side, interleaved)."
    ]
    for workload, profiled_sides in results["workloads"].items():
        parts += [f"**{workload}, batch {profiled_sides['batch']}**", groups_table(profiled_sides["groups"])]
        parts.append(top_table(profiled_sides["operators"]["ours"]))
    return "\n\n".join(parts)


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
