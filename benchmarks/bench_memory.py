"""Memory of one pre-training step (forward, backward, AdamW): ours against ViTMAEForPreTraining.

    python benchmarks/bench_memory.py                   # ViT-B/16, 224 px, batch 8, fp32
    python benchmarks/bench_memory.py --quick           # a tiny model, seconds

Sides: ours, ours with the MLPs' GELU recomputed in backward (``set_activation_recompute``), ours with
gradient checkpointing (each block recomputed in backward), and ViTMAEForPreTraining (sdpa). Each runs in a
fresh process of its own (all at once): a warm-up step, then one measured step, both zeroing the gradients
in place, so that their buffers count as static memory. In MB (``harness.step_memory``):
- peak: the process's peak resident memory in the measured step (on a GPU: peak allocated);
- static: the memory after the warm-up step (libraries, weights, gradients, AdamW state);
- step extra: peak - static, what forward and backward add;
- saved: what autograd keeps for backward (saved-tensor hooks; parameters excluded, each storage
  once): exact, whatever the allocator does.
On the CPU, each process's glibc returns freed blocks and the peak is reset through ``/proc`` (see
``harness.in_fresh_processes``). `transformers` is imported by its own side's process only.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import harness
import sides
import torch

SIDES = ("ours", "ours-activation-recompute", "ours-checkpointing", "transformers-sdpa")
REFERENCE = "transformers-sdpa"


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
    return harness.step_memory(step, list(model.parameters()), device)


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=None)
    harness.add_model_flags(parsed, "mae_vit_base_patch16", batch=8)
    harness.add_side_flag(parsed, SIDES)
    return parsed


def run(args: argparse.Namespace) -> dict:
    return harness.in_fresh_processes(__file__, args, SIDES, workers=len(SIDES))  # neither's memory depends on another


def tables(args: argparse.Namespace, results: dict) -> str:
    intro = f"{args.model}, {args.img_size} px, batch {args.batch}, fp32, {args.device}."
    return intro + "\n\n" + harness.markdown_table(harness.memory_rows(results, REFERENCE))


def main(argv: Sequence[str] | None = None) -> dict | None:
    return harness.run_script("memory", build_parser(), argv, harness.QUICK_MODEL, run, tables, measure)


if __name__ == "__main__":
    main()
