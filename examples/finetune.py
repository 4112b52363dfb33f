"""Fine-tuning: on your own labelled images (--data), or on scikit-learn's digits against random weights.

    python examples/finetune.py --data ROOT --checkpoint CKPT      # your ImageFolder: the paper's recipe (A.2)
    python examples/finetune.py --data ROOT --help                 # that mode's flags, the paper's values
    python examples/finetune.py                                    # digits: pre-trains an MAE on them first
    python examples/finetune.py --checkpoint runs/pretrain/checkpoint  # digits, from any MAE from_pretrained reads

With --data ROOT (an ImageFolder: one sub-folder per class) or --train / --val, any checkpoint that
MAEViTClassifier.from_pretrained reads (a Hub id, a saved folder, pretrain.py's checkpoint/) is fine-tuned with
the paper's recipe (appendix A.2; see labelled_folder.py and docs/finetuning.md); the result is a checkpoint that
MAEViTClassifier.from_pretrained loads, metrics.jsonl, top-1 on the validation images each epoch and a
confusion matrix picture.

On the digits:
Without --checkpoint, a small MAE is pre-trained on the 1,437 training digits (no labels; about 3 CPU minutes)
and cached in --output, where linear_probe.py finds it too (see digits.py). Both classifiers are the library's
MAEViTClassifier with the paper's global pool (mean patch token, a new fc_norm, a new head), the same config,
the same seed (so the same new head), the same batches and augmentation, and the paper's fine-tuning recipe
where it applies: AdamW, weight decay 0.05 (none on biases, norms, cls_token, pos_embed), layer-wise lr decay
0.75, drop path 0.1, label smoothing 0.1, lr = --lr * batch / 256 with a warm-up then a cosine to 1e-6.
Random scales and shifts stand in for RandAugment, mixup and cutmix. The default --lr is 40x the paper's 5e-4
(for ViT-B over 100 epochs): for this small model over 10 epochs, half of it lowers both accuracies (measured).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import labelled_folder
import torch
from cli import argument_parser, run_main
from common import choose_device, choose_precision
from digits import (
    NUM_CLASSES,
    Digits,
    accuracy,
    augment,
    compare,
    load_digits_split,
    load_pretrained,
    model_input,
    parse_digits_args,
    pretrained_weights,
    shuffled_batches,
    steps_for,
    train_classifier,
)
from labelled_folder import Recipe
from transforms import eval_transform, finetune_transform

from masked_autoencoder import MAEViTClassifier, param_groups_lrd

WEIGHT_DECAY = 0.05
LAYER_DECAY = 0.75
DROP_PATH = 0.1
LABEL_SMOOTHING = 0.1
MIN_LR = 1e-6
CLASSIFIER = dict(num_classes=NUM_CLASSES, global_pool=True, drop_path_rate=DROP_PATH)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argument_parser(__doc__)
    return parse_digits_args(
        parser, argv, epochs=10, batch_size=64, lr=2e-2, lr_help="base learning rate: the peak is lr * batch / 256"
    )


def finetune_accuracy(model: MAEViTClassifier, train: Digits, test: Digits, args: argparse.Namespace) -> float:
    """Fine-tune ``model`` on the training digits; its accuracy on the test digits."""
    torch.manual_seed(args.seed)
    device = model.cls_token.device
    pixels, labels = train.pixels.to(device), train.labels.to(device)
    batches = (
        (model_input(augment(pixels[batch])), labels[batch]) for batch in shuffled_batches(len(train), args.batch_size)
    )
    peak_lr = args.lr * args.batch_size / 256
    groups = param_groups_lrd(model, WEIGHT_DECAY, model.no_weight_decay(), LAYER_DECAY)
    optimizer = torch.optim.AdamW(groups, lr=peak_lr)
    train_classifier(
        model,
        optimizer,
        batches,
        steps=steps_for(args.epochs, len(train), args.batch_size),
        peak_lr=peak_lr,
        dtype=choose_precision(args.precision, device),
        label_smoothing=LABEL_SMOOTHING,
        min_lr=MIN_LR,
    )
    return accuracy(model, model_input(test.pixels.to(device)), test.labels.to(device))


# The paper's fine-tuning recipe (appendix A.2) for ViT-B, the official code's defaults; notes for the other sizes
# and for small data sets.
FOLDER_RECIPE = Recipe(
    epochs=100,
    warmup_epochs=5,
    batch_size=1024,
    blr=5e-4,
    min_lr=1e-6,
    weight_decay=WEIGHT_DECAY,
    output="runs/finetune",
    notes={
        "epochs": "the paper: 100 for ViT-B, 50 for ViT-L, ViT-H; a small data set needs fewer (docs/finetuning.md)",
        "batch_size": "the paper's; on a small data set use one that gives tens of steps an epoch (e.g. 32)",
        "blr": "the paper: 5e-4 for ViT-B, 1e-3 for ViT-L and ViT-H",
    },
)


def parse_folder_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of the --data mode."""
    parse = labelled_folder.parser(__doc__, FOLDER_RECIPE)
    recipe = parse.add_argument_group("the paper's fine-tuning recipe (appendix A.2)")
    recipe.add_argument("--layer-decay", type=float, default=0.65, help="layer-wise lr decay (0.75 for ViT-L, ViT-H)")
    recipe.add_argument("--drop-path", type=float, default=DROP_PATH, help="stochastic depth (0.2 ViT-L, 0.3 ViT-H)")
    recipe.add_argument("--smoothing", type=float, default=LABEL_SMOOTHING, help="label smoothing")
    recipe.add_argument("--mixup", type=float, default=0.8, help="MixUp alpha (0: none)")
    recipe.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0: none); one of the two per batch")
    recipe.add_argument("--rand-augment", type=int, default=9, help="RandAugment magnitude, 2 ops (0: none)")
    recipe.add_argument("--reprob", type=float, default=0.25, help="random erasing probability (0: none)")
    recipe.add_argument(
        "--global-pool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mean patch token, fc_norm (no: class token)",
    )
    args = parse.parse_args(argv)
    labelled_folder.check_data_args(parse, args)
    return args


