"""Data-parallel training on CPU: DDP and FSDP2 over gloo, two processes on loopback, against one process.

One pair of processes runs both setups, and examples/pretrain.py's seeding and accumulated step; each rank saves
its results to a file, and the tests compare them with a single process that sees the whole batch and the whole noise.

Why the two must agree: MAE's loss is ``sum(loss * mask) / sum(mask)`` per process, a mean over that
process's removed patches. Every row removes L - K patches, so two equal halves of the batch have the
same count M, and the mean of the two processes' gradients (what DDP's all-reduce and FSDP's
reduce-scatter compute) is the gradient of (S_0 / M + S_1 / M) / 2 = (S_0 + S_1) / 2M: the full
batch's loss. Unequal halves (or a caller's masks with other counts) would weight patches differently.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from masked_autoencoder import MaskedAutoencoderViT

WORLD_SIZE = 2
BATCH = 4
LR = 0.1
LENGTH = TINY.grid_size[0] * TINY.grid_size[1]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch and its masking noise: (BATCH, 3, 32, 32), (BATCH, L)."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=generator), torch.rand(BATCH, LENGTH, generator=generator)


def _model() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).train()


def _step(model: torch.nn.Module, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One SGD step; returns the loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss = model(images, noise=noise).loss
    loss.backward()
    optimizer.step()
    return loss.detach()


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: FSDP2 holds DTensor shards, gathered here (a collective: every rank calls it)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _run_ddp(images: torch.Tensor, noise: torch.Tensor) -> dict[str, object]:
    model = DistributedDataParallel(_model())
    loss = _step(model, images, noise)
    return {
        "loss": loss,
        "grads": {name: p.grad.clone() for name, p in model.module.named_parameters()},
        "params": {name: p.detach().clone() for name, p in model.module.named_parameters()},
    }


def _run_fsdp2(images: torch.Tensor, noise: torch.Tensor) -> dict[str, object]:
    model = _model()
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    blocks = [*model.blocks, *model.decoder_blocks]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    loss = _step(model, images, noise)
    local_shapes = {name: tuple(p.to_local().shape) for name, p in model.named_parameters()}
    return {
        "loss": loss,
        "grads": {name: _full(p.grad) for name, p in model.named_parameters()},
        "params": {name: _full(p.detach()) for name, p in model.named_parameters()},
        "wrapped": [isinstance(m, FSDPModule) for m in (*blocks, model)],
        "local_shapes": local_shapes,
    }


class _PixelNoise(torch.nn.Module):
    """The MAE of :func:`_model` with each image's masking noise read from its own pixels: the same masks however
    a batch is cut into micro-batches or ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.mae = _model()

    def forward(self, imgs: torch.Tensor) -> object:
        """imgs: (B, 3, 32, 32) -> the MAE's output."""
        return self.mae(imgs, noise=imgs.flatten(1)[:, :LENGTH])


def _pretrain_step(
    pretrain: ModuleType, model: torch.nn.Module, micro_batches: list[torch.Tensor], job: object
) -> None:
    """examples/pretrain.py's step (AdamW, lr LR, fp32) over ``micro_batches``, in the process ``job``."""
    optimizer, scaler = pretrain.make_optimizer(_mae(model), 0.05, LR, None)
    pretrain.accumulated_step(model, optimizer, scaler, micro_batches, LR, None, job)


def _mae(model: torch.nn.Module) -> MaskedAutoencoderViT:
    """The MAE inside a (DDP-wrapped) :class:`_PixelNoise`."""
    return (model.module if isinstance(model, DistributedDataParallel) else model).mae


def _run_pretrain(rank: int, images: torch.Tensor) -> dict[str, object]:
    """pretrain.py on this rank's half: the mask its seeding draws, and its step with 1 and 2 micro-batches."""
    pretrain, run_state = importlib.import_module("pretrain"), importlib.import_module("run_state")
    model, job = _model(), run_state.Job(rank, WORLD_SIZE, torch.device("cpu"))
    run_state.seed_process(0, job)
    result: dict[str, object] = {"mask": model(torch.zeros(2, 3, 32, 32)).mask}  # the same images on every rank
    calls: list[int] = []

    # Not annotated: under `from __future__ import annotations` DDP would read the bucket's type as a string.
    def counting_hook(state, bucket):
        calls.append(bucket.index())
        return allreduce_hook(state, bucket)

    for accumulation in (1, 2):
        ddp = DistributedDataParallel(_PixelNoise())
        ddp.register_comm_hook(None, counting_hook)
        calls.clear()
        _pretrain_step(pretrain, ddp, list(images.chunk(accumulation)), job)
        grads = {name: p.grad.clone() for name, p in _mae(ddp).named_parameters()}
        result[f"accumulate{accumulation}"] = {"grads": grads, "synchronisations": len(calls)}
    return result


