"""Train a classifier on your own labelled images (finetune.py and linear_probe.py with --data or --train/--val).

The images are an ImageFolder: one sub-folder per class (``ROOT/cat/1.jpg``, ``ROOT/dog/2.png``, ...). With
``--data ROOT`` a fixed share of each class (``--val-fraction``) is held out for validation; ``--train`` and
``--val`` name two such folders instead. Every epoch trains on the training images, then measures top-1 on the
validation images and appends a line to ``metrics.jsonl``; the end writes the model, ``classes.json`` and a
confusion matrix picture into ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from cli import argument_parser, progress
from common import learning_rate, optimizer_step
from digits import positive
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2

SPLIT_SEED = 0  # the held-out images never change with --seed: every run validates on the same ones
EVAL_BATCH = 64
Transform = Callable[[Any], Any]


@dataclass(frozen=True)
class Recipe:
    """A training recipe's defaults, each the default of the flag of the same name."""

    epochs: float
    warmup_epochs: float
    batch_size: int
    blr: float
    min_lr: float
    weight_decay: float
    output: str
    notes: dict[str, str]
    """Help text per flag: where the value comes from, and what small data needs."""


@dataclass(frozen=True)
class Split:
    """The labelled images: training and validation sets, the class names (index order)."""

    train: Dataset[Any]
    val: Dataset[Any]
    classes: list[str]


def parser(description: str | None, recipe: Recipe) -> argparse.ArgumentParser:
    """The flags of both scripts' --data mode, the recipe's values as defaults."""
    parse = argument_parser(description)
    data = parse.add_argument_group("labelled images")
    data.add_argument("--data", type=Path, help="an ImageFolder (one sub-folder per class), split by --val-fraction")
    data.add_argument("--train", type=Path, help="an ImageFolder of training images (with --val, instead of --data)")
    data.add_argument("--val", type=Path, help="an ImageFolder of validation images (with --train)")
    data.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out with --data")

    def add(flag: str, help: str, **options: Any) -> None:
        note = recipe.notes.get(flag.lstrip("-").replace("-", "_"))
        parse.add_argument(flag, help=help if note is None else f"{help}; {note}", **options)

    add("--checkpoint", "any checkpoint from_pretrained reads: a Hub id, a folder, a weights file", required=True)
    add("--output", "where the results are written", type=Path, default=Path(recipe.output))
    add("--epochs", "passes over the training images", type=positive(float), default=recipe.epochs)
    add("--warmup-epochs", "linear warm-up of the lr, then a cosine", type=float, default=recipe.warmup_epochs)
    add("--batch-size", "images per step", type=positive(int), default=recipe.batch_size)
    add("--blr", "base learning rate: the peak is blr * batch / 256", type=positive(float), default=recipe.blr)
    add("--min-lr", "where the cosine ends", type=float, default=recipe.min_lr)
    add("--weight-decay", "AdamW / SGD weight decay", type=float, default=recipe.weight_decay)
    add("--num-workers", "data loader processes (0: load in the main one)", type=int, default=0)
    add("--device", "default: cuda if available, else cpu")
    add("--seed", "seeds the new head, the batches and the augmentation", type=int, default=0)
    return parse


def check_data_args(parse: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exactly one of --data and --train/--val, with a fraction that leaves images on both sides."""
    if (args.data is None) == (args.train is None) or (args.train is None) != (args.val is None):
        parse.error("give --data ROOT, or --train and --val (ImageFolders: one sub-folder per class)")
    if not 0 < args.val_fraction < 1:
        parse.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")


def wants_folder(argv: Sequence[str]) -> bool:
    """Whether a command line asks for the labelled-images mode (--data, --train or --val)."""
    return any(arg.split("=")[0] in ("--data", "--train", "--val") for arg in argv)


def class_names(args: argparse.Namespace) -> list[str]:
    """The class names (the sub-folders) of --data or --train, in label order."""
    root = args.data if args.data is not None else args.train
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: expected an ImageFolder, one sub-folder per class")
    return find_classes(root)[0]


def load_split(
    args: argparse.Namespace, train_transform: Callable[..., Any], val_transform: Callable[..., Any]
) -> Split:
    """The training and validation images of --data (split per class) or of --train / --val."""
    if args.data is None:
        train, val = ImageFolder(args.train, train_transform), ImageFolder(args.val, val_transform)
        if train.classes != val.classes:
            raise ValueError(f"--train classes {train.classes} differ from --val classes {val.classes}")
        return Split(train, val, train.classes)
    train, val = ImageFolder(args.data, train_transform), ImageFolder(args.data, val_transform)
    held_out = _held_out(train.targets, args.val_fraction)
    kept = [index for index in range(len(train)) if index not in held_out]
    return Split(Subset(train, kept), Subset(val, sorted(held_out)), train.classes)


def _held_out(targets: Sequence[int], fraction: float) -> set[int]:
    """A fixed ``fraction`` of each class's images (at least one, where a class has two or more)."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    held_out: set[int] = set()
    for label in sorted(set(targets)):
        indices = [index for index, target in enumerate(targets) if target == label]
        count = min(len(indices) - 1, max(1, round(fraction * len(indices))))
        order = torch.randperm(len(indices), generator=generator)[:count].tolist()
        held_out.update(indices[i] for i in order)
    return held_out


def loader(dataset: Dataset[Any], batch_size: int, *, train: bool, workers: int, seed: int = 0) -> DataLoader[Any]:
    """Batches of ``dataset``: shuffled, whole batches only, for training; in order for evaluation."""
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(dataset)) if train else EVAL_BATCH  # type: ignore[arg-type]
    return DataLoader(dataset, size, shuffle=train, drop_last=train, num_workers=workers, generator=generator)


