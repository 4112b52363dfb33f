"""Draw docs/images/masking.png: the same images under random, block-wise and grid-wise masking (the paper's Figure 6).

    python docs/figures/make_masking_figure.py [--output PATH]

Rows: photographs shipped in scikit-image; columns: the image, then what the encoder sees under
RandomMasking(0.75), BlockMasking(0.5), BlockMasking(0.75) and GridMasking() (removed patches grey).
Needs matplotlib and scikit-image (the `examples` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import data, transform

from masked_autoencoder import BlockMasking, GridMasking, RandomMasking, patchify, unpatchify

SIZE, PATCH = 224, 16
OUT = Path(__file__).resolve().parents[1] / "images" / "masking.png"
STRATEGIES = {
    "random 75%": RandomMasking(0.75),
    "block 50%": BlockMasking(0.5),
    "block 75%": BlockMasking(0.75),
    "grid 75%": GridMasking(),
}


def images() -> torch.Tensor:
    """Three photographs, (3, 3, SIZE, SIZE) in [0, 1]."""
    photos = [data.chelsea(), data.astronaut(), data.coffee()]
    resized = [transform.resize(photo, (SIZE, SIZE), anti_aliasing=True) for photo in photos]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()


def masked_view(imgs: torch.Tensor, strategy: torch.nn.Module, seed: int) -> torch.Tensor:
    """What the encoder sees: the removed patches grey. (B, C, H, W) -> (B, C, H, W)."""
    patches = patchify(imgs, PATCH)
    grid = (SIZE // PATCH, SIZE // PATCH)
    removed = strategy(patches, grid=grid, generator=torch.Generator().manual_seed(seed)).mask[..., None]
    return unpatchify(patches * (1 - removed) + 0.5 * removed, PATCH)


def main() -> None:
    parsed = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--output", type=Path, default=OUT)
    args = parsed.parse_args()
    imgs = images()
    columns = {"image": imgs} | {name: masked_view(imgs, s, seed=0) for name, s in STRATEGIES.items()}
    figure, axes = plt.subplots(len(imgs), len(columns), figsize=(2.2 * len(columns), 2.2 * len(imgs)))
    for column, (name, shown) in enumerate(columns.items()):
        axes[0, column].set_title(name)
        for row in range(len(imgs)):
            axes[row, column].imshow(shown[row].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row, column].axis("off")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=80)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