def _worker(rank: int, port: int, folder: str) -> None:
    """One rank, as torchrun would start it: environment variables, then init_process_group."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_RANK=str(rank),
        GLOO_SOCKET_IFNAME="lo",  # gloo's pairs on loopback too, not on the host name's interface
    )
    torch.set_num_threads(1)  # two processes on two cores
    # A rank that fails inside a collective makes the other wait: the timeout turns that hang into an error.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        images, noise = _batch()
        half = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        setups = (("ddp", _run_ddp), ("fsdp2", _run_fsdp2), ("pretrain", lambda i, _: _run_pretrain(rank, i)))
        for name, run in setups:
            try:
                result = run(images[half], noise[half])
            except Exception as error:  # the test then fails with this message, not with a bare exit code
                result = {"error": f"{type(error).__name__}: {error}"}
            torch.save(result, Path(folder) / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, object]]]:
    """Per setup (ddp, fsdp2), the results of each rank."""
    folder = tmp_path_factory.mktemp("distributed")
    # spawn, not fork: a fork after earlier tests ran autograd (whose worker threads a child cannot inherit)
    # aborts on newer torch. The ranks re-import torch and this module instead, a few seconds.
    sys.path.insert(0, str(EXAMPLES))  # the ranks inherit it: they import examples/pretrain.py
    try:
        mp.start_processes(_worker, args=(_free_loopback_port(), str(folder)), nprocs=WORLD_SIZE, start_method="spawn")
    finally:
        sys.path.remove(str(EXAMPLES))
    return {
        name: [torch.load(folder / f"{name}-rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
        for name in ("ddp", "fsdp2", "pretrain")
    }


@pytest.fixture(scope="module")
def single_process() -> dict[str, object]:
    """The reference: one process, the whole batch, the whole noise, one SGD step."""
    model = _model()
    images, noise = _batch()
    loss = _step(model, images, noise)
    return {
        "loss": loss,
        "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
        "params": {name: p.detach().clone() for name, p in model.named_parameters()},
    }


def _assert_matches_single_process(ranks: list[dict[str, object]], single: dict[str, object]) -> None:
    for rank, result in enumerate(ranks):
        assert "error" not in result, f"rank {rank}: {result.get('error')}"
        for kind in ("grads", "params"):
            assert result[kind].keys() == single[kind].keys()
            for name, expected in single[kind].items():
                torch.testing.assert_close(
                    result[kind][name], expected, rtol=0.0, atol=1e-6, msg=lambda m, k=kind, n=name: f"{k} {n}: {m}"
                )
    # Each rank's loss is its half's mean; their mean is the whole batch's loss.
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / len(ranks), single["loss"], rtol=1e-6, atol=1e-7)


def test_ddp_gradients_on_half_batches_equal_one_process_on_the_whole_batch(results, single_process):
    _assert_matches_single_process(results["ddp"], single_process)


def test_fsdp2_shards_every_block_and_the_root_and_matches_one_process(results, single_process):
    for result in results["fsdp2"]:
        assert "error" not in result, result.get("error")
        assert all(result["wrapped"])
        # Each rank holds half of every parameter's first dimension (padded when it is odd or 1).
        assert result["local_shapes"]["blocks.0.attn.qkv.weight"] == (3 * TINY.embed_dim // WORLD_SIZE, TINY.embed_dim)
    _assert_matches_single_process(results["fsdp2"], single_process)


def test_pretrain_ranks_draw_different_masks(results):
    ranks = results["pretrain"]
    assert all("error" not in result for result in ranks), [result.get("error") for result in ranks]
    assert not torch.equal(ranks[0]["mask"], ranks[1]["mask"])


def test_pretrain_accumulation_under_ddp_equals_one_large_batch_with_one_synchronisation(results):
    ranks = results["pretrain"]
    assert all("error" not in result for result in ranks), [result.get("error") for result in ranks]
    sys.path.insert(0, str(EXAMPLES))
    try:
        pretrain, run_state = importlib.import_module("pretrain"), importlib.import_module("run_state")
    finally:
        sys.path.remove(str(EXAMPLES))
    model = _PixelNoise()
    images, _ = _batch()
    _pretrain_step(pretrain, model, [images], run_state.Job(0, 1, torch.device("cpu")))
    for result in ranks:
        # no_sync before the last micro-batch: as many all-reduces with two micro-batches as with one.
        assert result["accumulate2"]["synchronisations"] == result["accumulate1"]["synchronisations"]
        for name, param in model.mae.named_parameters():
            torch.testing.assert_close(result["accumulate2"]["grads"][name], param.grad, rtol=1e-5, atol=1e-7)
