"""Show what a Masked Autoencoder predicts, as the paper's figures do: masked | reconstruction + visible | original.

    python examples/reconstruct.py runs/pretrain/checkpoint                 # on the held-out sample photos
    python examples/reconstruct.py facebook/vit-mae-base --images cat.jpg dog.png --output mae.png

The checkpoint is anything ``MaskedAutoencoderViT.from_pretrained`` reads (a Hub id, a folder, a file) of a
grey or RGB model. Images are centre-cropped to the model's size and normalised with the mean and std its
weights record (``model.pretrained_cfg``: ImageNet's for the published weights, a data set's own after
pretrain.py measured them); without --images, the five crops of scikit-learn's two sample photographs that
pretrain.py holds out. It prints the PSNR over the removed patches of the reconstruction and of the
visible pixels' mean colour. A model trained on normalised pixels (``norm_pix_loss``) is shown in pixels
through the visible patches' statistics (see ``masked_autoencoder.reconstruct``): every removed patch then
gets the image's average brightness and contrast, so its reconstructions look flat.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from cli import argument_parser, run_main
from common import (
    PSNR_MASKS,
    center_transform,
    choose_device,
    denormalize,
    heldout_batch,
    heldout_photos,
    reconstruction_psnr,
    save_reconstructions,
)
from PIL import Image

from masked_autoencoder import MaskedAutoencoderViT

PIL_MODES = {1: "L", 3: "RGB"}  # the channels a picture of the model can show -> how to read the images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argument_parser(__doc__)
    parser.add_argument("checkpoint", help="a Hub repo id, or a local folder or weights file")
    parser.add_argument("--images", type=Path, nargs="+", help="image files (default: held-out sample photos)")
    parser.add_argument("--output", type=Path, default=Path("reconstruction.png"), help="the PNG grid to write")
    parser.add_argument("--seed", type=int, default=0, help="draws the masks")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    return parser.parse_args(argv)


def load_images(paths: list[Path] | None, model: MaskedAutoencoderViT) -> torch.Tensor:
    """The central crops of ``paths``, or the held-out sample photos' five crops: (N, C, H, W), normalised as the
    model's weights expect."""
    cfg, size = model.pretrained_cfg, model.config.image_hw
    channels = model.config.in_chans
    if channels not in PIL_MODES:
        raise ValueError(f"reconstruct.py shows grey or RGB models; this one takes {channels} bands")
    mode = PIL_MODES[channels]
    if paths is None:
        return heldout_batch([photo.convert(mode) for photo in heldout_photos()], size, cfg)
    transform = center_transform(size, cfg)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(transform(image.convert(mode)))
    return torch.stack(images)


def main(argv: list[str] | None = None) -> None:
    """Load the model, reconstruct the images, write the PNG, print the PSNR."""
    args = parse_args(argv)
    device = choose_device(args.device)
    model = MaskedAutoencoderViT.from_pretrained(args.checkpoint, map_location=device)
    imgs = load_images(args.images, model).to(device)
    cfg = model.pretrained_cfg
    path = save_reconstructions(model, imgs, args.output, seed=args.seed, to_pixels=lambda x: denormalize(x, cfg))
    psnr = reconstruction_psnr(model, imgs, seed=args.seed, to_pixels=lambda x: denormalize(x, cfg))
    target = "normalised pixels" if model.config.norm_pix_loss else "pixels"
    print(f"{len(imgs)} images, model trained on {target}")
    print(
        f"PSNR over the removed patches ({PSNR_MASKS} masks an image): reconstruction {psnr['reconstruction']:.2f} dB,"
        f" mean-colour fill {psnr['mean_fill']:.2f} dB"
    )
    print(f"reconstruction: {path}")


if __name__ == "__main__":
    run_main(main)
