"""Draw docs/images/pipeline.png: the MAE pipeline on a real image, from the library's own pieces.

    python docs/figures/make_pipeline_figure.py

Panels: the image cut into patches | the 25% the encoder sees | the decoder's input (encoded
tokens and shared mask tokens, in image order) | the loss only on the removed patches.
Needs pillow and scikit-image (the `examples` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage import data

from masked_autoencoder import RandomMasking, patchify, unpatchify

SIZE, PATCH, PAD = 224, 16, 12
OUT = Path(__file__).resolve().parents[1] / "images" / "pipeline.png"


def _to_image(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor.clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy())


def _grid_lines(image: Image.Image) -> Image.Image:
    draw = ImageDraw.Draw(image)
    for x in range(0, SIZE, PATCH):
        draw.line([(x, 0), (x, SIZE)], fill=(255, 255, 255))
        draw.line([(0, x), (SIZE, x)], fill=(255, 255, 255))
    return image


def main() -> None:
    image = Image.fromarray(data.chelsea()).resize((SIZE, SIZE))
    imgs = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    patches = patchify(imgs, PATCH)  # (1, L, P*P*3)
    masked = RandomMasking(0.75)(patches, generator=torch.Generator().manual_seed(0))
    removed = masked.mask[..., None]  # (1, L, 1)
    gray = torch.full_like(patches, 0.5)
    mask_token = torch.tensor([0.30, 0.45, 0.85]).repeat(PATCH * PATCH)  # one shared token, drawn blue
    panels = [
        imgs[0],
        unpatchify(patches * (1 - removed) + gray * removed, PATCH, SIZE // PATCH)[0],
        unpatchify(patches * (1 - removed) + mask_token * removed, PATCH, SIZE // PATCH)[0],
        unpatchify(patches * removed + gray * (1 - removed), PATCH, SIZE // PATCH)[0],
    ]
    titles = ["1. patches", "2. encoder: 25% kept", "3. decoder: + mask tokens", "4. loss: removed only"]
    canvas = Image.new("RGB", (4 * SIZE + 5 * PAD, SIZE + 3 * PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        x = PAD + index * (SIZE + PAD)
        canvas.paste(_grid_lines(_to_image(panel)), (x, 2 * PAD))
        draw.text((x, 4), title, fill=(0, 0, 0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
