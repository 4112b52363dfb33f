"""Linear probing: on your own labelled images (--data), or on scikit-learn's digits against random weights.

    python examples/linear_probe.py --data ROOT --checkpoint CKPT      # your ImageFolder: the paper's probe (A.3)
    python examples/linear_probe.py --data ROOT --help                 # that mode's flags, the paper's values
    python examples/linear_probe.py                                    # digits: pre-trains an MAE on them first
    python examples/linear_probe.py --checkpoint runs/pretrain/checkpoint  # digits, from any MAE

With --data ROOT (an ImageFolder: one sub-folder per class) or --train / --val, the frozen encoder of any
checkpoint MAEEncoder.from_pretrained reads is probed as in the paper (appendix A.3): the class token after the
final norm, BatchNorm without affine, a linear head; SGD with momentum stands in for LARS (made for a batch of
16,384); RandomResizedCrop and a flip only. Writes the head (probe_head.safetensors), metrics.jsonl, top-1 on the
validation images each epoch and a confusion matrix picture (see labelled_folder.py).

On the digits:
Without --checkpoint, a small MAE is pre-trained on the 1,437 training digits (no labels; about 3 CPU minutes)
and cached in --output, where finetune.py finds it too (see digits.py). The probe is the paper's, the library's
LinearProbe: the frozen encoder's class token after its final norm, a BatchNorm without affine parameters and a
linear layer. It trains for 90 epochs with SGD and momentum (the paper uses LARS, for its batch of 16,384),
--lr with a warm-up then a cosine, no augmentation. The random encoder is built from the same config and seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import labelled_folder
import torch
from cli import argument_parser, run_main
from common import choose_device
from digits import (
    NUM_CLASSES,
    Digits,
    accuracy,
    compare,
    load_digits_split,
    load_pretrained,
    model_input,
    parse_digits_args,
    predict,
    pretrained_weights,
    shuffled_batches,
    steps_for,
    train_classifier,
)
from labelled_folder import Recipe
from safetensors.torch import save_file
from transforms import eval_transform, finetune_transform

from masked_autoencoder import LinearProbe, MAEEncoder

MOMENTUM = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argument_parser(__doc__)
    return parse_digits_args(
        parser, argv, epochs=90, batch_size=64, lr=0.1, lr_help="peak learning rate of the head's SGD"
    )


def probe_accuracy(encoder: MAEEncoder, train: Digits, test: Digits, args: argparse.Namespace) -> float:
    """Train a LinearProbe on ``encoder`` with the training digits; its accuracy on the test digits."""
    torch.manual_seed(args.seed)
    probe = LinearProbe(encoder, NUM_CLASSES)
    device = probe.encoder.cls_token.device
    # The frozen encoder, in eval mode, gives an image the same feature every epoch: computed once, the head then
    # trains on exactly what LinearProbe.forward computes, head(encoder.forward_pooled(imgs, "token")).
    train_features, test_features = (
        predict(lambda pixels: probe.encoder.forward_pooled(model_input(pixels), "token"), split.pixels.to(device))
        for split in (train, test)
    )
    labels = train.labels.to(device)
    batches = ((train_features[batch], labels[batch]) for batch in shuffled_batches(len(train), args.batch_size))
    optimizer = torch.optim.SGD(probe.head.parameters(), lr=args.lr, momentum=MOMENTUM)
    steps = steps_for(args.epochs, len(train), args.batch_size)
    train_classifier(probe.head, optimizer, batches, steps=steps, peak_lr=args.lr)
    return accuracy(probe.head, test_features, test.labels.to(device))


# The official linear probe's defaults (appendix A.3): 90 epochs, 10 of warm-up, blr 0.1, no weight decay.
FOLDER_RECIPE = Recipe(
    epochs=90,
    warmup_epochs=10,
    batch_size=16384,
    blr=0.1,
    min_lr=0.0,
    weight_decay=0.0,
    output="runs/linear_probe",
    notes={"batch_size": "the paper's, with LARS; on a small data set use one that gives tens of steps an epoch"},
)


def probe_folder(argv: list[str]) -> None:
    """Probe a checkpoint's frozen encoder on labelled images; write the head, metrics and pictures."""
    began = time.perf_counter()
    parse = labelled_folder.parser(__doc__, FOLDER_RECIPE)
    parse.add_argument("--momentum", type=float, default=MOMENTUM, help="SGD momentum (the stand-in for LARS)")
    args = parse.parse_args(argv)
    labelled_folder.check_data_args(parse, args)
    torch.manual_seed(args.seed)
    classes = labelled_folder.class_names(args)
    encoder = MAEEncoder.from_pretrained(args.checkpoint)
    probe = LinearProbe(encoder, len(classes)).to(choose_device(args.device))
    cfg = encoder.pretrained_cfg
    split = labelled_folder.load_split(args, finetune_transform(cfg, magnitude=0, erase_prob=0), eval_transform(cfg))
    optimizer = torch.optim.SGD(
        probe.head.parameters(), lr=args.blr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    confusion = labelled_folder.train(
        probe, optimizer, split, args, labelled_folder.soft_cross_entropy(0, len(classes))
    )
    save_file(probe.head.state_dict(), args.output / "probe_head.safetensors")
    labelled_folder.finish(confusion, split, args.output, began)


def main(argv: list[str] | None = None) -> None:
    """Probe the pre-trained encoder and a random one; print both test accuracies."""
    argv = sys.argv[1:] if argv is None else argv
    if labelled_folder.wants_folder(argv):
        probe_folder(argv)
        return
    began = time.perf_counter()
    args = parse_args(argv)
    device = choose_device(args.device)
    encoder = load_pretrained(MAEEncoder.from_pretrained, pretrained_weights(args), map_location=device)
    torch.manual_seed(args.seed)
    fresh = MAEEncoder(encoder.config).to(device)
    train, test = load_digits_split(encoder.config.image_hw)
    compare("linear probe", partial(probe_accuracy, train=train, test=test, args=args), encoder, fresh, test, began)


if __name__ == "__main__":
    run_main(main)
