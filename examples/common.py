"""What the examples share: images without torchvision, PNG writing, model flags, device, precision, lr schedule.

Images are ``PIL`` RGB images until the last step, which turns them into float tensors (3, H, W)
normalised with the ImageNet mean and std, as every published MAE expects. Sizes are (H, W).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from masked_autoencoder import MaskedAutoencoderViT, autocast_dtype, create_model, reconstruct

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# The colour photographs inside scikit-image's wheel (its other samples are downloaded on first use).
SAMPLE_IMAGES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)
PREVIEW_COUNT = 4
GRID_TITLES = ("original", "masked", "reconstruction", "reconstruction + visible")
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

Size = tuple[int, int]
ImageSource = Path | Image.Image


# ---- images -------------------------------------------------------------------------------------


def sample_image_paths() -> list[Path]:
    """The colour sample photographs of scikit-image, read from its installed package (no download)."""
    folder = resources.files("skimage") / "data"
    return [Path(str(folder / name)) for name in SAMPLE_IMAGES]


def find_images(root: str | Path) -> list[Path]:
    """Every image file under ``root``, recursively, in a stable order."""
    paths = sorted(path for path in Path(root).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no image files ({' '.join(IMAGE_SUFFIXES)}) under {root}")
    return paths


def load_rgb(source: ImageSource, short_side: int | None = None) -> Image.Image:
    """An image file read as RGB (an image in memory is taken as it is), shrunk (never enlarged) to ``short_side``."""
    image = source
    if isinstance(source, Path):
        with Image.open(source) as opened:
            image = opened.convert("RGB")
    scale = short_side / min(image.size) if short_side else 1.0
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image


def training_images(data: str | Path | None, size: Size) -> list[ImageSource]:
    """The files under ``data`` (read when used), or without it the sample photographs, held in memory."""
    if data is not None:
        return find_images(data)
    # Shrunk once, so that cropping stays cheap: a crop of 20% of the area still has enough pixels.
    return [load_rgb(path, short_side=4 * max(size)) for path in sample_image_paths()]


def random_resized_crop(
    image: Image.Image, size: Size, scale: tuple[float, float] = (0.2, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> Image.Image:
    """torchvision's RandomResizedCrop: a box of random area fraction and aspect ratio, resized (bicubic) to ``size``.

    Like torchvision, it tries ten boxes and then falls back to a central crop.
    """
    width, height = image.size
    for _ in range(10):
        area = width * height * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        box_w, box_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < box_w <= width and 0 < box_h <= height:
            left, top = random.randint(0, width - box_w), random.randint(0, height - box_h)
            box = (left, top, left + box_w, top + box_h)
            return image.resize((size[1], size[0]), Image.Resampling.BICUBIC, box=box)
    return center_crop(image, size)


def center_crop(image: Image.Image, size: Size) -> Image.Image:
    """The largest central box of the aspect ratio of ``size``, resized (bicubic) to it."""
    scale = min(image.width / size[1], image.height / size[0])
    box_w, box_h = size[1] * scale, size[0] * scale
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    return image.resize((size[1], size[0]), Image.Resampling.BICUBIC, box=(left, top, left + box_w, top + box_h))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as floats in [0, 1]: (3, H, W). Reads the bytes directly: no numpy needed."""
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image.height, image.width, 3).permute(2, 0, 1).float().div(255)


def to_image(pixels: torch.Tensor) -> Image.Image:
    """Floats in [0, 1] (3, H, W) (clipped) as an RGB image."""
    data = pixels.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu()
    return Image.frombytes("RGB", (pixels.shape[2], pixels.shape[1]), bytes(data.flatten().tolist()))


def _stats(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet mean and std as (3, 1, 1) tensors on ``like``'s device."""
    mean = torch.tensor(IMAGENET_MEAN, device=like.device).view(3, 1, 1)
    return mean, torch.tensor(IMAGENET_STD, device=like.device).view(3, 1, 1)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels (..., 3, H, W) -> the model's input space (ImageNet mean and std)."""
    mean, std = _stats(pixels)
    return (pixels - mean) / std


def denormalize(imgs: torch.Tensor) -> torch.Tensor:
    """The model's input space (..., 3, H, W) -> [0, 1] pixels (not clipped)."""
    mean, std = _stats(imgs)
    return imgs * std + mean


def pretrain_transform(image: Image.Image, size: Size) -> torch.Tensor:
    """The paper's only augmentations, RandomResizedCrop (scale 0.2-1.0) and a horizontal flip: (3, H, W)."""
    image = random_resized_crop(image, size)
    if random.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(to_tensor(image))


def preview_batch(sources: Sequence[ImageSource], size: Size) -> torch.Tensor:
    """Central crops of images, normalised: a fixed batch to look at. -> (N, 3, H, W)."""
    return torch.stack([normalize(to_tensor(center_crop(load_rgb(source), size))) for source in sources])


class ImageDataset(Dataset):
    """Images (files, read on access, or images in memory) through ``transform``, each listed ``repeats`` times.

    Repeating lets a handful of images fill batches: every access draws a new random crop.
    """

    def __init__(
        self, sources: Sequence[ImageSource], transform: Callable[[Image.Image], torch.Tensor], repeats: int = 1
    ) -> None:
        self.sources, self.transform, self.repeats = list(sources), transform, repeats

    def __len__(self) -> int:
        return len(self.sources) * self.repeats

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb(self.sources[index % len(self.sources)]))