def finetune_folder(argv: list[str] | None) -> None:
    """Fine-tune a checkpoint on labelled images with the paper's recipe; write the model, metrics and pictures."""
    began = time.perf_counter()
    args = parse_folder_args(argv)
    torch.manual_seed(args.seed)
    classes = labelled_folder.class_names(args)
    model = MAEViTClassifier.from_pretrained(
        args.checkpoint, num_classes=len(classes), global_pool=args.global_pool, drop_path_rate=args.drop_path
    ).to(choose_device(args.device))
    cfg = model.pretrained_cfg
    train_transform = finetune_transform(cfg, magnitude=args.rand_augment, erase_prob=args.reprob)
    split = labelled_folder.load_split(args, train_transform, eval_transform(cfg))
    groups = param_groups_lrd(model, args.weight_decay, model.no_weight_decay(), args.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=args.blr)
    loss = labelled_folder.soft_cross_entropy(args.smoothing, len(classes))
    mix = labelled_folder.mixing(args.mixup, args.cutmix, len(classes))
    confusion = labelled_folder.train(model, optimizer, split, args, loss, mix=mix)
    model.save_pretrained(args.output / "checkpoint")
    labelled_folder.finish(confusion, split, args.output, began)


def main(argv: list[str] | None = None) -> None:
    """Fine-tune a classifier from the pre-trained encoder and one from random weights; print both test accuracies."""
    argv = sys.argv[1:] if argv is None else argv
    if labelled_folder.wants_folder(argv):
        finetune_folder(argv)
        return
    began = time.perf_counter()
    args = parse_args(argv)
    device = choose_device(args.device)
    path = pretrained_weights(args)
    torch.manual_seed(args.seed)  # the new head and fc_norm: drawn as for the fresh classifier below
    pretrained = load_pretrained(MAEViTClassifier.from_pretrained, path, **CLASSIFIER)
    torch.manual_seed(args.seed)
    fresh = MAEViTClassifier(pretrained.config, **CLASSIFIER)
    train, test = load_digits_split(pretrained.config.image_hw)
    evaluate = partial(finetune_accuracy, train=train, test=test, args=args)
    compare("fine-tuning", evaluate, pretrained.to(device), fresh.to(device), test, began)


if __name__ == "__main__":
    run_main(main)
