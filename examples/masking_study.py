"""The paper's masking ablation at digit scale: random, block-wise and grid-wise masks, and the masking ratio.

    python examples/masking_study.py                      # 46 min on 2 CPU cores (measured); cached per variant
    python examples/masking_study.py --ratios 0.5 0.75    # a shorter ratio sweep

He et al. (2021) compare mask sampling at ViT-L on ImageNet (Table 1(f)): random 75% beats block-wise
(50% and 75%) and grid-wise 75% removal, by far more in linear probing than in fine-tuning; and the ratio
(Figure 5): 75% is best for both, 40-80% all work. Here each variant pre-trains the digits MAE of digits.py
in patches of 4 instead of 8 (an 8 x 8 patch grid, so that blocks and grids have room; four times the
tokens, so 800 steps instead of 1,600) with the same steps, recipe and seed. Each is then linear-probed
(linear_probe.py's recipe) and fine-tuned (finetune.py's recipe) on the 1,437 training digits and tested on
the 360 test digits, as is the same encoder with random weights. The masks draw from the same random
stream as the batches and the augmentation, so after the first step the variants see different batches:
run two --seed values to see that noise. Each pre-trained MAE is cached in --output/VARIANT (its config
records the ratio it was trained at; the strategy is in pretraining.json), so a rerun only measures. It
prints two tables, the paper's numbers beside ours, and writes them with the settings and wall times to
--output/results.json.

Block-wise masking is BEiT's, as the paper's: rectangles of at least 16 patches on a 14 x 14 grid, 8% of
it; here of at least 5 of 64 patches (--min-block), the same share.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from cli import argument_parser, run_main
from common import PRECISIONS, choose_device
from digits import DIGITS_MAE, Digits, PretrainSettings, cached_digits_mae, load_digits_split, positive
from finetune import CLASSIFIER, finetune_accuracy
from finetune import parse_args as finetune_args
from linear_probe import parse_args as probe_args
from linear_probe import probe_accuracy

from masked_autoencoder import (
    BlockMasking,
    GridMasking,
    MAEEncoder,
    MAEViTClassifier,
    MaskingStrategy,
    RandomMasking,
    model_config,
)

STUDY_MAE = {**DIGITS_MAE, "patch_size": 4}  # 32 x 32 images: an 8 x 8 patch grid
STUDY_CONFIG = model_config("mae_vit_tiny", **STUDY_MAE)
MIN_BLOCK = 5  # BEiT's 16 of 196 patches, as a share of 64
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Variant:
    """One pre-training of the study: a mask sampling at a ratio, and the paper's (ft, lin) top-1 if it has one."""

    sampling: str
    ratio: float
    paper: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        """Its folder and label, e.g. ``block-50``."""
        return f"{self.sampling}-{round(100 * self.ratio)}"

    def masking(self, min_block: int) -> MaskingStrategy:
        """The strategy it pre-trains with."""
        if self.sampling == "random":
            return RandomMasking(self.ratio)
        if self.sampling == "block":
            return BlockMasking(self.ratio, min_block=min_block)
        if self.sampling == "grid" and self.ratio == GridMasking().mask_ratio:
            return GridMasking()
        raise ValueError(f"no masking for sampling={self.sampling!r} at ratio {self.ratio}")


# Table 1(f): ViT-L, ImageNet top-1 (fine-tuning, linear probing).
SAMPLING_ROWS = (
    Variant("random", 0.75, (84.9, 73.5)),
    Variant("block", 0.5, (83.9, 72.3)),
    Variant("block", 0.75, (82.8, 63.9)),
    Variant("grid", 0.75, (84.0, 66.0)),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argument_parser(__doc__)
    parser.add_argument("--output", type=Path, default=Path("runs/masking_study"), help="cached MAEs and results")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.9], help="random masking")
    parser.add_argument("--min-block", type=positive(int), default=MIN_BLOCK, help="block-wise: smallest block")
    parser.add_argument("--pretrain-steps", type=positive(int), default=800, help="pre-training steps of each variant")
    parser.add_argument("--pretrain-batch-size", type=positive(int), default=128, help="images per pre-training step")
    parser.add_argument("--probe-epochs", type=positive(float), help="default: linear_probe.py's")
    parser.add_argument("--finetune-epochs", type=positive(float), help="default: finetune.py's")
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="autocast precision (auto: what the hardware runs fast)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds every pre-training, probe and fine-tuning")
    args = parser.parse_args(argv)
    for ratio in args.ratios:
        if not 0 < ratio < 1 or abs(100 * ratio - round(100 * ratio)) > 1e-9:  # whole percents name the folders
            parser.error(f"--ratios must be whole percents strictly between 0 and 1, like 0.25, got {ratio}")
    args.ratios = sorted(set(args.ratios))
    return args


