"""Peak memory of a training step (forward + backward + AdamW), each setting in a fresh process.

    python benchmarks/bench_memory.py                    # ViT-B/16, 224 px, batch 8: every side, both workloads
    python benchmarks/bench_memory.py --workloads features --batch 8    # gradient checkpointing with all patches
    python benchmarks/bench_memory.py --quick            # a tiny model, seconds (the smoke test)

Workloads and sides (``--sides`` filters them):
- ``pretrain``: the pre-training step of bench_step.py (75% masking), for ``ours``,
  ``ours-checkpointing``, ``transformers-sdpa`` and ``transformers-eager``;
- ``features``: ``forward_features`` on every patch, backward of a scalar (as in fine-tuning), for
  ``ours`` and ``ours-checkpointing``.

Each setting runs in its own process: a warm-up step (the saved tensors are counted there), then one
measured step; both zero the gradients in place (``zero_grad(set_to_none=False)``), so that the
gradient buffers stay allocated and count as static memory, not as the step's.
Reported, in MB:
- ``peak``: the process's peak resident memory (VmHWM) during the measured step, everything included;
- ``static``: the resident memory after the warm-up step: the process (``runtime``: its memory
  before the model was built, libraries included) plus model + gradients + AdamW state
  (``static tensors``: those, counted exactly from the tensors);
- ``step extra``: what forward + backward add on top (peak - static);
- ``saved``: the activations autograd keeps for backward (tensors packed by the saved-tensor hooks,
  counted once per storage, parameters excluded): exact and independent of the allocator;
and ratios ours / transformers-sdpa. On the CPU, glibc is asked to return every freed block above
64 KiB to the system (``MALLOC_MMAP_THRESHOLD_``), otherwise the measured step reuses heap pages that
the warm-up kept and RSS under-counts; the peak is reset through ``/proc/self/clear_refs`` (Linux only).
On a GPU the same quantities come from ``torch.cuda.memory_allocated`` / ``max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from report import Report, add_model_flags, finish, parse, parser, progress
from timing import records_table
from workloads import (
    PRETRAINING_SIDES,
    batch_inputs,
    build_ours,
    features_loss,
    make_optimizer,
    pick_device,
    pretraining_side,
    synchronizer,
    training_step,
)

PART = "memory"
QUICK = {
    "model": "mae_vit_tiny_patch16",
    "img_size": 64,
    "batch": 2,
    "workloads": ["pretrain"],
    "sides": ["ours", "transformers-sdpa"],
    "jobs": 2,
}
WORKLOAD_SIDES = {"pretrain": PRETRAINING_SIDES, "features": ("ours", "ours-checkpointing")}
_REFERENCE = "transformers-sdpa"
_COMPARED = ("peak_mb", "step_extra_mb", "saved_mb")
_MB = 2**20
_MMAP_THRESHOLD = 64 * 1024


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1)) / 1024


class _Meter:
    """Current and peak memory of this process: resident memory on the CPU, allocated memory on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def current(self) -> float:
        return torch.cuda.memory_allocated() / _MB if self.cuda else _status_mb("VmRSS")

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as clear_refs:
            clear_refs.write("5")  # VmHWM := VmRSS

    def peak(self) -> float:
        return torch.cuda.max_memory_allocated() / _MB if self.cuda else _status_mb("VmHWM")


def _saved_bytes(step: Callable[[], object], parameters: Sequence[torch.Tensor]) -> int:
    """Run ``step``, counting the distinct non-parameter storages autograd saves for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    owned = {p.untyped_storage().data_ptr() for p in parameters}
    return sum(size for pointer, size in storages.items() if pointer not in owned)


def _tensor_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the parameters, their gradients and the optimizer state."""
    tensors = list(module.parameters()) + [p.grad for p in module.parameters() if p.grad is not None]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.untyped_storage().nbytes() for t in tensors)


