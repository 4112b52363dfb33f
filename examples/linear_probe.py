"""Linear probing on scikit-learn's digits: an MAE-pretrained encoder against the same encoder with random weights.

    python examples/linear_probe.py                                        # pre-trains an MAE on the digits first
    python examples/linear_probe.py --checkpoint runs/pretrain/checkpoint  # or any MAE that from_pretrained reads

Without --checkpoint, a small MAE is pre-trained on the 1,437 training digits (no labels; about 3 CPU minutes)
and cached in --output, where finetune.py finds it too (see digits.py). The probe is the paper's, the library's
LinearProbe: the frozen encoder's class token after its final norm, a BatchNorm without affine parameters and a
linear layer. It trains for 90 epochs with SGD and momentum (the paper uses LARS, for its batch of 16,384),
--lr with a warm-up then a cosine, no augmentation. The random encoder is built from the same config and seed.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
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

from masked_autoencoder import LinearProbe, MAEEncoder

MOMENTUM = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def main(argv: list[str] | None = None) -> None:
    """Probe the pre-trained encoder and a random one; print both test accuracies."""
    began = time.perf_counter()
    args = parse_args(argv)
    device = choose_device(args.device)
    encoder = load_pretrained(MAEEncoder.from_pretrained, pretrained_weights(args), map_location=device)
    torch.manual_seed(args.seed)
    fresh = MAEEncoder(encoder.config).to(device)
    train, test = load_digits_split(encoder.config.image_hw)
    compare("linear probe", partial(probe_accuracy, train=train, test=test, args=args), encoder, fresh, test, began)


if __name__ == "__main__":
    main()
