"""Where a pre-training run is: this process's place in a torchrun job, its random state, and checkpoints that a
killed process never leaves half written. Used by pretrain.py."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from common import choose_device

from masked_autoencoder import MaskedAutoencoderViT

STATE_FILE = "training_state.pt"
LINK = "checkpoint"  # the name that always points at the latest complete checkpoint


# ---- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """This process's place in a torchrun job; a lone process is rank 0 of 1."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0


def start_job(device_name: str | None) -> Job:
    """Read torchrun's RANK, WORLD_SIZE and LOCAL_RANK and join its process group: nccl on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(device_name)
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # torchrun's env:// rendezvous
    return Job(int(os.environ.get("RANK", "0")), world_size, device)


def seed_process(seed: int, job: Job) -> None:
    """Seed every generator of this process; each rank its own, so that ranks draw different masks."""
    random.seed(seed + job.rank)
    np.random.seed(seed + job.rank)
    torch.manual_seed(seed + job.rank)


def mean_over_ranks(value: torch.Tensor, job: Job) -> float:
    """A scalar tensor averaged over the processes (gloo has no AVG: sum, then divide)."""
    if job.world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value.item() / job.world_size


def rng_state() -> dict[str, Any]:
    """This process's generators: torch (CPU, and CUDA if any), Python's random and NumPy's."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    numpy = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)  # torch.load-safe
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gathered(value: Any, job: Job) -> list[Any]:
    """Every rank's ``value``, by rank (a collective: every rank calls it)."""
    if job.world_size == 1:
        return [value]
    values: list[Any] = [None] * job.world_size
    dist.all_gather_object(values, value)
    return values


# ---- checkpoints --------------------------------------------------------------------------------


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The training state of a checkpoint folder, for --resume."""
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise ValueError(f"--resume {checkpoint}: no {STATE_FILE} there: expected a checkpoint folder of this script")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_checkpoint(output: Path, model: MaskedAutoencoderViT, state: dict[str, Any]) -> Path:
    """Write ``checkpoint-STEP/`` atomically and point ``checkpoint`` at it; earlier ones are removed.

    Written under a ``.tmp`` name and renamed when complete; the link is replaced by a rename too. A process
    killed at any point leaves ``checkpoint`` at a complete folder, the previous or the new one.
    """
    final = output / f"{LINK}-{state['step']:06d}"
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    torch.save(state, staging / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)  # a folder of the same step, left by an earlier run
    staging.rename(final)
    link = output / f"{LINK}.tmp-link"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name, target_is_directory=True)
    link.replace(output / LINK)
    for old in output.glob(f"{LINK}-*"):
        if old != final:
            doomed = old.rename(old.with_name(old.name + ".tmp-old"))  # never half-deleted under a final name
            shutil.rmtree(doomed)
    return final


def training_state(
    step: int, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, run: dict[str, Any], job: Job
) -> dict[str, Any]:
    """What --resume needs besides the weights (a collective: every rank gives its generators)."""
    rngs = gathered(rng_state(), job)
    return {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rngs, **run}