@torch.no_grad()
def evaluate(model: nn.Module, batches: DataLoader[Any], num_classes: int, device: torch.device) -> torch.Tensor:
    """The confusion matrix (true class, predicted class) of ``model`` over ``batches``: (K, K) int64."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, labels in batches:
        predicted = model(images.to(device)).argmax(dim=1).cpu()
        confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes**2).view_as(confusion)
    return confusion


def top1(confusion: torch.Tensor) -> float:
    """The share of images on the diagonal of a confusion matrix."""
    return confusion.diag().sum().item() / max(1, confusion.sum().item())


def save_confusion_matrix(confusion: torch.Tensor, classes: list[str], path: Path) -> Path:
    """A picture of the confusion matrix, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = max(4.0, 0.5 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    axes.imshow(confusion, cmap="Blues")
    ticks = range(len(classes))
    axes.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=f"top-1 {top1(confusion):.1%}")
    axes.set_xticklabels(classes, rotation=90)
    axes.set_yticklabels(classes)
    for index, count in enumerate(confusion.flatten().tolist()):
        row, column = divmod(index, len(classes))
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: Split,
    args: argparse.Namespace,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    mix: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Train over ``args.epochs`` (lr = blr * batch / 256, warm-up then cosine, per step); after each epoch, top-1
    on the validation images, printed and appended to metrics.jsonl. ``mix``: a batch transform (mixup, cutmix)
    of (images, labels). Returns the last confusion matrix."""
    device = next(model.parameters()).device
    batches = loader(split.train, args.batch_size, train=True, workers=args.num_workers, seed=args.seed)
    val_batches = loader(split.val, args.batch_size, train=False, workers=args.num_workers)
    per_epoch = len(batches)
    total, warmup = math.ceil(args.epochs * per_epoch), round(args.warmup_epochs * per_epoch)
    peak = args.blr * batches.batch_size / 256  # type: ignore[operator]
    args.output.mkdir(parents=True, exist_ok=True)
    metrics = (args.output / "metrics.jsonl").open("w", encoding="utf-8")
    step, began, confusion = 0, time.perf_counter(), torch.zeros(0)
    fp32 = torch.amp.GradScaler(device.type, enabled=False)  # fp32 steps: the scaler passes everything through
    for epoch in range(math.ceil(args.epochs)):
        model.train()
        losses = []
        bar = progress(batches, total=min(per_epoch, total - step), desc=f"epoch {epoch + 1}")
        for images, labels in bar:
            if step == total:
                break
            lr = learning_rate(step, peak=peak, warmup_steps=warmup, total_steps=total, min_lr=args.min_lr)
            images, targets = (images, labels) if mix is None else mix(images, labels)
            batch_loss = partial(lambda x, y: loss_of(model(x), y), images.to(device), targets.to(device))
            loss = optimizer_step(optimizer, fp32, lr, batch_loss, device.type, None)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            step += 1
        bar.close()
        confusion = evaluate(model, val_batches, len(split.classes), device)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train_loss": sum(losses) / max(1, len(losses)),
            "val_top1": top1(confusion),
            "seconds": round(time.perf_counter() - began, 1),
        }
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        print(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, val top-1 {record['val_top1']:.1%}")
    metrics.close()
    return confusion


def finish(confusion: torch.Tensor, split: Split, output: Path, began: float) -> None:
    """Write classes.json and the confusion matrix; print the summary."""
    (output / "classes.json").write_text(json.dumps(split.classes) + "\n", encoding="utf-8")
    picture = save_confusion_matrix(confusion, split.classes, output / "confusion_matrix.png")
    images = f"{len(split.train)} training and {len(split.val)} validation images"  # type: ignore[arg-type]
    print(f"{len(split.classes)} classes, {images}; final val top-1 {top1(confusion):.1%}")
    print(f"wrote {output / 'metrics.jsonl'}, {picture}, {output / 'classes.json'}")
    print(f"wall time: {time.perf_counter() - began:.0f} s (torch threads: {torch.get_num_threads()})")


def soft_cross_entropy(smoothing: float, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy against labels (B,) or soft targets (B, K) (mixup's), smoothed towards uniform by ``smoothing``."""

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.dim() == 1:
            return F.cross_entropy(logits, targets, label_smoothing=smoothing)
        return F.cross_entropy(logits, targets * (1 - smoothing) + smoothing / num_classes)

    return loss


def mixing(mixup: float, cutmix: float, num_classes: int) -> v2.Transform | None:
    """torchvision's MixUp and CutMix (one of the two per batch, as the paper's timm Mixup), None when both are 0."""
    chosen = [v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []
    chosen += [v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else []
    return v2.RandomChoice(chosen) if chosen else None
