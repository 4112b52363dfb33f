"""Show what a Masked Autoencoder predicts: original | masked | reconstruction | reconstruction + visible.

    python examples/reconstruct.py runs/pretrain/checkpoint                 # on the sample photos
    python examples/reconstruct.py facebook/vit-mae-base --images cat.jpg dog.png --output mae.png

The checkpoint is anything ``MaskedAutoencoderViT.from_pretrained`` reads (a Hub id, a folder, a file).
Images are centre-cropped to the model's size and normalised with the ImageNet mean and std, as the
published weights expect. A model trained on normalised pixels (``norm_pix_loss``) is shown in pixels
through the visible patches' statistics (see ``masked_autoencoder.reconstruct``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import PREVIEW_COUNT, choose_device, preview_batch, sample_image_paths, save_reconstructions

from masked_autoencoder import MaskedAutoencoderViT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a Hub repo id, or a local folder or weights file")
    parser.add_argument("--images", type=Path, nargs="+", help="image files (default: sample photos)")
    parser.add_argument("--output", type=Path, default=Path("reconstruction.png"))
    parser.add_argument("--mask-ratio", type=float, help="default: the model's (0.75)")
    parser.add_argument("--seed", type=int, default=0, help="draws the mask")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the model, reconstruct the images, write the PNG."""
    args = parse_args(argv)
    device = choose_device(args.device)
    model = MaskedAutoencoderViT.from_pretrained(args.checkpoint, map_location=device)
    sources = args.images or sample_image_paths()[:PREVIEW_COUNT]
    imgs = preview_batch(sources, model.config.image_hw).to(device)
    path = save_reconstructions(model, imgs, args.output, mask_ratio=args.mask_ratio, seed=args.seed)
    target = "normalised pixels" if model.config.norm_pix_loss else "pixels"
    print(f"{len(sources)} images, model trained on {target}")
    print(f"reconstruction: {path}")


if __name__ == "__main__":
    main()