def variants(ratios: list[float]) -> list[Variant]:
    """Table 1(f)'s rows, then random masking at each ratio the rows do not already have."""
    extra = [Variant("random", ratio) for ratio in ratios if ratio != 0.75]
    return [*SAMPLING_ROWS, *extra]


def recipes(args: argparse.Namespace) -> tuple[argparse.Namespace, argparse.Namespace]:
    """The probe's and the fine-tuning's settings: their scripts' defaults, with this run's seed and epochs."""
    shared = ["--seed", str(args.seed), "--precision", args.precision]
    if args.device is not None:
        shared += ["--device", args.device]
    probe = probe_args(shared + ([] if args.probe_epochs is None else ["--epochs", str(args.probe_epochs)]))
    epochs = [] if args.finetune_epochs is None else ["--epochs", str(args.finetune_epochs)]
    return probe, finetune_args(shared + epochs)


def evaluate(
    weights: Path | None,
    data: tuple[Digits, Digits],
    probe: argparse.Namespace,
    finetune: argparse.Namespace,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """Test accuracies (%) of the linear probe and the fine-tuned classifier on the MAE in ``weights``, on ``device``.

    ``data``: the (train, test) digits. ``weights`` None: the study's encoder and classifier with random
    weights, drawn from ``seed``.
    """
    train, test = data
    torch.manual_seed(seed)
    encoder = MAEEncoder(STUDY_CONFIG) if weights is None else MAEEncoder.from_pretrained(weights)
    torch.manual_seed(seed)  # the classifier's new head and fc_norm: the same draw for every variant
    classifier = (
        MAEViTClassifier(STUDY_CONFIG, **CLASSIFIER)
        if weights is None
        else MAEViTClassifier.from_pretrained(weights, **CLASSIFIER)
    )
    return {
        "lin": 100 * probe_accuracy(encoder.to(device), train, test, probe),
        "ft": 100 * finetune_accuracy(classifier.to(device), train, test, finetune),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    """Pre-train (or reuse) and evaluate every variant, and the random-weights baseline; the results."""
    probe, finetune = recipes(args)
    device = choose_device(args.device)
    data = load_digits_split(STUDY_CONFIG.image_hw)
    settings = PretrainSettings(args.pretrain_steps, args.pretrain_batch_size, args.seed)
    results = []
    for variant in variants(args.ratios):
        began = time.perf_counter()
        folder = args.output / variant.name
        masking = variant.masking(args.min_block)
        model = {**STUDY_MAE, "mask_ratio": variant.ratio}
        record = cached_digits_mae(
            folder, model, settings, masking=masking, device=args.device, precision=args.precision
        )
        accuracies = evaluate(folder, data, probe, finetune, args.seed, device)
        seconds = time.perf_counter() - began
        results.append(
            dict(
                asdict(variant),
                name=variant.name,
                masking=repr(masking),
                **accuracies,
                pretrain_seconds=record["seconds"],
                seconds=seconds,
            )
        )
        print(f"{variant.name}: linear probe {accuracies['lin']:.1f}%, fine-tuning {accuracies['ft']:.1f}%")
    baseline = evaluate(None, data, probe, finetune, args.seed, device)
    return dict(
        settings=asdict(settings),
        model=STUDY_MAE,
        min_block=args.min_block,
        probe_epochs=probe.epochs,
        finetune_epochs=finetune.epochs,
        threads=torch.get_num_threads(),
        variants=results,
        random_init=baseline,
    )


def tables(results: dict[str, object]) -> str:
    """The study as two Markdown tables: mask sampling beside Table 1(f), and the ratio sweep."""
    rows = results["variants"]
    lines = [
        "| sampling | ratio | ft (paper) | lin (paper) | ft (digits) | lin (digits) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["paper"] is not None:
            ft, lin = row["paper"]
            label = f"{row['sampling']} | {row['ratio']:.0%}"
            lines.append(f"| {label} | {ft} | {lin} | {row['ft']:.1f} | {row['lin']:.1f} |")
    baseline = results["random_init"]
    lines.append(f"| none (random weights) | - | - | - | {baseline['ft']:.1f} | {baseline['lin']:.1f} |")
    lines += ["", "| random masking ratio | ft (digits) | lin (digits) |", "|---|---|---|"]
    for row in sorted((row for row in rows if row["sampling"] == "random"), key=lambda row: row["ratio"]):
        lines.append(f"| {row['ratio']:.0%} | {row['ft']:.1f} | {row['lin']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the study; print and save its tables."""
    began = time.perf_counter()
    args = parse_args(argv)
    results = run(args)
    results["seconds"] = time.perf_counter() - began
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))
    print(f"wall time: {results['seconds']:.0f} s (torch threads: {results['threads']}); {args.output / RESULTS_FILE}")


if __name__ == "__main__":
    run_main(main)
