"""What detection.py and segmentation.py share: the synthetic shapes, the encoders they start from, the training.

The data set: filled circles, squares and triangles (classes 1, 2, 3; 0 is background) of random sizes and
colours, painted without overlap onto random crops of the photographs shipped inside scikit-image. A shape's
mask is exactly the pixels painted (no anti-aliasing), its box the smallest one holding them, so the labels
are exact. Each split is drawn from its own stream, ``(seed, split)``: the held-out images do not change with
the number of training images.

Encoders start from: ``shapes-mae``, an MAE pre-trained by pretrain.py on a third split, unlabelled images of
shapes (the images alone, saved as PNGs: the common case of many images and few labels), and cached;
``random``, fresh weights of the same architecture; or any ``from_pretrained`` source.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pretrain
import torch
from cli import progress
from common import (
    PHOTO_STATS,
    add_model_arguments,
    build_model,
    choose_precision,
    learning_rate,
    optimizer_step,
    sample_photos,
)
from PIL import Image, ImageDraw
from torch import nn
from torchvision.ops import masks_to_boxes
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from masked_autoencoder import MAEEncoder, param_groups_lrd

CLASSES = ("circle", "square", "triangle")  # label i + 1; 0 is background
MAX_SHAPES = 3  # shapes per image: 1 to 3
SIDE_RANGE = (0.15, 0.4)  # a shape's side as a fraction of the image side
PLACEMENT_TRIES = 20  # random positions tried before an image gets fewer shapes (no overlaps)
SPLITS = {"train": 0, "heldout": 1, "unlabelled": 2}
SHAPES_MAE = "shapes-mae"  # --init: pre-train (or reuse) an MAE on the unlabelled split
CACHE_RECORD = "dense_pretraining.json"
NO_WEIGHT_DECAY = ("pos_embed", "cls_token")
# ViTDet's layer decay for ViT-B; the demo encoder is 4 blocks deep, so its first block still learns at 0.42x.
LAYER_DECAY = 0.75
WEIGHT_DECAY = 0.05


# ---- the synthetic shapes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shapes:
    """Synthetic images and their shapes, as torchvision's detectors take them.

    images: [0, 1] pixels (N, 3, H, W); targets: per image, for its S shapes, "boxes" (S, 4) as x1 y1 x2 y2,
    "labels" (S,) and "masks" (S, H, W) of bools.
    """

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]

    def __len__(self) -> int:
        return len(self.images)

    def semantic(self) -> torch.Tensor:
        """Per-pixel labels (N, H, W): each shape's class on its pixels, 0 elsewhere."""
        # Shapes never overlap: the largest label on a pixel is its only one.
        return torch.stack([(t["masks"] * t["labels"].view(-1, 1, 1)).amax(dim=0) for t in self.targets])


