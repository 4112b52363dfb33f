"""Continue MAE pre-training on 13-band images, starting from RGB weights (``in_chans=13``).

    python examples/multispectral.py                                  # facebook/vit-mae-base (downloads once)
    python examples/multispectral.py --weights runs/pretrain/checkpoint --bands 13 --steps 100

``from_pretrained(weights, in_chans=13)`` adapts the RGB weights: the patch embedding as timm's
``adapt_input_conv`` (the R, G, B filters repeated over the bands and scaled by 3 / 13) and the pixel
head (band c predicted as RGB channel c mod 3). The data here are synthetic stand-ins for a
multispectral set (EuroSAT, Sentinel-2 tiles): each band a fixed random mix of the R, G and B channels
of scikit-image's photographs, so that the bands are correlated as real ones are. Put your own
(B, 13, H, W) tensors in their place. The script prints the masked-patch loss before and after the
steps on held-out images and writes the adapted model to ``--output``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from cli import argument_parser, run_main
from skimage import data

from masked_autoencoder import MaskedAutoencoderViT

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def synthetic_bands(bands: int, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, bands, size, size) images: random crops of the photographs, each band a random mix of R, G, B."""
    mix = torch.rand(bands, 3, generator=generator)
    mix = mix / mix.sum(dim=1, keepdim=True)
    photos = [torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255 for name in PHOTOS]
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crops.append(photo[:, top : top + size, left : left + size])
    rgb = torch.stack(crops)  # (count, 3, size, size)
    multispectral = torch.einsum("kc,bchw->bkhw", mix, rgb)
    return (multispectral - multispectral.mean()) / multispectral.std()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--weights", default="facebook/vit-mae-base", help="RGB MAE weights: a repo id or path")
    parser.add_argument("--bands", type=int, default=13, help="input channels (bands) of the model")
    parser.add_argument("--steps", type=int, default=50, help="training steps")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    parser.add_argument("--output", type=Path, default=Path("runs/multispectral"), help="where the results are written")
    return parser.parse_args(argv)


def masked_loss(model: MaskedAutoencoderViT, imgs: torch.Tensor, seed: int = 0) -> float:
    """The MAE loss on images, with fixed masks, in eval mode."""
    model.eval()
    with torch.no_grad():
        return float(model(imgs, generator=torch.Generator().manual_seed(seed)).loss)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = MaskedAutoencoderViT.from_pretrained(args.weights, in_chans=args.bands)
    size = model.config.image_hw[0]
    generator = torch.Generator().manual_seed(0)
    train = synthetic_bands(args.bands, size, 64, generator)
    held_out = synthetic_bands(args.bands, size, 16, generator)
    print(f"{args.weights} adapted to {args.bands} bands: patch embedding {tuple(model.patch_embed.proj.weight.shape)}")
    before = masked_loss(model, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    model.train()  # from_pretrained returns eval mode
    for step in range(args.steps):
        batch = train[torch.randint(len(train), (args.batch_size,), generator=generator)]
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    after = masked_loss(model, held_out)
    print(f"held-out masked-patch loss: {before:.4f} before, {after:.4f} after {args.steps} steps")
    model.save_pretrained(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run_main(main)
