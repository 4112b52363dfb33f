"""Pre-train a Masked Autoencoder with the paper's recipe, from scratch or on from published weights, on any images.

    python examples/pretrain.py                                     # offline demo: ~5 min on 2 CPU cores
    python examples/pretrain.py --data ~/scans --in-chans 1 --init facebook/vit-mae-base --accum-iter 8
    python examples/pretrain.py --data ~/tiles --in-chans 13 --show-bands 3 2 1     # .npy or TIFF bands
    torchrun --nproc-per-node 8 examples/pretrain.py --data ~/imagenet/train ...   # one process per GPU
    python examples/pretrain.py --resume runs/pretrain/checkpoint --steps 2000     # --steps is the total

The recipe (He et al., 2021, appendix A.1): AdamW, betas (0.9, 0.95), weight decay 0.05 (none on biases,
norms and tokens); lr = base_lr * total batch / 256 (total batch = --batch-size x processes x --accum-iter),
linear warm-up then cosine decay, set every step; RandomResizedCrop (scale 0.2-1.0) and horizontal flips only.
The target is raw pixels, as for the paper's visualisations; --norm-pix-loss trains on per-patch normalised
pixels, the paper's choice for fine-tuning, whose predictions cannot be shown as pixels.

Data: --data is a folder (flat or nested, class folders optional) or a text file of paths; JPEG, PNG, WebP,
TIFF and .npy (C, H, W) files are found in any letter case (see image_files.py). --holdout of them, chosen
once, are kept out of training for the figures and the PSNR. Unreadable files are skipped with a warning and
counted. The per-channel mean and std are measured on a sample (or given: --mean/--std) and recorded in the
checkpoint's pretrained_cfg, in the data's own units. Without --data it trains on the 17 photographs shipped
inside scikit-image (ImageNet's statistics) and holds out scikit-learn's two sample photographs.

Into --output, rank 0 writes ``checkpoint`` (a link to the latest complete ``checkpoint-STEP/``: the
``save_pretrained`` files plus ``training_state.pt`` for --resume), ``reconstruction-STEP.png`` every --every
steps, ``metrics.jsonl`` (one record a step), ``loss.png``, ``metrics.json`` (the held-out PSNR) and, with
--tensorboard, TensorBoard event files in ``tensorboard/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import transforms
from cli import argument_parser, progress, run_main
from common import (
    PSNR_MASKS,
    Photos,
    Pixels,
    add_model_arguments,
    autocast,
    build_model,
    choose_precision,
    heldout_batch,
    heldout_photos,
    learning_rate,
    optimizer_step,
    reconstruction_psnr,
    sample_photos,
    save_loss_plot,
    save_reconstructions,
    set_learning_rate,
)
from image_files import (
    BadFiles,
    ChannelMismatch,
    ImageFiles,
    NoImages,
    channel_stats,
    find_images,
    is_array_file,
    read_readable,
    record_skipped,
    split,
)
from run_state import (
    LINK,
    Job,
    gathered,
    mean_over_ranks,
    read_state,
    save_checkpoint,
    seed_process,
    set_rng_state,
    start_job,
    training_state,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from transforms import DataConfig

from masked_autoencoder import MaskedAutoencoderViT, param_groups_lrd

LOG_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
METRICS_FILE = "metrics.json"
BETAS = (0.9, 0.95)
NO_WEIGHT_DECAY = ("cls_token", "mask_token")
DECODER = ("decoder_", "mask_token")  # name prefixes of the decoder's parameters (the rest is the encoder)
FIGURE_IMAGES = 10  # held-out images in a reconstruction PNG: the default's two photos, five crops each
SPLIT_SEED = 0  # --data's held-out images never change with --seed
FRESH = dict(img_size=64, patch_size=4, in_chans=3, norm_pix_loss=False, mask_ratio=0.75)  # a fresh model's
THROUGHPUT_STEPS = 10  # steps timed for the one line that compares the data loader with the model
# Settings a checkpoint records and --resume restores (the split, the data order and the lr schedule follow from
# them), with a new run's defaults. warmup_steps None: 5% of --steps.
RECORDED = dict(holdout=10, batch_size=32, accum_iter=1, base_lr=1.5e-2, weight_decay=0.05, warmup_steps=None, seed=0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults are the offline demo."""
    parser = argument_parser(__doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="a folder of images (any depth) or a text file of paths")
    data.add_argument("--holdout", type=int, help="images of --data kept out of training, to measure (default: 10)")
    data.add_argument("--in-chans", type=int, help="channels of the model and the data (default: 3, or --init's)")
    data.add_argument("--mean", type=float, nargs="+", help="per-channel mean (default: measured on --data)")
    data.add_argument("--std", type=float, nargs="+", help="per-channel std (default: measured on --data)")
    data.add_argument("--show-bands", type=int, nargs="+", help="3 channels shown as RGB, or 1 in grey (0 1 2)")
    data.add_argument("--workers", type=int, default=0, help="data-loading processes (use several on GPUs)")
    start = parser.add_argument_group("model")
    start.add_argument("--init", help="start from these weights: any from_pretrained id or path")
    start.add_argument("--resume", type=Path, help="continue the run of this checkpoint folder (its config wins)")
    add_model_arguments(start)
    start.set_defaults(img_size=None, patch_size=None)  # FRESH's, or those of --init
    start.add_argument("--norm-pix-loss", action=argparse.BooleanOptionalAction, help="predict normalised patches")
    start.add_argument("--mask-ratio", type=float, help="default: 0.75, or --init's")
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=int, default=500, help="total optimisation steps, also when resuming")
    # Their defaults are RECORDED's (a resumed run takes the checkpoint's).
    train.add_argument("--batch-size", type=int, help="images per process and micro-batch (default: 32)")
    train.add_argument("--accum-iter", type=int, help="micro-batches accumulated into one step (default: 1)")
    # 33x the paper's 1.5e-4, which is tuned for a batch of 4096 over 800 epochs: at batch 32 it would peak at
    # 1.9e-5, far too slow for a small model trained for minutes.
    # 1.5e-2 over 500 steps beat 5e-3 over 1,000 on the held-out PSNR (+2.87 against +2.65 dB), in half the time.
    train.add_argument("--base-lr", type=float, help="lr for a total batch of 256 (default: 1.5e-2; paper: 1.5e-4)")
    train.add_argument("--weight-decay", type=float, help="(default: 0.05)")
    train.add_argument("--warmup-steps", type=int, help="default: 5%% of --steps (paper: 40 of 800 epochs)")
    train.add_argument("--freeze-encoder-steps", type=int, default=0, help="train only the decoder this long")
    train.add_argument("--max-nonfinite", type=int, default=5, help="stop after this many non-finite losses in a row")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    train.add_argument("--device", help="default: cuda if available, else cpu")
    train.add_argument("--seed", type=int, help="(default: 0)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", type=Path, default=Path("runs/pretrain"), help="where to write (rank 0)")
    out.add_argument("--every", type=int, default=100, help="checkpoint and reconstruction PNG every N steps")
    out.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    return parser.parse_args(argv)