def _outline(kind: int, left: int, top: int, side: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """A function that paints shape ``kind`` (1 circle, 2 square, 3 triangle) in the square at (left, top)."""
    box = (left, top, left + side - 1, top + side - 1)  # PIL's boxes include their last pixel
    if kind == 1:
        return lambda draw: draw.ellipse(box, fill=255)
    if kind == 2:
        return lambda draw: draw.rectangle(box, fill=255)
    corners = [(left + side // 2, top), (left, box[3]), (box[2], box[3])]
    return lambda draw: draw.polygon(corners, fill=255)


def _background(photos: list[Image.Image], side: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop (at least ``side`` pixels) of a random photograph, resized to ``side``."""
    photo = photos[rng.integers(len(photos))]
    crop = int(rng.integers(side, min(photo.size) + 1))
    left, top = (int(rng.integers(extent - crop + 1)) for extent in photo.size)
    return photo.crop((left, top, left + crop, top + crop)).resize((side, side), Image.Resampling.BILINEAR)


def _free(taken: np.ndarray, left: int, top: int, side: int) -> bool:
    """Whether the square at (left, top), with a pixel of margin, overlaps no shape painted so far."""
    return not taken[max(0, top - 1) : top + side + 1, max(0, left - 1) : left + side + 1].any()


def _draw_image(photos: list[Image.Image], side: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """One image (3, H, W) in [0, 1] and its target: a photograph crop with 1 to MAX_SHAPES shapes on it."""
    image, taken = _background(photos, side, rng), np.zeros((side, side), dtype=bool)
    labels, masks = [], []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        for _ in range(PLACEMENT_TRIES):
            size = int(rng.integers(int(SIDE_RANGE[0] * side), int(SIDE_RANGE[1] * side) + 1))
            left, top = (int(rng.integers(side - size + 1)) for _ in range(2))
            if _free(taken, left, top, size):
                break
        else:
            continue
        kind, mask = int(rng.integers(1, len(CLASSES) + 1)), Image.new("L", (side, side))
        _outline(kind, left, top, size)(ImageDraw.Draw(mask))
        image.paste(tuple(int(c) for c in rng.integers(0, 256, 3)), mask=mask)
        masks.append(np.asarray(mask) > 0)
        taken |= masks[-1]
        labels.append(kind)
    masks_t = torch.from_numpy(np.stack(masks))
    boxes = masks_to_boxes(masks_t) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # pixel edges: x2, y2 past the last pixel
    target = {"boxes": boxes, "labels": torch.tensor(labels), "masks": masks_t}
    return pil_to_tensor(image).float() / 255, target


def make_shapes(count: int, side: int, split: str, seed: int = 0) -> Shapes:
    """``count`` synthetic images ``side`` pixels square of ``split`` ("train" or "heldout"), drawn from ``seed``."""
    photos = sample_photos((side, side))
    rng = np.random.default_rng([seed, SPLITS[split]])
    images, targets = zip(*(_draw_image(photos, side, rng) for _ in range(count)), strict=True)
    return Shapes(torch.stack(images), list(targets))


def splits(args: argparse.Namespace, model: str, device: torch.device) -> tuple[Shapes, Shapes]:
    """The training and held-out shapes of the flags; prints what they are and what ``model`` trains on."""
    train = make_shapes(args.train_images, args.img_size, "train", args.seed)
    heldout = make_shapes(args.heldout_images, args.img_size, "heldout", args.seed)
    print(f"{len(train)} training and {len(heldout)} held-out images of {args.img_size} px, {model} on {device}")
    return train, heldout


# ---- encoders -----------------------------------------------------------------------------------


def add_dense_arguments(
    parser: argparse.ArgumentParser, *, output: str, steps: int, batch_size: int, lr: float
) -> None:
    """The flags both scripts take: data, encoders, training, pre-training, device."""
    add_model_arguments(parser)
    parser.add_argument(
        "--init",
        nargs="+",
        default=[SHAPES_MAE, "random"],
        help=f"encoders to fine-tune, one run each: {SHAPES_MAE} (pre-trained on unlabelled shapes, cached), "
        "random, or a from_pretrained source (a folder, a file, a Hub id)",
    )
    parser.add_argument("--train-images", type=int, default=512, help="labelled images drawn for fine-tuning")
    parser.add_argument("--heldout-images", type=int, default=128, help="labelled images drawn for testing")
    parser.add_argument("--steps", type=int, default=steps, help="fine-tuning steps per run")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per training step")
    parser.add_argument("--lr", type=float, default=lr, help="peak lr (AdamW, warm-up then cosine)")
    parser.add_argument(
        "--unlabelled-images", type=int, default=4096, help=f"images drawn (without labels) for {SHAPES_MAE}"
    )
    parser.add_argument("--pretrain-steps", type=int, default=500, help=f"pretrain.py's steps for {SHAPES_MAE}")
    parser.add_argument("--pretrain-batch-size", type=int, default=32, help="images per pre-training step")
    parser.add_argument("--mae-cache", type=Path, default=Path("runs/shapes-mae"), help=f"where {SHAPES_MAE} lives")
    parser.add_argument("--output", type=Path, default=Path(output), help="where the results are written")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="autocast precision (auto: what the hardware runs fast)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the inits and the batches")


def _pretrain_argv(args: argparse.Namespace) -> list[str]:
    """pretrain.py's command line for the shapes MAE of these flags, on the images in --mae-cache/images."""
    settings = {
        "--data": args.mae_cache / "images",
        "--mean": PHOTO_STATS["mean"],  # not measured on the images: the detectors and UperNet's inputs use these
        "--std": PHOTO_STATS["std"],
        "--model": args.model,
        "--img-size": args.img_size,
        "--patch-size": args.patch_size,
        "--steps": args.pretrain_steps,
        "--batch-size": args.pretrain_batch_size,
        "--every": args.pretrain_steps,  # one reconstruction PNG and checkpoint, at the end
        "--precision": args.precision,
        "--seed": args.seed,
        "--output": args.mae_cache,
    }
    if args.device:
        settings["--device"] = args.device
    argv = []
    for flag, value in settings.items():
        argv += [flag, *(str(item) for item in (value if isinstance(value, tuple) else (value,)))]
    return argv


def save_unlabelled(args: argparse.Namespace) -> None:
    """Draw --unlabelled-images images of shapes and save them as PNGs in --mae-cache/images, without labels."""
    folder = args.mae_cache / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    shapes = make_shapes(args.unlabelled_images, args.img_size, "unlabelled", args.seed)
    for index, image in enumerate(shapes.images):
        to_pil_image((image * 255).round().to(torch.uint8)).save(folder / f"{index:05d}.png")  # the drawn bytes


def shapes_mae(args: argparse.Namespace) -> Path:
    """The checkpoint of an MAE pre-trained by pretrain.py on unlabelled shapes: reused if made with these flags."""
    argv, record = _pretrain_argv(args), args.mae_cache / CACHE_RECORD
    made_with = {"unlabelled_images": args.unlabelled_images, "pretrain": argv}
    if record.is_file() and json.loads(record.read_text()) == made_with:
        print(f"reusing the MAE pre-trained on unlabelled shapes in {args.mae_cache}")
    else:
        save_unlabelled(args)
        print(f"pre-training an MAE on {args.unlabelled_images} unlabelled shapes images:")
        print(f"python examples/pretrain.py {' '.join(argv)}")
        pretrain.main(argv)
        record.write_text(json.dumps(made_with))
    return args.mae_cache / "checkpoint"


def load_encoder(source: str, args: argparse.Namespace) -> MAEEncoder:
    """The encoder of ``source`` (see --init) for images of --img-size, in training mode."""
    if source == "random":
        return build_model(args, encoder_only=True).train()
    path = shapes_mae(args) if source == SHAPES_MAE else source
    return MAEEncoder.from_pretrained(path, img_size=args.img_size).train()


# ---- training -----------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW over ``param_groups_lrd``: the encoder's layers at decaying rates, every other part at the full one."""
    groups = param_groups_lrd(model, WEIGHT_DECAY, NO_WEIGHT_DECAY, layer_decay=LAYER_DECAY, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def batches(count: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Batches of indices into ``count`` items, endlessly, each epoch a new shuffle (its short last batch dropped)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator)
        yield from (order[i : i + batch_size].tolist() for i in range(0, count - batch_size + 1, batch_size))


def fine_tune(
    loss_of: Callable[[list[int]], torch.Tensor],
    model: nn.Module,
    count: int,
    args: argparse.Namespace,
    device: torch.device,
) -> list[float]:
    """Train ``model`` for --steps on batches of indices into ``count`` training images; returns the losses.

    ``loss_of(indices)`` returns the batch's loss. AdamW, lr warmed up over 10% of the steps then cosine,
    each parameter group at its ``lr_scale``; autocast to --precision (a scaler for fp16).
    """
    dtype = choose_precision(args.precision, device)
    optimizer = make_optimizer(model, args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    losses = []
    steps = zip(range(args.steps), batches(count, args.batch_size, args.seed), strict=False)
    for step, indices in progress(steps, total=args.steps, desc="fine-tuning"):
        lr = learning_rate(step, peak=args.lr, warmup_steps=args.steps // 10, total_steps=args.steps)
        loss = optimizer_step(optimizer, scaler, lr, partial(loss_of, indices), device.type, dtype)
        losses.append(loss.item())
    return losses


def compare(
    args: argparse.Namespace,
    device: torch.device,
    task: str,
    build: Callable[[MAEEncoder], nn.Module],
    loss_for: Callable[[nn.Module], Callable[[list[int]], torch.Tensor]],
    evaluate: Callable[[nn.Module], dict[str, float]],
    count: int,
) -> dict[str, dict[str, Any]]:
    """Fine-tune ``build(encoder)`` from each --init on ``count`` training images alike; returns each one's scores.

    ``loss_for(model)`` maps a batch's indices to its loss, ``evaluate(model)`` gives the held-out scores.
    """
    runs = {}
    for source in args.init:
        torch.manual_seed(args.seed)
        encoder = load_encoder(source, args)
        torch.manual_seed(args.seed)  # the same fresh heads for every encoder
        model = build(encoder).to(device).train()
        started = time.perf_counter()
        losses = fine_tune(loss_for(model), model, count, args, device)
        runs[source] = {**evaluate(model), "loss": [losses[0], losses[-1]]}
        print(f"{source}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {time.perf_counter() - started:.0f} s")
    print(f"{task}, on {args.heldout_images} held-out images:")
    return runs


def report(args: argparse.Namespace, runs: dict[str, dict[str, Any]], began: float) -> None:
    """Print a table of the runs' scores and write ``metrics.json`` (settings, per --init its scores) to --output."""
    names = [key for key in next(iter(runs.values())) if key != "loss"]
    print("| encoder | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for source, metrics in runs.items():
        print(f"| {source} | " + " | ".join(f"{metrics[name]:.3f}" for name in names) + " |")
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    seconds = time.perf_counter() - began
    record = {"settings": settings, "runs": runs, "seconds": seconds, "torch_threads": torch.get_num_threads()}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wall time: {seconds:.0f} s (torch threads: {torch.get_num_threads()})")
    print(f"metrics: {args.output / 'metrics.json'}")
