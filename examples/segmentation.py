"""Fine-tune UperNet on an MAE encoder for semantic segmentation and report mIoU, offline.

    python examples/segmentation.py                                   # shapes MAE against random weights
    python examples/segmentation.py --init runs/pretrain/checkpoint   # any from_pretrained source

The data: dense_data.py's shapes, as per-pixel labels (background, circle, square, triangle). For each --init
the encoder goes into ``UperNet`` (a narrower head than mmseg's 512 channels), all of it fine-tuned with
AdamW and layer-wise lr decay on per-pixel cross-entropy. torchmetrics' ``JaccardIndex`` (multiclass, the
mean over the four classes) measures mIoU on the held-out images. Writes --output/metrics.json, prints a table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from cli import argument_parser, run_main
from common import choose_device, normalize
from dense_data import CLASSES, add_dense_arguments, compare, report, splits
from torchmetrics.classification import JaccardIndex

from masked_autoencoder import UperNet

NUM_CLASSES = len(CLASSES) + 1  # and background
HEAD_CHANNELS = 128  # mmseg's 512 is sized for ADE20K's 150 classes
EVAL_BATCH = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; its defaults compare the two starts in about 10 minutes on 2 CPU cores (docs/dense.md)."""
    parser = argument_parser(__doc__)
    add_dense_arguments(parser, output="runs/segmentation", steps=800, batch_size=8, lr=2e-3)
    return parser.parse_args(argv)


def segmentation_loss(
    model: UperNet, inputs: torch.Tensor, labels: torch.Tensor
) -> Callable[[list[int]], torch.Tensor]:
    """A function from a batch's indices to its per-pixel cross-entropy. inputs: (N, 3, H, W), labels: (N, H, W)."""

    def loss_of(indices: list[int]) -> torch.Tensor:
        return F.cross_entropy(model(inputs[indices]), labels[indices])

    return loss_of


@torch.no_grad()
def evaluate(model: UperNet, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean IoU over the four classes and pixel accuracy on held-out (N, 3, H, W) inputs, (N, H, W) labels."""
    model.eval()
    miou = JaccardIndex(task="multiclass", num_classes=NUM_CLASSES, average="macro").to(inputs.device)
    correct = 0
    for start in range(0, len(inputs), EVAL_BATCH):
        predicted = model(inputs[start : start + EVAL_BATCH]).argmax(dim=1)
        miou.update(predicted, labels[start : start + EVAL_BATCH])
        correct += (predicted == labels[start : start + EVAL_BATCH]).sum().item()
    return {"mIoU": miou.compute().item(), "pixel_accuracy": correct / labels.numel()}


def main(argv: list[str] | None = None) -> None:
    """Fine-tune UperNet from each --init on the same shapes and compare their held-out mIoU."""
    began = time.perf_counter()
    args = parse_args(argv)
    device = choose_device(args.device)
    train, heldout = splits(args, "UperNet", device)
    inputs, labels = normalize(train.images).to(device), train.semantic().to(device)
    heldout_inputs, heldout_labels = normalize(heldout.images).to(device), heldout.semantic().to(device)
    runs = compare(
        args,
        device,
        "UperNet, mean IoU",
        lambda encoder: UperNet(encoder, NUM_CLASSES, channels=HEAD_CHANNELS),
        lambda model: segmentation_loss(model, inputs, labels),
        lambda model: evaluate(model, heldout_inputs, heldout_labels),
        len(train),
    )
    report(args, runs, began)


if __name__ == "__main__":
    run_main(main)