def settle(args: argparse.Namespace, state: dict[str, Any] | None) -> None:
    """Fill the RECORDED settings: a new run's defaults, or the checkpoint's (a differing flag is refused)."""
    for name, default in RECORDED.items():
        given = getattr(args, name)
        if state is None:
            setattr(args, name, default if given is None else given)
        elif given is not None and given != state[name]:
            raise ValueError(
                f"--resume {args.resume} ran with --{name.replace('_', '-')} {state[name]}, not {given}: the data "
                f"order and the lr follow from it; leave the flag out, or start a new run with --init {args.resume}"
            )
        else:
            setattr(args, name, state[name])
    if args.warmup_steps is None:
        args.warmup_steps = args.steps // 20


def check_args(args: argparse.Namespace) -> None:
    """Refuse flags that cannot work together, before anything is read."""
    for name in ("steps", "batch_size", "accum_iter", "every", "max_nonfinite"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.init and args.resume:
        raise ValueError("--init and --resume exclude each other: --resume continues a run, --init starts one")
    if (args.mean is None) != (args.std is None):
        raise ValueError("--mean and --std go together: give both, or neither to measure them on --data")
    if args.show_bands is not None and len(args.show_bands) not in (1, 3):
        raise ValueError(f"--show-bands takes 3 channels (RGB) or 1 (grey), got {args.show_bands}")
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        except ImportError as err:
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from err


# ---- data ---------------------------------------------------------------------------------------


@dataclass
class Data:
    """What a run trains on: the training set, the held-out images, and how to show them."""

    source: str | None  # the resolved --data, None for the sample photos
    found: int
    train: Dataset
    heldout: list[Any]  # PIL images or (C, H, W) tensors
    raw: bool  # arrays in their own units (shown stretched) rather than pictures in [0, 1]
    bad: BadFiles = field(default_factory=lambda: BadFiles({}))


def split_files(data: Path | None, holdout: int) -> tuple[list[Path], list[Path]] | None:
    """The files of --data as (training, held-out), always the same split; None for the sample photos."""
    return None if data is None else split(find_images(data), holdout, SPLIT_SEED)


def load_data(data: Path | None, files: tuple[list[Path], list[Path]] | None, in_chans: int, cfg: DataConfig) -> Data:
    """The training set (random crops and flips of ``cfg``) and the held-out images of --data, or the photos."""
    if data is None or files is None:
        if in_chans != 3:
            raise ValueError(f"--in-chans {in_chans} needs --data: the sample photos are RGB")
        photos = sample_photos(transforms.image_size(cfg))
        return Data(None, len(photos), Photos(photos, transforms.pretrain_transform(cfg)), heldout_photos(), False)
    (train, held), bad = files, BadFiles({})
    heldout = read_readable(held, in_chans, bad)  # a ChannelMismatch here stops the run before training
    if not heldout:
        raise NoImages(f"--data {data}: none of the {len(held)} held-out files could be read: {bad.summary()}")
    dataset = ImageFiles(train, in_chans, transforms.pretrain_transform(cfg))
    arrays = any(map(is_array_file, train + held))
    return Data(str(data.resolve()), len(train) + len(held), dataset, heldout, arrays, bad)


def repeated(dataset: Dataset, times: int) -> Dataset:
    """``dataset`` listed ``times`` over: a handful of images fills batches, each access a new random crop."""
    return Subset(dataset, list(range(len(dataset))) * times)


class Seeded(Dataset):
    """A dataset indexed by (index, seed): each sample's random crop and flip drawn from its own seed.

    The views then depend neither on the worker that reads them nor on where a run was resumed.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


@dataclass(frozen=True)
class Order:
    """The (index, seed) of every sample this rank reads, micro-batch after micro-batch from ``start``, forever.

    Epoch e is a permutation drawn from ``seed + e``, dealt to the ranks in turn; a micro-batch's place follows
    from its number alone, so a resumed run reads exactly what an uninterrupted one would have.
    """

    size: int
    batch_size: int
    rank: int
    world_size: int
    seed: int
    start: int  # micro-batches already read

    @property
    def per_epoch(self) -> int:
        """Micro-batches per epoch and rank (the remainder dropped)."""
        return self.size // self.world_size // self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine, drawn = torch.empty(0, dtype=torch.long), -1
        for micro in itertools.count(self.start):
            epoch, batch = divmod(micro, self.per_epoch)
            if epoch != drawn:
                order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
                mine, drawn = order[self.rank :: self.world_size], epoch
            for slot in range(batch * self.batch_size, (batch + 1) * self.batch_size):
                place = (epoch * self.world_size + self.rank) * self.size + slot  # unique over ranks and epochs
                yield int(mine[slot]), self.seed * 1_000_003 + place


def batches(data: Data, job: Job, args: argparse.Namespace, start: int) -> Iterator[tuple[torch.Tensor, list]]:
    """(images, notes) micro-batches of this rank from micro-batch ``start`` on: notes say which files failed."""
    times = -(-args.batch_size * job.world_size // len(data.train))  # every rank a full batch per epoch
    dataset = repeated(data.train, times)
    order = Order(len(dataset), args.batch_size, job.rank, job.world_size, args.seed, start)
    loader = DataLoader(
        Seeded(dataset),
        args.batch_size,
        sampler=order,
        num_workers=args.workers,
        pin_memory=job.device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    return iter(loader)


def data_cfg(model: MaskedAutoencoderViT, args: argparse.Namespace, train: list[Path] | None) -> dict[str, Any]:
    """The model's ``pretrained_cfg`` with the mean and std of --mean/--std, or measured on the training files of
    --data (``train``), or its own (the sample photos: ImageNet's)."""
    cfg, channels = dict(model.pretrained_cfg), model.config.in_chans
    if args.mean is not None:
        for name in ("mean", "std"):
            if len(getattr(args, name)) != channels:
                raise ValueError(f"--{name} takes {channels} values (--in-chans), got {getattr(args, name)}")
        return {**cfg, "mean": tuple(args.mean), "std": tuple(args.std)}
    if train is None:
        return cfg
    mean, std = channel_stats(train, channels, BadFiles({}))  # unreadable ones are met again, and named, later
    return {**cfg, "mean": mean, "std": std}


def pixel_view(cfg: DataConfig, raw: bool) -> Pixels:
    """The model's input space -> [0, 1] values for figures and PSNR: pictures as they are; arrays stretched,
    each band's mean +- 2 std over [0, 1] (their units have no fixed range)."""
    if raw:
        return lambda imgs: imgs / 4 + 0.5
    return lambda imgs: transforms.denormalize(imgs, cfg)


# ---- model --------------------------------------------------------------------------------------


def load_model(args: argparse.Namespace, state: dict[str, Any] | None) -> tuple[MaskedAutoencoderViT, str | None]:
    """The model of --resume, --init (with a line on what was new) or a fresh one from the flags."""
    given = {
        "img_size": args.img_size,
        "patch_size": args.patch_size,
        "in_chans": args.in_chans,
        "norm_pix_loss": args.norm_pix_loss,
        "mask_ratio": args.mask_ratio,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if state is not None:
        model = MaskedAutoencoderViT.from_pretrained(args.resume, mmap=False)  # copied: the run rewrites its folder
        clashes = {key: value for key, value in given.items() if getattr(model.config, key) != value}
        if clashes:
            raise ValueError(f"--resume {args.resume} trained with other settings than {clashes}: leave them out")
        return model.train(), None
    if args.init is None:
        return build_model(argparse.Namespace(**{**vars(args), **FRESH, **given}), **_settings(FRESH, given)), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MaskedAutoencoderViT.from_pretrained(args.init, strict=False, mmap=False, **given)
        except (OSError, ValueError) as err:
            raise ValueError(f"--init {args.init}: cannot load it: {err}") from err
    notes = "; ".join(str(warning.message) for warning in caught) or "every weight loaded, none new"
    return model.train(), f"--init {args.init}: {notes}"


def _settings(fresh: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The config overrides of a fresh model: the pixel target, the mask ratio and the channels."""
    merged = {**fresh, **given}
    return {key: merged[key] for key in ("norm_pix_loss", "mask_ratio", "in_chans")}


def encoder_parameters(model: MaskedAutoencoderViT) -> list[torch.nn.Parameter]:
    """The parameters that --freeze-encoder-steps holds still: all but the decoder's."""
    return [param for name, param in model.named_parameters() if not name.startswith(DECODER)]


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


# ---- one step -----------------------------------------------------------------------------------


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    imgs: torch.Tensor,
    lr: float,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """One optimisation step of the MAE's loss on one batch at learning rate ``lr`` (:func:`optimizer_step`).
    Returns the loss. The step of digits.py; this script's own is :func:`accumulated_step`."""
    return optimizer_step(optimizer, scaler, lr, lambda: model(imgs).loss, imgs.device.type, dtype)


def accumulated_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    micro_batches: Sequence[torch.Tensor],
    lr: float,
    dtype: torch.dtype | None,
    job: Job,
    frozen: Sequence[torch.nn.Parameter] = (),
) -> tuple[float, bool]:
    """One optimisation step over micro-batches (each (B, C, H, W)) whose gradients add up to the mean loss's.

    Under DDP only the last micro-batch's backward synchronises (``no_sync`` before it). ``frozen`` parameters
    keep their values (their gradients are dropped). A non-finite loss skips the step. Returns the loss,
    averaged over the ranks, and whether the step was taken.
    """
    set_learning_rate(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=micro_batches[0].device)
    for index, imgs in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync():
            with autocast(imgs.device.type, dtype):
                loss = model(imgs).loss / len(micro_batches)
            scaler.scale(loss).backward()
        total += loss.detach().float()
    mean = mean_over_ranks(total, job)
    if not np.isfinite(mean):  # the same verdict on every rank: the mean saw every rank's loss
        optimizer.zero_grad(set_to_none=True)
        return mean, False
    for param in frozen:
        param.grad = None  # AdamW leaves a parameter without a gradient untouched, state and decay included
    scaler.step(optimizer)
    scaler.update()
    return mean, True


# ---- checkpoints --------------------------------------------------------------------------------


def resumed_data(args: argparse.Namespace, state: dict[str, Any]) -> Path | None:
    """The data a resumed run trains on: the checkpoint's; another --data is refused."""
    recorded = state["data"]
    if args.data is not None and str(args.data.resolve()) != recorded:
        raise ValueError(
            f"--resume {args.resume} trained on {recorded or 'the sample photos'}, not --data {args.data}: "
            f"leave --data out to continue on the same data, or start a new run with --init {args.resume}"
        )
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes != state["world_size"]:
        raise ValueError(
            f"--resume {args.resume} ran in {state['world_size']} process(es), not {processes}: the data order and "
            f"the lr follow from it; resume with as many, or start a new run with --init {args.resume}"
        )
    return None if recorded is None else Path(recorded)


# ---- outputs ------------------------------------------------------------------------------------


def reconstruction_path(output: Path, step: int) -> Path:
    """Where the reconstruction PNG of ``step`` goes."""
    return output / f"reconstruction-{step:06d}.png"


def plot_loss_log(output: Path) -> Path:
    """Plot the run's ``metrics.jsonl`` into ``loss.png``."""
    records = [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]
    finite = [record for record in records if record["step_taken"]]
    return save_loss_plot([r["step"] for r in finite], [r["loss"] for r in finite], output / PLOT_FILE)


class Log:
    """``metrics.jsonl`` (and TensorBoard's event files): one record a step."""

    def __init__(self, output: Path, start: int, tensorboard: bool) -> None:
        """A log that continues from step ``start``: records of later steps (of a run stopped after its last
        checkpoint) are dropped, so that each step appears once."""
        self.path = output / LOG_FILE
        lines = self.path.read_text().splitlines() if start and self.path.exists() else []
        self.path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= start))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

            self.writer = SummaryWriter(output / "tensorboard")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (``step`` = steps done) to the log."""
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        """Flush the event files."""
        if self.writer is not None:
            self.writer.close()


def measure(
    args: argparse.Namespace, model: MaskedAutoencoderViT, heldout: torch.Tensor, view: Any, secs: float
) -> str:
    """The held-out PSNR of the reconstruction and of the mean-colour fill, written to ``metrics.json``; one line."""
    psnr = reconstruction_psnr(model, heldout, seed=args.seed, to_pixels=view)
    metrics = {
        "heldout_images": len(heldout),
        "masks_per_image": PSNR_MASKS,
        "mask_ratio": model.config.mask_ratio,
        "norm_pix_loss": model.config.norm_pix_loss,
        "psnr_reconstruction_db": psnr["reconstruction"],
        "psnr_mean_fill_db": psnr["mean_fill"],
        "psnr_gain_db": psnr["reconstruction"] - psnr["mean_fill"],
        "train_seconds": secs,
    }
    (args.output / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return (
        f"held-out PSNR over the removed patches ({len(heldout)} images x {PSNR_MASKS} masks): "
        f"reconstruction {psnr['reconstruction']:.2f} dB, mean-colour fill {psnr['mean_fill']:.2f} dB, "
        f"gain {metrics['psnr_gain_db']:+.2f} dB"
    )


def describe_run(model: MaskedAutoencoderViT, job: Job, args: argparse.Namespace, peak_lr: float, dtype: Any) -> str:
    """What is being trained, on what, and how: the lines a run starts with."""
    config, millions = model.config, sum(param.numel() for param in model.parameters()) / 1e6
    total = args.batch_size * job.world_size * args.accum_iter
    return "\n".join(
        [
            f"{millions:.1f}M parameters, images {config.image_hw[0]}x{config.image_hw[1]}x{config.in_chans}, "
            f"patch {config.patch_size}, norm_pix_loss={config.norm_pix_loss}, device {job.device}, "
            f"precision {str(dtype).removeprefix('torch.') if dtype else 'fp32'}",
            f"total batch {total} = batch {args.batch_size} x {job.world_size} process(es) x {args.accum_iter} "
            f"accumulated; lr = base lr {args.base_lr:.2e} x {total} / 256 = {peak_lr:.2e}",
            f"mean {_rounded(model.pretrained_cfg['mean'])}, std {_rounded(model.pretrained_cfg['std'])}",
        ]
    )


def _rounded(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.4g}" for value in values) + ")"


def throughput_line(waited: float, computed: float, images: int) -> str:
    """The data loader's images/s against the model's, from the first steps' timings."""
    loader, step = images / max(waited, 1e-9), images / max(computed, 1e-9)
    verdict = "the model waits for data: raise --workers" if loader < step else "the loader keeps up"
    return f"data loader {loader:.0f} images/s, model step {step:.0f} images/s: {verdict}"


def nonfinite_advice(count: int, step: int) -> str:
    """Why a run stopped after ``count`` non-finite losses in a row, and what to try."""
    return (
        f"stopped at step {step}: {count} non-finite losses in a row. Try a lower --base-lr, --precision bf16 or "
        f"fp32 instead of fp16, a longer --warmup-steps, or check the data (NaN or inf values, --mean/--std)"
    )


def summary(args: argparse.Namespace, losses: list[float], seconds: float, data: Data, nonfinite: int) -> str:
    """What the run did and where its files are."""
    lines = [f"nothing to do: the checkpoint is at step {args.steps}"]
    if losses:
        ends = max(1, min(20, len(losses) // 4))  # averages of a few steps: single losses are noisy
        first, last = statistics.mean(losses[:ends]), statistics.mean(losses[-ends:])
        lines = [f"loss {first:.4f} (mean of the first {ends} steps) -> {last:.4f} (of the last {ends})"]
    return "\n".join(
        [
            *lines,
            f"non-finite losses (steps skipped): {nonfinite}",
            data.bad.summary(),
            f"wall time: {seconds:.0f} s",
            f"checkpoint: {args.output / LINK}",
            f"reconstruction: {reconstruction_path(args.output, args.steps)}",
            f"log: {args.output / LOG_FILE}, plot: {args.output / PLOT_FILE}",
            f"metrics: {args.output / METRICS_FILE}",
        ]
    )


# ---- the run ------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, job: Job) -> tuple[MaskedAutoencoderViT, dict[str, Any] | None, Data, list[str]]:
    """Everything that can fail on a bad flag or file, before any training: settings, model, statistics, data."""
    state = read_state(args.resume) if args.resume else None
    settle(args, state)
    check_args(args)
    source = resumed_data(args, state) if state else args.data
    seed_process(args.seed, job)  # a fresh model's initial weights (DDP then copies rank 0's to every rank)
    model, note = load_model(args, state)
    try:
        files = split_files(source, args.holdout)
        if state is None:
            model.pretrained_cfg = data_cfg(model, args, files and files[0])
        data = load_data(source, files, model.config.in_chans, model.pretrained_cfg)
    except ChannelMismatch as err:
        raise ValueError(f"{err} (pictures convert to 1 or 3 channels; set --in-chans to the files' bands)") from err
    lines = [note] if note else []
    if data.source is not None:
        lines.append(f"found {data.found} images in {source}")
    if state is not None:
        lines.append(f"resumed from step {state['step']} on {data.source or 'the sample photos'}")
        data.bad.reasons.update(state["bad_files"])
    trained = len(files[0]) if files else len(data.train)
    lines.append(f"training on {trained} images, {len(data.heldout)} held out")
    if data.bad.reasons:
        lines.append(data.bad.summary())
    return model, state, data, lines


@dataclass
class Counters:
    """What a run counts across steps and resumes."""

    nonfinite: int = 0  # steps skipped for a non-finite loss
    in_a_row: int = 0  # of them, the latest consecutive ones
    waited: float = 0.0  # seconds waiting for data in the first THROUGHPUT_STEPS steps
    computed: float = 0.0  # seconds of model steps in them


def save(
    args: argparse.Namespace,
    job: Job,
    model: MaskedAutoencoderViT,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step: int,
    run: dict[str, Any],
    bad: BadFiles,
    counters: Counters,
) -> Path | None:
    """Checkpoint at ``step`` (a collective: every rank's generators and skipped files go into it); rank 0 writes."""
    for reasons in gathered(bad.reasons, job):
        bad.reasons.update(reasons)
    state = training_state(step, optimizer, scaler, run, job) | {"bad_files": bad.reasons}
    state |= {"nonfinite": counters.nonfinite, "in_a_row": counters.in_a_row}
    return save_checkpoint(args.output, model, state) if job.is_main else None


def report_step(bar: Any, log: Log, record: dict[str, Any], counters: Counters, skipped_files: int) -> None:
    """Show a step's loss, lr and images/s on the progress bar, log it, and say when it was skipped."""
    loss, lr, speed = record["loss"], record["lr"], record["images_per_s"]
    bar.set_postfix({"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "img/s": f"{speed:.1f}"})  # in this order
    log.write(record | {"nonfinite_steps": counters.nonfinite, "skipped_files": skipped_files})
    if not record["step_taken"]:
        bar.write(f"step {record['step']}: non-finite loss ({loss}), step skipped ({counters.in_a_row} in a row)")


def main(argv: list[str] | None = None) -> None:
    """Pre-train, checkpoint, show reconstructions as the loss falls, and measure them on held-out images."""
    began = time.perf_counter()
    args = parse_args(argv)
    job = start_job(args.device)
    model, state, data, lines = prepare(args, job)
    channels = model.config.in_chans
    bands = args.show_bands or (list(range(3)) if channels >= 3 else [0])
    if not all(0 <= band < channels for band in bands):
        raise ValueError(f"--show-bands {bands}: the model has channels 0 to {channels - 1}")
    model.to(job.device)
    cfg = model.pretrained_cfg
    view = pixel_view(cfg, data.raw)
    heldout = heldout_batch(data.heldout, model.config.image_hw, cfg).to(job.device)
    preview = heldout[:FIGURE_IMAGES]

    total_batch = args.batch_size * job.world_size * args.accum_iter
    peak_lr = args.base_lr * total_batch / 256
    dtype = choose_precision(args.precision, job.device)
    optimizer, scaler = make_optimizer(model, args.weight_decay, peak_lr, dtype)
    counters, start = Counters(), 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved by a run without fp16
            scaler.load_state_dict(state["scaler"])
        start, counters.nonfinite, counters.in_a_row = state["step"], state["nonfinite"], state["in_a_row"]
    stream = batches(data, job, args, start * args.accum_iter)
    if state is not None:
        set_rng_state(state["rng"][job.rank])
    ddp_model = DistributedDataParallel(model) if job.world_size > 1 else model
    run = {name: getattr(args, name) for name in RECORDED}
    run |= {"data": data.source, "files": data.found, "world_size": job.world_size}
    log = None
    if job.is_main:
        print("\n".join([describe_run(model, job, args, peak_lr, dtype), *lines]), flush=True)
        args.output.mkdir(parents=True, exist_ok=True)
        log = Log(args.output, start, tensorboard=args.tensorboard)
        if state is None:
            path = reconstruction_path(args.output, 0)
            save_reconstructions(model, preview, path, seed=args.seed, to_pixels=view, bands=bands)

    losses: list[float] = []
    frozen = encoder_parameters(model)
    bar = progress(range(start, args.steps), total=args.steps, initial=start, disable=not job.is_main)
    for step in bar:
        lr = learning_rate(step, peak=peak_lr, warmup_steps=args.warmup_steps, total_steps=args.steps)
        tick = time.perf_counter()
        micro, notes = [], []
        for _ in range(args.accum_iter):
            imgs, note = next(stream)
            micro.append(imgs.to(job.device, non_blocking=True))
            notes.extend(note)
        tock = time.perf_counter()
        hold = frozen if step < args.freeze_encoder_steps else ()
        loss, taken = accumulated_step(ddp_model, optimizer, scaler, micro, lr, dtype, job, hold)
        done = time.perf_counter()
        for reason in record_skipped(notes, data.bad):
            bar.write(f"warning (rank {job.rank}): skipped {reason}")
        counters.nonfinite += not taken
        counters.in_a_row = 0 if taken else counters.in_a_row + 1
        if step - start < THROUGHPUT_STEPS:
            counters.waited, counters.computed = counters.waited + tock - tick, counters.computed + done - tock
        if job.is_main:
            losses += [loss] if taken else []
            record = {"step": step + 1, "loss": loss, "lr": lr, "images_per_s": total_batch / max(done - tick, 1e-9)}
            report_step(bar, log, record | {"step_taken": taken}, counters, len(data.bad.reasons))
            if step - start + 1 == min(THROUGHPUT_STEPS, args.steps - start):
                timed = total_batch * (step - start + 1)
                bar.write(throughput_line(counters.waited, counters.computed, timed))
        if counters.in_a_row >= args.max_nonfinite:
            raise SystemExit(nonfinite_advice(counters.in_a_row, step + 1))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            checkpoint = save(args, job, model, optimizer, scaler, step + 1, run, data.bad, counters)
            if job.is_main:
                png = reconstruction_path(args.output, step + 1)
                save_reconstructions(model, preview, png, seed=args.seed, to_pixels=view, bands=bands)
                plot_loss_log(args.output)
                bar.write(f"step {step + 1}: loss {loss:.4f}, wrote {checkpoint} and {png}")
    bar.close()
    if job.is_main:
        log.close()
        print(measure(args, model, heldout, view, time.perf_counter() - began))
        print(summary(args, losses, time.perf_counter() - began, data, counters.nonfinite))
    if job.world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    run_main(main)