def worker(setting: dict[str, object]) -> dict[str, object]:
    """One setting, in this fresh process: build, warm-up step, then one measured step."""
    device = pick_device(setting["device"])
    if setting["side"].startswith("transformers"):
        import twins  # noqa: F401  (import transformers first: its memory is the runtime's, not the model's)
    meter = _Meter(device)
    runtime = meter.current()
    features = setting["workload"] == "features"
    sizes = {"img_size": setting["img_size"], "mask_ratio": setting["mask_ratio"]}
    ours = build_ours(setting["model"], device, encoder_only=features, **sizes)
    inputs = batch_inputs(ours.config, setting["batch"], device)
    module, loss_fn = pretraining_side(setting["side"], ours)
    del ours  # a side with its own copy of the weights keeps only that copy
    optimizer = make_optimizer(module)
    step = training_step(module, features_loss if features else loss_fn, inputs, optimizer, set_to_none=False)
    saved = _saved_bytes(step, list(module.parameters()))  # also the warm-up step
    static = meter.current()
    meter.reset_peak()
    start = time.perf_counter()
    step()
    synchronizer(device)()
    seconds = time.perf_counter() - start
    peak = meter.peak()
    return {
        **setting,
        "peak_mb": peak,
        "runtime_mb": runtime,
        "static_mb": static,
        "static_tensors_mb": _tensor_bytes(module, optimizer) / _MB,
        "step_extra_mb": peak - static,
        "saved_mb": saved / _MB,
        "step_s": seconds,
    }


def run_setting(setting: dict[str, object]) -> dict[str, object]:
    """:func:`worker` in a fresh process (glibc returning freed blocks); a failure is recorded, not raised."""
    command = [sys.executable, __file__, "--worker", json.dumps(setting)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {**setting, "error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(rows: list[dict[str, object]]) -> None:
    """Add each row's peak, step extra and saved memory relative to transformers-sdpa in the same workload."""
    reference = {row["workload"]: row for row in rows if row["side"] == _REFERENCE and "error" not in row}
    for row in rows:
        other = reference.get(row["workload"])
        if other is not None and "error" not in row:
            row["ratios"] = {key: row[key] / other[key] for key in _COMPARED}


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=None)
    add_model_flags(parsed, batch=8)
    parsed.add_argument("--workloads", nargs="+", choices=list(WORKLOAD_SIDES), default=list(WORKLOAD_SIDES))
    parsed.add_argument("--sides", nargs="+", choices=PRETRAINING_SIDES, default=list(PRETRAINING_SIDES))
    jobs_help = "settings measured at once (the memory does not depend on it, the step time does)"
    parsed.add_argument("--jobs", type=int, default=1, help=jobs_help)
    parsed.add_argument("--worker", help=argparse.SUPPRESS)
    return parsed


def run(args: argparse.Namespace) -> dict[str, object]:
    device = pick_device(args.device)
    shared = {"model": args.model, "batch": args.batch, "img_size": args.img_size, "mask_ratio": args.mask_ratio}
    shared["device"] = str(device)
    settings = [
        {"workload": workload, "side": side, **shared}
        for workload in args.workloads
        for side in WORKLOAD_SIDES[workload]
        if side in args.sides
    ]
    progress(f"memory: {len(settings)} settings, {args.jobs} at a time")
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_setting, settings))
    _ratios(rows)
    return {"device": str(device), "rows": rows}


def _record(row: dict[str, object]) -> dict[str, object]:
    """One table row: MB, and peak / step extra / saved relative to transformers-sdpa."""
    if "error" in row:
        return {"workload": row["workload"], "side": row["side"], "peak": "failed"}
    ratios = row.get("ratios")
    return {
        "workload": row["workload"],
        "side": row["side"],
        "peak": f"{row['peak_mb']:.0f}",
        "static (runtime, tensors)": f"{row['static_mb']:.0f} ({row['runtime_mb']:.0f}, "
        f"{row['static_tensors_mb']:.0f})",
        "step extra": f"{row['step_extra_mb']:.0f}",
        "saved": f"{row['saved_mb']:.0f}",
        "step (s)": f"{row['step_s']:.2f}",
        f"/ {_REFERENCE}": " / ".join(f"{ratios[key]:.2f}" for key in ratios) if ratios else "",
    }


def markdown(report: Report) -> str:
    settings, results = report["settings"], report["results"]
    intro = (
        f"{settings['model']}, {settings['img_size']} px, batch {settings['batch']}, fp32, {results['device']}; MB; "
        f"last column: peak / step extra / saved relative to {_REFERENCE}."
    )
    records = sorted((_record(row) for row in results["rows"]), key=lambda record: -len(record))
    failures = [
        f"- {r['workload']}, {r['side']} failed:\n```\n{r['error']}\n```" for r in results["rows"] if "error" in r
    ]
    return "\n\n".join([intro, records_table(records), *failures])


def main(argv: Sequence[str] | None = None) -> Report | None:
    args = parse(build_parser(), QUICK, argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return None
    return finish(PART, __file__, args, argv, run(args), markdown)


if __name__ == "__main__":
    main()
