"""What the examples share that is specific to MAE: the model's input space, the offline photos, model flags,
device and precision, the lr schedule, and the paper's reconstruction figure with its PSNR.

Images are PIL images or float tensors (C, H, W) until a torchvision transform of ``transforms.py`` turns them
into the model's input space, normalised with the mean and std of a ``pretrained_cfg`` (a model's, or
:func:`photo_cfg`'s ImageNet statistics, as every published MAE expects). Sizes are (H, W). Figures and PSNR
look at images through a ``to_pixels`` function: the model's input space (N, C, H, W) -> [0, 1] values to show.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import transforms
from matplotlib.figure import Figure
from PIL import Image
from sklearn.datasets import load_sample_images
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.utils import make_grid, save_image

from masked_autoencoder import MaskedAutoencoderViT, autocast_dtype, create_model, reconstruct
from masked_autoencoder.data_config import IMAGENET_MEAN, IMAGENET_STD

# The photographs inside scikit-image's wheel (its other samples are downloaded on first use): nine in colour,
# eight grey (used as RGB). The grey ones add textures and edges: with them the default run's held-out PSNR gain
# rose from +2.87 to +3.45 dB (500 steps, same seed).
SAMPLE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "cell.png",
    "page.png",
)
HELDOUT_ZOOM = 2  # held-out images are resized to twice the model's side, then cut into five crops
PSNR_MASKS = 4  # masks drawn per held-out image when measuring PSNR
TILE = 128  # figures enlarge images to about this side, so that patches stay visible
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# --model demo: mae_vit_tiny made narrower (128) and shallower (4 encoder blocks, 1 decoder block), so that on
# 64 x 64 images in patches of 4 (256 patches: fine enough to show detail) it pre-trains in minutes on a CPU.
DEMO_MODEL = dict(embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=4)

Size = tuple[int, int]
Pixels = Callable[[torch.Tensor], torch.Tensor]


# ---- images -------------------------------------------------------------------------------------


PHOTO_STATS = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}  # what every published MAE was fed


def photo_cfg(size: Size) -> dict[str, Any]:
    """The ``pretrained_cfg`` of an RGB model fed photographs of ``size``: ImageNet's mean and std, bicubic."""
    return {"input_size": (3, *size), "interpolation": "bicubic", "crop_pct": 1.0, **PHOTO_STATS}


normalize = transforms.normalize(PHOTO_STATS)
"""[0, 1] pixels (..., 3, H, W) -> an RGB photo model's input space."""


def denormalize(imgs: torch.Tensor, cfg: transforms.DataConfig | None = None) -> torch.Tensor:
    """The model's input space (..., C, H, W) -> pixels in the data's units (not clipped); ImageNet's by default."""
    return transforms.denormalize(imgs, cfg or PHOTO_STATS)


def pretrain_transform(size: Size) -> v2.Compose:
    """The paper's only augmentations for RGB photos: RandomResizedCrop (0.2-1.0, bicubic) and a flip: (3, H, W)."""
    return transforms.pretrain_transform(photo_cfg(size))


