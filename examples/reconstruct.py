"""Show what a Masked Autoencoder predicts, as the paper's figures do: masked | reconstruction + visible | original.

    python examples/reconstruct.py runs/pretrain/checkpoint                 # on the held-out sample photos
    python examples/reconstruct.py facebook/vit-mae-base --images cat.jpg dog.png --output mae.png

The checkpoint is anything ``MaskedAutoencoderViT.from_pretrained`` reads (a Hub id, a folder, a file).
Images are centre-cropped to the model's size and normalised with the ImageNet mean and std, as the
published weights expect; without --images, the five crops of scikit-learn's two sample photographs that
pretrain.py holds out. It prints the PSNR over the removed patches of the reconstruction and of the
visible pixels' mean colour. A model trained on normalised pixels (``norm_pix_loss``) is shown in pixels
through the visible patches' statistics (see ``masked_autoencoder.reconstruct``): every removed patch then
gets the image's average brightness and contrast, so its reconstructions look flat.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import (
    PSNR_MASKS,
    center_transform,
    choose_device,
    heldout_batch,
    heldout_photos,
    reconstruction_psnr,
    save_reconstructions,
)
from PIL import Image

from masked_autoencoder import MaskedAutoencoderViT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a Hub repo id, or a local folder or weights file")
    parser.add_argument("--images", type=Path, nargs="+", help="image files (default: held-out sample photos)")
    parser.add_argument("--output", type=Path, default=Path("reconstruction.png"))
    parser.add_argument("--seed", type=int, default=0, help="draws the masks")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    return parser.parse_args(argv)


def load_images(paths: list[Path] | None, size: tuple[int, int]) -> torch.Tensor:
    """The central crops of ``paths``, or the held-out sample photos' five crops: (N, 3, H, W), normalised."""
    if paths is None:
        return heldout_batch(heldout_photos(), size)
    transform = center_transform(size)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(transform(image.convert("RGB")))
    return torch.stack(images)


def main(argv: list[str] | None = None) -> None:
    """Load the model, reconstruct the images, write the PNG, print the PSNR."""
    args = parse_args(argv)
    device = choose_device(args.device)
    model = MaskedAutoencoderViT.from_pretrained(args.checkpoint, map_location=device)
    imgs = load_images(args.images, model.config.image_hw).to(device)
    path = save_reconstructions(model, imgs, args.output, seed=args.seed)
    psnr = reconstruction_psnr(model, imgs, seed=args.seed)
    target = "normalised pixels" if model.config.norm_pix_loss else "pixels"
    print(f"{len(imgs)} images, model trained on {target}")
    print(
        f"PSNR over the removed patches ({PSNR_MASKS} masks an image): reconstruction {psnr['reconstruction']:.2f} dB,"
        f" mean-colour fill {psnr['mean_fill']:.2f} dB"
    )
    print(f"reconstruction: {path}")


if __name__ == "__main__":
    main()
