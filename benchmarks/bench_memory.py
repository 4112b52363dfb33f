"""Memory of one pre-training step (forward, backward, AdamW): ours against ViTMAEForPreTraining.

    python benchmarks/bench_memory.py                   # ViT-B/16, 224 px, batch 8, fp32
    python benchmarks/bench_memory.py --quick           # a tiny model, seconds

Sides: ours, ours with the MLPs' GELU recomputed in backward (``set_activation_recompute``), ours with
gradient checkpointing (each block recomputed in backward), and ViTMAEForPreTraining (sdpa). Each runs in a
fresh process of its own (all at once): a warm-up step, then one measured step, both zeroing the gradients
in place, so that their buffers count as static memory. In MB:
- peak: the process's peak resident memory in the measured step (on a GPU: peak allocated);
- static: the memory after the warm-up step (libraries, weights, gradients, AdamW state);
- step extra: peak - static, what forward and backward add;
- saved: what autograd keeps for backward (saved-tensor hooks; parameters excluded, each storage
  once): exact, whatever the allocator does.
On the CPU, glibc is told to return every freed block above 64 KiB (``MALLOC_MMAP_THRESHOLD_``), or
the measured step reuses pages the warm-up kept and the peak under-counts; the peak is reset through
``/proc/self/clear_refs`` (Linux). `transformers` is imported by its own side's process only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import sides
import torch

SIDES = ("ours", "ours-activation-recompute", "ours-checkpointing", "transformers-sdpa")
REFERENCE = "transformers-sdpa"
_MB = 2**20


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1)) / 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as clear_refs:
        clear_refs.write("5")  # the peak (VmHWM) := the current resident memory


def _saved_mb(step: Callable[[], object], parameters: list[torch.Tensor]) -> float:
    """Run ``step``, adding up the distinct non-parameter storages that autograd saves for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    owned = {p.untyped_storage().data_ptr() for p in parameters}
    return sum(size for pointer, size in storages.items() if pointer not in owned) / _MB


def measure(side: str, args: argparse.Namespace) -> dict[str, float]:
    """In this process: build one side, a warm-up step (counting what it saves), then one measured step."""
    device = torch.device(args.device)
    model = sides.build_ours(args.model, device, **harness.model_overrides(args))
    imgs, noise = sides.make_inputs(model, args.batch)
    loss = sides.ours_loss(imgs, noise)
    model.set_grad_checkpointing(side == "ours-checkpointing")
    model.set_activation_recompute(side == "ours-activation-recompute")
    if side == REFERENCE:
        with tempfile.TemporaryDirectory() as folder:
            files = sides.write_transformers_files(model, Path(folder))
            model = sides.load_twin("ViTMAEForPreTraining", files, device, attn_implementation="sdpa").train()
        loss = sides.transformers_loss(imgs, noise)
    step = sides.train_step(model, loss, set_to_none=False)
    saved = _saved_mb(step, list(model.parameters()))
    cuda = device.type == "cuda"
    static = torch.cuda.memory_allocated() / _MB if cuda else _status_mb("VmRSS")
    _reset_peak(device)
    step()
    harness.synchronizer(device)()
    peak = torch.cuda.max_memory_allocated() / _MB if cuda else _status_mb("VmHWM")
    return {"peak": peak, "static": static, "step extra": peak - static, "saved": saved}


def _in_process(side: str, args: argparse.Namespace) -> dict[str, float]:
    """:func:`measure` in a fresh process, glibc returning freed blocks to the system."""
    sizes = [f"--{field.replace('_', '-')}={value}" for field, value in harness.model_overrides(args).items()]
    flags = [f"--model={args.model}", f"--batch={args.batch}", f"--device={args.device}", *sizes]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run([sys.executable, __file__, *flags, f"--side={side}"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory.py --side={side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=None)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=8)
    parsed.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # set in the measuring process
    return parsed


def run(args: argparse.Namespace) -> dict:
    with ThreadPoolExecutor(len(SIDES)) as pool:  # side by side: neither's memory depends on the other
        return dict(zip(SIDES, pool.map(lambda side: _in_process(side, args), SIDES), strict=True))


def tables(args: argparse.Namespace, results: dict) -> str:
    rows = [{"side": side} | {f"{key} (MB)": f"{mb:.0f}" for key, mb in results[side].items()} for side in SIDES]
    for side in SIDES[:-1]:
        ratios = {f"{key} (MB)": f"{mb / results[REFERENCE][key]:.2f}" for key, mb in results[side].items()}
        rows.append({"side": f"{side} / {REFERENCE}"} | ratios)
    intro = f"{args.model}, {args.img_size} px, batch {args.batch}, fp32, {args.device}."
    return intro + "\n\n" + harness.markdown_table(rows)


def main(argv: Sequence[str] | None = None) -> dict | None:
    parsed = build_parser()
    args = parsed.parse_args(argv)
    if args.side:
        print(json.dumps(measure(args.side, args)))
        return None
    return harness.run_script("memory", parsed, argv, harness.QUICK_MODEL, run, tables)


if __name__ == "__main__":
    main()