def center_transform(size: Size, cfg: transforms.DataConfig | None = None) -> v2.Compose:
    """The central crop of an image, resized (bicubic) so that it fills ``size``: (C, H, W)."""
    resize = v2.Resize(max(size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    return v2.Compose([resize, v2.CenterCrop(size), transforms.to_model_input(cfg or photo_cfg(size))])


def heldout_batch(
    images: Sequence[Image.Image | torch.Tensor], size: Size, cfg: transforms.DataConfig | None = None
) -> torch.Tensor:
    """Five crops (the corners and the centre) of each image resized to twice ``size``: (5 * N, C, H, W).

    Fixed views, so that runs compare; each sees a quarter of the image, as training crops do on average.
    Normalised with ``cfg`` (default: :func:`photo_cfg`).
    """
    resize = v2.Resize(HELDOUT_ZOOM * max(size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    views = v2.Compose([resize, v2.FiveCrop(size), transforms.to_model_input(cfg or photo_cfg(size))])
    # A tensor marked as an image: in a tuple of plain tensors, v2 would transform only the first crop.
    images = [tv_tensors.Image(image) if isinstance(image, torch.Tensor) else image for image in images]
    return torch.cat([torch.stack(views(image)) for image in images])


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    """An RGB copy of ``image`` whose short side is at most ``side``: random crops of it stay cheap."""
    scale = side / min(image.size)
    image = image.convert("RGB")
    if scale >= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)


def sample_photos(size: Size) -> list[Image.Image]:
    """scikit-image's photographs, read from its installed package, as RGB: the default training images."""
    folder = resources.files("skimage") / "data"
    photos = []
    for name in SAMPLE_PHOTOS:
        with Image.open(Path(str(folder / name))) as image:
            photos.append(_shrunk(image, 4 * max(size)))  # a 20% crop still has more pixels than the model
    return photos


def heldout_photos() -> list[Image.Image]:
    """scikit-learn's two sample photographs (a temple, a flower), never trained on by default."""
    return [Image.fromarray(array) for array in load_sample_images().images]


class Photos(Dataset):
    """Images in memory through ``transform``, as (image, 0) pairs like a one-class ImageFolder."""

    def __init__(self, images: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images, self.transform = list(images), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), 0


# ---- reconstructions ----------------------------------------------------------------------------


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def mean_fill(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The baseline: removed pixels set to the mean colour of the image's visible ones.

    pixels: (B, C, H, W), mask: (B, 1, H, W), 1 on removed pixels -> (B, C, H, W).
    """
    visible = 1 - mask
    mean = (pixels * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True)
    return pixels * visible + mean * mask


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of [0, 1] images over their removed pixels only, per image.

    pred, target: (B, C, H, W), mask: (B, 1, H, W), 1 on removed pixels -> (B,).
    """
    error = ((pred - target) ** 2 * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * pred.shape[1])
    return -10 * torch.log10(error)


@torch.no_grad()
def reconstruction_psnr(
    model: MaskedAutoencoderViT,
    imgs: torch.Tensor,
    *,
    masks: int = PSNR_MASKS,
    seed: int = 0,
    to_pixels: Pixels = denormalize,
) -> dict[str, float]:
    """Mean PSNR (dB) over the removed patches of ``imgs`` (N, C, H, W), normalised, each under ``masks`` masks.

    ``reconstruction``: the model's prediction; ``mean_fill``: the visible pixels' mean colour; both in the
    [0, 1] values of ``to_pixels`` (clipped).
    """
    pixels, scores = to_pixels(imgs).clamp(0, 1), {"reconstruction": [], "mean_fill": []}
    with _eval_mode(model):
        for index in range(masks):
            generator = torch.Generator(imgs.device).manual_seed(seed + index)
            out = reconstruct(model, imgs, generator=generator)
            predicted = to_pixels(out.pasted).clamp(0, 1)
            scores["reconstruction"].append(masked_psnr(predicted, pixels, out.mask))
            scores["mean_fill"].append(masked_psnr(mean_fill(pixels, out.mask), pixels, out.mask))
    return {name: torch.cat(values).mean().item() for name, values in scores.items()}


def save_reconstructions(
    model: MaskedAutoencoderViT,
    imgs: torch.Tensor,
    path: str | Path,
    *,
    seed: int = 0,
    to_pixels: Pixels = denormalize,
    bands: Sequence[int] | None = None,
) -> Path:
    """Write the paper's figure for a batch (N, C, H, W), normalised: masked | reconstruction + visible | original.

    Two images per row, shown as ``to_pixels`` maps them; ``bands``: the three channels shown as RGB, or one shown
    in grey (default: all, for RGB). The mask is drawn from ``seed``: the same images get the same mask in every PNG.
    """
    with _eval_mode(model):
        out = reconstruct(model, imgs, generator=torch.Generator(imgs.device).manual_seed(seed))
    triplets = torch.stack([out.masked, out.pasted, imgs], dim=1).flatten(0, 1)  # (3N, C, H, W), row by row
    scale = max(1, TILE // imgs.shape[-2])
    shown = to_pixels(triplets) if bands is None else to_pixels(triplets)[:, list(bands)]
    tiles = F.interpolate(shown.clamp(0, 1), scale_factor=scale, mode="nearest")  # sharp patches
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=6, padding=4, pad_value=1.0), path)
    return path


def save_loss_plot(steps: Sequence[int], losses: Sequence[float], path: str | Path) -> Path:
    """Plot the loss against the step: every step in grey, a moving average over 2% of the steps in blue."""
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    figure = Figure(figsize=(6.4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.plot(steps, losses, color="0.75", linewidth=0.8, label="per step")
    axes.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"moving average ({window} steps)")
    axes.set(xlabel="step", ylabel="loss (removed patches)", title="MAE pre-training loss")
    axes.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


# ---- model, device, precision -------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a fresh model; the defaults make a small one that trains in minutes on a CPU."""
    parser.add_argument("--model", default="demo", help="an architecture of list_models(), or demo (DEMO_MODEL)")
    parser.add_argument("--img-size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--patch-size", type=int, default=4, help="patch side in pixels (the paper: 16, or 14)")


def build_model(args: argparse.Namespace, *, encoder_only: bool = False, **overrides: Any) -> Any:
    """A freshly initialised model from the flags of :func:`add_model_arguments` and config overrides."""
    name, demo = ("mae_vit_tiny", DEMO_MODEL) if args.model == "demo" else (args.model, {})
    sizes = {"img_size": args.img_size, "patch_size": args.patch_size}
    return create_model(name, encoder_only=encoder_only, **sizes, **demo, **overrides)


def choose_device(name: str | None = None) -> torch.device:
    """The device called ``name``, or by default CUDA when there is one, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def choose_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision``, None for fp32. ``auto``: what the hardware runs fast."""
    return autocast_dtype(device) if precision == "auto" else PRECISIONS[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """The ``--precision`` name of an autocast dtype, ``fp32`` for None: what a run records."""
    return next(name for name, value in PRECISIONS.items() if value == dtype)


# ---- optimisation -------------------------------------------------------------------------------


def learning_rate(step: int, *, peak: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 to ``peak``, then half a cosine down to ``min_lr``, per step (the official schedule)."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr set to ``lr`` times its ``lr_scale`` (1 when it has none), as the official scripts do."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def autocast(device_type: str, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device_type``; None: fp32, autocast off."""
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    lr: float,
    compute_loss: Callable[[], torch.Tensor],
    device_type: str,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """One step: the lr set (:func:`set_learning_rate`); ``compute_loss()`` under :func:`autocast`; a scaled
    backward and step (the scaler is a no-op unless fp16). Returns the loss, detached."""
    set_learning_rate(optimizer, lr)
    with autocast(device_type, dtype):
        loss = compute_loss()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()
