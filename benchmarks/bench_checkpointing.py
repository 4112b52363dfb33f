"""Activation memory saved by gradient checkpointing, measured in a fresh process per setting.

    python benchmarks/bench_checkpointing.py                                   # ViT-B/16, 224 px, batch 8
    python benchmarks/bench_checkpointing.py --model mae_vit_tiny_patch16 --batch 2    # a quick check

Two workloads, each with ``set_grad_checkpointing`` off and on:
- ``pretrain``: a MaskedAutoencoderViT step (75% masking: the encoder sees a quarter of the patches);
- ``features``: ``MAEEncoder.forward_features`` on every patch, backward of a scalar (as in fine-tuning).

Each setting runs in its own process: one warm-up step allocates the gradients, then the peak RSS is
reset (``/proc/self/clear_refs``) and one more step is measured. Reported:
- ``saved (MB)``: the activations autograd keeps for backward (tensors packed by the saved-tensor hooks,
  counted once per storage, parameters excluded): exact, and independent of the allocator;
- ``peak RSS delta (MB)``: the process's peak resident memory during the step minus the resident memory
  before it (weights and gradients): what the machine sees, activations plus backward's temporaries;
- ``step (s)``: the duration of that one step; recomputation costs about one more forward per step.
glibc is asked to return every freed block above 64 KiB to the system (``MALLOC_MMAP_THRESHOLD_``),
otherwise the measured step reuses heap pages that the warm-up step kept, and RSS under-counts.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch
from timing import machine

from masked_autoencoder import create_model

_MB = 2**20
_WORKLOADS = ("pretrain", "features")


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


def _step(model: torch.nn.Module, workload: str, images: torch.Tensor, noise: torch.Tensor) -> None:
    if workload == "pretrain":
        model(images, noise=noise).loss.backward()
    else:
        model.forward_features(images).pow(2).mean().backward()


def _saved_bytes(model: torch.nn.Module, workload: str, images: torch.Tensor, noise: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter storages that autograd saves for backward in one step."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _step(model, workload, images, noise)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(size for pointer, size in storages.items() if pointer not in parameters)


def worker(model_name: str, workload: str, checkpointing: bool, batch: int, img_size: int) -> dict[str, object]:
    """One setting, in this process: warm-up (counting saved tensors), then one measured step."""
    torch.manual_seed(0)
    model = create_model(model_name, img_size=img_size, encoder_only=workload == "features").train()
    model.set_grad_checkpointing(checkpointing)
    images = torch.randn(batch, 3, img_size, img_size)
    grid = model.config.grid_size
    noise = torch.rand(batch, grid[0] * grid[1])
    saved = _saved_bytes(model, workload, images, noise)  # also the warm-up: gradients now exist
    model.zero_grad(set_to_none=False)  # keep the gradient buffers: they are not activations
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    _step(model, workload, images, noise)
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    return {"saved_mb": saved / _MB, "peak_delta_mb": (peak - before) / 1024, "step_s": seconds}


def run_setting(args: argparse.Namespace, workload: str, checkpointing: bool) -> dict[str, object]:
    command = [sys.executable, __file__, "--worker", workload, str(int(checkpointing))]
    command += ["--model", args.model, "--batch", str(args.batch), "--img-size", str(args.img_size)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mae_vit_base_patch16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--workloads", nargs="+", choices=_WORKLOADS, default=list(_WORKLOADS))
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        workload, checkpointing = args.worker[0], args.worker[1] == "1"
        print(json.dumps(worker(args.model, workload, checkpointing, args.batch, args.img_size)))
        return
    print(json.dumps(machine()))
    print(f"{args.model}, {args.img_size} px, batch {args.batch}\n")
    rows = ["| workload | checkpointing | saved (MB) | peak RSS delta (MB) | step (s) |", "|---|---|---|---|---|"]
    for workload in args.workloads:
        for checkpointing in (False, True):
            r = run_setting(args, workload, checkpointing)
            label = "on" if checkpointing else "off"
            row = f"| {workload} | {label} | {r['saved_mb']:.0f} | {r['peak_delta_mb']:.0f} | {r['step_s']:.2f} |"
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
