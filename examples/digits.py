"""What linear_probe.py and finetune.py share: scikit-learn's digits, a small MAE pre-trained on them, the training.

The data set: ``sklearn.datasets.load_digits`` (1,797 grey 8 x 8 images of 10 digits, inside scikit-learn's
wheel), upsampled bilinearly to the model's size, repeated to 3 channels and normalised with the ImageNet
mean and std, with a fixed stratified split: 1,437 training and 360 test images.

Without ``--checkpoint`` the scripts use an MAE pre-trained on the training images only (no labels) with
pretrain.py's recipe and step, cached in ``--output`` so that the second script reuses the first's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from cli import progress
from common import (
    PRECISIONS,
    choose_device,
    choose_precision,
    learning_rate,
    normalize,
    optimizer_step,
    precision_name,
)
from pretrain import make_optimizer, train_step
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from masked_autoencoder import MAEConfig, MAEEncoder, MaskedAutoencoderViT, MaskingStrategy, model_config

Model = TypeVar("Model", bound=MAEEncoder)
NUM_CLASSES = 10
TEST_FRACTION = 0.2  # 360 test images, 36 of each digit
SPLIT_SEED = 0  # the split never changes with --seed: every run tests on the same images
# The pre-trained MAE: a ViT narrower (64) and shallower (6 blocks) than mae_vit_tiny, on 32 x 32 images in
# patches of 8 (16 patches, each 2 x 2 of the original pixels), to pre-train in about 3 CPU minutes.
DIGITS_MAE = dict(
    img_size=32,
    patch_size=8,
    embed_dim=64,
    depth=6,
    num_heads=4,
    decoder_embed_dim=64,
    decoder_depth=2,
    norm_pix_loss=True,
)
# 33x the paper's 1.5e-4 (tuned for batch 4096 over 800 epochs): measured here, 1.5e-3 ends at a higher loss.
PRETRAIN_BASE_LR = 5e-3
PRETRAIN_WEIGHT_DECAY = 0.05
SHIFT = 0.15  # the augmentation: scale by up to +-15%, shift by up to 15% of the half-side (2.4 px at 32 px)
EVAL_BATCH = 256
LOSS_ENDS = 20  # losses reported as means of the first and last (up to) 20 steps: single losses are noisy
CACHE_FOLDER, CACHE_RECORD = "mae", "pretraining.json"


@dataclass(frozen=True)
class Digits:
    """Digit images as [0, 1] pixels (N, 1, H, W) and their labels (N,)."""

    pixels: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_split(size: tuple[int, int]) -> tuple[Digits, Digits]:
    """scikit-learn's digits upsampled (bilinear) to ``size``, split stratified into (train, test)."""
    values, labels = load_digits(return_X_y=True)
    pixels = torch.tensor(values, dtype=torch.float32).view(-1, 1, 8, 8) / 16  # grey levels 0-16
    pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
    train, test = train_test_split(
        range(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    labels = torch.tensor(labels)
    return Digits(pixels[train], labels[train]), Digits(pixels[test], labels[test])


def model_input(pixels: torch.Tensor) -> torch.Tensor:
    """Grey [0, 1] pixels (B, 1, H, W) as the model's input: 3 channels, ImageNet mean and std. -> (B, 3, H, W)."""
    return normalize(pixels.expand(-1, 3, -1, -1))


def augment(pixels: torch.Tensor) -> torch.Tensor:
    """A random scale and shift per image, on a black background (no flips: a flipped digit is another shape).

    pixels: (B, 1, H, W) -> (B, 1, H, W). The digits' stand-in for the paper's RandomResizedCrop.
    """
    batch = pixels.shape[0]
    theta = torch.zeros(batch, 2, 3, device=pixels.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 + SHIFT * (2 * torch.rand(batch, device=pixels.device) - 1)
    theta[:, :, 2] = SHIFT * (2 * torch.rand(batch, 2, device=pixels.device) - 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, align_corners=False)


def require_batch_fits(batch_size: int, count: int, name: str = "batch_size") -> None:
    """Raise ``ValueError`` unless a batch of ``batch_size`` fits in ``count`` training images."""
    if batch_size > count:
        raise ValueError(f"{name} must be at most the {count} training images, got {batch_size}")


def shuffled_batches(count: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of indices into ``count`` items, endlessly: each epoch a new shuffle, its short last batch dropped."""
    require_batch_fits(batch_size, count)  # checked now, not when the first batch is drawn
    epochs = (torch.randperm(count).split(batch_size)[: count // batch_size] for _ in itertools.count())
    return itertools.chain.from_iterable(epochs)


def steps_for(epochs: float, count: int, batch_size: int) -> int:
    """The optimisation steps of ``epochs`` passes over ``count`` items (at least one)."""
    return max(1, round(epochs * (count // batch_size)))


# ---- pre-training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainSettings:
    """The settings of a digits pre-training run (one part of what a cached MAE must match to be reused)."""

    steps: int
    batch_size: int
    seed: int
    base_lr: float = PRETRAIN_BASE_LR
    weight_decay: float = PRETRAIN_WEIGHT_DECAY


def pretrain_digits(
    config: MAEConfig,
    train: Digits,
    settings: PretrainSettings,
    device: torch.device,
    dtype: torch.dtype | None,
    masking: MaskingStrategy | None = None,
) -> tuple[MaskedAutoencoderViT, list[float]]:
    """Pre-train a fresh MAE on the training images, without their labels; returns it and its losses.

    pretrain.py's recipe and step: AdamW, betas (0.9, 0.95), lr = base_lr * batch / 256, warm-up (5% of the
    steps) then cosine, normalised-pixel targets; random scales and shifts in place of its crops and flips.
    ``masking``: the model's strategy (default: random masking at the config's ratio).
    """
    torch.manual_seed(settings.seed)
    model = MaskedAutoencoderViT(config, masking=masking).to(device)
    peak_lr = settings.base_lr * settings.batch_size / 256
    optimizer, scaler = make_optimizer(model, settings.weight_decay, peak_lr, dtype)
    pixels, losses = train.pixels.to(device), []
    batches = zip(range(settings.steps), shuffled_batches(len(train), settings.batch_size), strict=False)
    for step, batch in progress(batches, total=settings.steps, desc="pre-training on digits"):
        lr = learning_rate(step, peak=peak_lr, warmup_steps=settings.steps // 20, total_steps=settings.steps)
        imgs = model_input(augment(pixels[batch]))
        losses.append(train_step(model, optimizer, scaler, imgs, lr, dtype).item())
    return model.eval(), losses


def pretrained_weights(args: argparse.Namespace) -> Path:
    """``--checkpoint``, else the MAE pre-trained on the training digits, cached in ``--output``."""
    if args.checkpoint is not None:
        return args.checkpoint
    settings = PretrainSettings(args.pretrain_steps, args.pretrain_batch_size, args.seed)
    folder = args.output / CACHE_FOLDER
    cached_digits_mae(folder, DIGITS_MAE, settings, device=args.device, precision=args.precision)
    return folder


def cached_digits_mae(
    folder: Path,
    model_overrides: dict[str, Any],
    settings: PretrainSettings,
    *,
    masking: MaskingStrategy | None = None,
    device: str | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Make ``folder`` hold an MAE (``model_config("mae_vit_tiny", **model_overrides)``) pre-trained on the digits.

    Reused when it was pre-trained with the same model, settings, masking (its repr; None: the config's
    random masking) and precision (as chosen on ``device``); else pre-trained on the training digits and
    saved there. Prints what it did and how long it took; returns its record (``pretraining.json``).
    """
    record_path = folder / CACHE_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    on = choose_device(device)
    dtype = choose_precision(precision, on)
    wanted = dict(
        settings=asdict(settings),
        model=model_overrides,
        masking=None if masking is None else repr(masking),
        precision=precision_name(dtype),
    )
    if all(record.get(key) == value for key, value in wanted.items()):
        print(f"reusing the MAE pre-trained on digits in {folder}: {describe_pretraining(record)}")
        return record
    began = time.perf_counter()
    config = model_config("mae_vit_tiny", **model_overrides)
    train, _ = load_digits_split(config.image_hw)
    mae, losses = pretrain_digits(config, train, settings, on, dtype, masking)
    ends = max(1, min(LOSS_ENDS, len(losses) // 4))
    record = dict(
        wanted,
        loss_steps_averaged=ends,
        loss_first=statistics.mean(losses[:ends]),
        loss_last=statistics.mean(losses[-ends:]),
        seconds=time.perf_counter() - began,
    )
    mae.save_pretrained(folder)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"pre-trained an MAE on {len(train)} training digits, saved in {folder}: {describe_pretraining(record)}")
    return record


def describe_pretraining(record: dict[str, Any]) -> str:
    """One line about a cached pre-training run: steps, loss at both ends, wall time."""
    settings = record["settings"]
    ends = record["loss_steps_averaged"]
    losses = f"loss {record['loss_first']:.4f} -> {record['loss_last']:.4f} (means of the first and last {ends} steps)"
    return f"{settings['steps']} steps of batch {settings['batch_size']}, {losses}, {record['seconds']:.0f} s"


# ---- command line -------------------------------------------------------------------------------


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` greater than zero."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text}")
        return value

    return parse


def existing_path(text: str) -> Path:
    """An argparse type: a file or folder that exists (checked before any work starts)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(
            f"{text} does not exist: expected an MAE's folder or weights file (save_pretrained's, pretrain.py's "
            "checkpoint/, an official .pth)"
        )
    return path


def parse_digits_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, *, epochs: float, batch_size: int, lr: float, lr_help: str
) -> argparse.Namespace:
    """Add the flags both scripts take and parse ``argv``; ``epochs``, ``batch_size``, ``lr`` default their training.

    Batch sizes are checked against the training split here, before any pre-training.
    """
    parser.add_argument(
        "--checkpoint",
        type=existing_path,
        help="a pre-trained MAE, any folder or file that from_pretrained reads (default: pre-train one on the digits)",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/digits"), help="where the digits MAE is cached")
    parser.add_argument(
        "--pretrain-steps", type=positive(int), default=1600, help="pre-training steps of the digits MAE"
    )
    parser.add_argument("--pretrain-batch-size", type=positive(int), default=128, help="images per pre-training step")
    parser.add_argument("--epochs", type=positive(float), default=epochs, help="passes over the training images")
    parser.add_argument("--batch-size", type=positive(int), default=batch_size, help="images per training step")
    parser.add_argument("--lr", type=positive(float), default=lr, help=lr_help)
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="autocast precision (auto: what the hardware runs fast)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds pre-training, inits, batches and augmentation")
    args = parser.parse_args(argv)
    count = len(load_digits_split((8, 8))[0])
    for flag, value in (("--batch-size", args.batch_size), ("--pretrain-batch-size", args.pretrain_batch_size)):
        try:
            require_batch_fits(value, count, flag)
        except ValueError as err:
            parser.error(str(err))
    return args


def load_pretrained(load: Callable[..., Model], path: Path, **kwargs: object) -> Model:
    """``load(path, **kwargs)`` (a ``from_pretrained``); weights it cannot read end the program with the reason."""
    try:
        return load(path, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"cannot load {path}: {err}") from err


# ---- training and testing -----------------------------------------------------------------------


def train_classifier(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    peak_lr: float,
    dtype: torch.dtype | None = None,
    label_smoothing: float = 0.0,
    min_lr: float = 0.0,
) -> None:
    """Minimise cross-entropy over ``steps`` batches (inputs, labels), under autocast to ``dtype`` (None: fp32).

    Each step (:func:`optimizer_step`) sets every group's lr to the schedule's (warm-up over 10% of the
    steps, then cosine) times its ``lr_scale`` (1 when it has none), as the official scripts do.
    """
    device_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
    model.train()
    for step, (inputs, labels) in zip(range(steps), batches, strict=False):
        lr = learning_rate(step, peak=peak_lr, warmup_steps=steps // 10, total_steps=steps, min_lr=min_lr)
        loss = partial(_classification_loss, model, inputs, labels, label_smoothing)
        optimizer_step(optimizer, scaler, lr, loss, device_type, dtype)
    model.eval()


def _classification_loss(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    return F.cross_entropy(model(inputs), labels, label_smoothing=label_smoothing)


@torch.no_grad()
def predict(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``model`` on ``inputs`` (N, ...) in batches, without gradients: (N, ...)."""
    return torch.cat([model(chunk) for chunk in inputs.split(EVAL_BATCH)])


def accuracy(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``inputs`` (N, ...) whose largest logit is at their label (N,)."""
    return (predict(model, inputs).argmax(dim=1) == labels).float().mean().item()


def compare(
    task: str, evaluate: Callable[[Model], float], pretrained: Model, fresh: Model, test: Digits, began: float
) -> None:
    """Train and test the pre-trained and the fresh model alike; print what they are, their accuracies, the time."""
    (height, width), (patch_h, patch_w) = pretrained.config.image_hw, pretrained.config.patch_hw
    shape = f"{pretrained.config.depth} blocks, {pretrained.config.embed_dim} wide"
    print(f"{task}: encoders of {shape}, images {height}x{width} in patches of {patch_h}x{patch_w}")
    accuracies = {"MAE-pretrained": evaluate(pretrained), "random init": evaluate(fresh)}
    print(f"{task}, accuracy on the {len(test)} test digits:")
    print("| encoder | test accuracy |\n|---|---|")
    for name, value in accuracies.items():
        print(f"| {name} | {value:.1%} |")
    print(f"wall time: {time.perf_counter() - began:.0f} s (torch threads: {torch.get_num_threads()})")