# ---- PNG files ----------------------------------------------------------------------------------


def save_grid(columns: Sequence[torch.Tensor], titles: Sequence[str], path: str | Path, tile: int = 192) -> Path:
    """Write image columns, each (N, 3, H, W) in [0, 1], as a PNG: one row per image, titled, enlarged to ~``tile`` px.

    Enlarged by an integer factor with nearest-neighbour sampling, so that patches stay sharp squares.
    """
    count, _, height, width = columns[0].shape
    scale, gap, header = max(1, tile // height), 4, 22
    cell_w, cell_h = width * scale + gap, height * scale + gap
    sheet = Image.new("RGB", (gap + len(columns) * cell_w, header + count * cell_h), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=13)
    for col, (images, title) in enumerate(zip(columns, titles, strict=True)):
        draw.text((gap + col * cell_w, 4), title, fill="black", font=font)
        for row in range(count):
            tile_image = to_image(images[row]).resize((width * scale, height * scale), Image.Resampling.NEAREST)
            sheet.paste(tile_image, (gap + col * cell_w, header + row * cell_h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def save_reconstructions(
    model: MaskedAutoencoderViT,
    imgs: torch.Tensor,
    path: str | Path,
    *,
    mask_ratio: float | None = None,
    seed: int = 0,
) -> Path:
    """Write original | masked | reconstruction | reconstruction + visible for a batch (N, 3, H, W), normalised.

    The mask is drawn from ``seed``: the same images get the same mask in every PNG, so PNGs compare.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator(imgs.device).manual_seed(seed)
    out = reconstruct(model, imgs, mask_ratio=mask_ratio, generator=generator)
    model.train(was_training)
    columns = [imgs, out.masked, out.reconstruction, out.pasted]
    return save_grid([denormalize(column) for column in columns], GRID_TITLES, path)


def save_loss_plot(csv_path: str | Path, png_path: str | Path, size: Size = (360, 640)) -> Path:
    """Plot the ``loss`` column of a CSV against its ``step`` column: raw values in grey, a moving average in blue."""
    with open(csv_path, newline="") as file:
        rows = [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(file)]
    steps, losses = [step for step, _ in rows], [loss for _, loss in rows]
    window = max(1, len(losses) // 50)
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / min(window, i + 1) for i in range(len(losses))]
    (height, width), margin = size, 56
    low, high = min(losses), max(losses)
    first, last = steps[0], max(steps[-1], steps[0] + 1)

    def point(step: int, loss: float) -> tuple[float, float]:
        x = margin + (step - first) / (last - first) * (width - 2 * margin)
        return x, height - margin - (loss - low) / max(high - low, 1e-12) * (height - 2 * margin)

    sheet = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=13)
    draw.rectangle((margin, margin, width - margin, height - margin), outline="black")
    draw.line([point(s, v) for s, v in zip(steps, losses, strict=True)], fill=(190, 190, 190))
    draw.line([point(s, v) for s, v in zip(steps, smooth, strict=True)], fill=(31, 119, 180), width=2)
    draw.text((margin, 16), "MAE pre-training loss (grey: per step; blue: moving average)", fill="black", font=font)
    draw.text((4, margin - 7), f"{high:.3f}", fill="black", font=font)
    draw.text((4, height - margin - 7), f"{low:.3f}", fill="black", font=font)
    draw.text((margin, height - margin + 6), f"step {first}", fill="black", font=font)
    draw.text((width - margin - 60, height - margin + 6), f"step {steps[-1]}", fill="black", font=font)
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)
    return Path(png_path)


# ---- model, device, precision -------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a fresh model; the defaults make a small one that trains in minutes on a CPU."""
    parser.add_argument("--model", default="mae_vit_tiny", help="an architecture of masked_autoencoder.list_models()")
    parser.add_argument("--img-size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--patch-size", type=int, default=8, help="patch side in pixels (the paper: 16, or 14)")


def build_model(args: argparse.Namespace, *, encoder_only: bool = False, **overrides: Any) -> Any:
    """A freshly initialised model from the flags of :func:`add_model_arguments` and config overrides."""
    sizes = {"img_size": args.img_size, "patch_size": args.patch_size}
    return create_model(args.model, encoder_only=encoder_only, **sizes, **overrides)


def choose_device(name: str | None = None) -> torch.device:
    """The device called ``name``, or by default CUDA when there is one, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def choose_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision``, None for fp32. ``auto``: what the hardware runs fast."""
    return autocast_dtype(device) if precision == "auto" else PRECISIONS[precision]


# ---- optimisation -------------------------------------------------------------------------------


def learning_rate(step: int, *, peak: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 to ``peak``, then half a cosine down to ``min_lr``, per step (the official schedule)."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
