"""Unlabeled images as users keep them: finding the files, reading them as float tensors, skipping bad ones.

A source is a folder (flat, or nested to any depth: class folders are allowed and ignored) or a text file
that lists image paths, one a line (relative paths are read from the text file's folder; blank lines and
lines starting with ``#`` are skipped). Files are found by extension in any letter case.

Every file becomes a float tensor (C, H, W) with the model's channel count C:

- pictures (JPEG, PNG, WebP, and TIFFs of 1, 3 or 4 samples of 8 or 16 bits) in [0, 1], grey repeated to
  three channels, RGBA without its alpha, RGB made grey for a one-channel model;
- arrays (``.npy`` of shape (C, H, W), other TIFFs: one band a page or a plane) in their own units, and
  their band count must be the model's.

A file that cannot be read is an :class:`UnreadableImage`; a file whose bands disagree with the model is a
:class:`ChannelMismatch`, which a caller refuses before training and skips during it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from torch.utils.data import Dataset

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
SUFFIXES = PICTURE_SUFFIXES + TIFF_SUFFIXES + ARRAY_SUFFIXES
PICTURE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: what a picture's channels can be converted from
STATS_FILES = 64  # files read to measure the per-channel mean and std
STATS_SEED = 0
SHOWN_BAD_FILES = 3  # unreadable files named in a summary


class UnreadableImage(Exception):
    """A file that could not be read as an image (missing, truncated, not an image)."""


class ChannelMismatch(ValueError):
    """A file whose band count cannot become the model's channel count."""


class NoImages(ValueError):
    """A source that holds no image files."""


# ---- finding ------------------------------------------------------------------------------------


def is_image_file(path: Path) -> bool:
    """Whether ``path``'s extension, in any letter case, is one this module reads."""
    return path.suffix.lower() in SUFFIXES


def find_images(source: Path) -> list[Path]:
    """The image files of a folder (any depth) or listed in a text file, sorted: the order never depends on the disk.

    Raises :class:`NoImages` naming ``source`` when it is missing or holds no image file.
    """
    if source.is_dir():
        paths = sorted(path for path in source.rglob("*") if path.is_file() and is_image_file(path))
    elif source.is_file():
        lines = (line.strip() for line in source.read_text().splitlines())
        paths = [source.parent / line for line in lines if line and not line.startswith("#")]
    else:
        raise NoImages(f"--data {source}: no such folder or file: expected a folder of images or a text file of paths")
    if not paths:
        wanted = ", ".join(SUFFIXES)
        raise NoImages(f"--data {source}: no images found: looked for {wanted} (any letter case, any sub-folder)")
    return paths


def split(paths: Sequence[Path], holdout: int, seed: int) -> tuple[list[Path], list[Path]]:
    """``paths`` shuffled by ``seed`` and cut into (training, held-out ``holdout``): the same for the same files."""
    if not 0 < holdout < len(paths):
        raise ValueError(f"--holdout must be between 1 and {len(paths) - 1} (the images of --data), got {holdout}")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    return [paths[index] for index in order[holdout:]], [paths[index] for index in order[:holdout]]


# ---- reading ------------------------------------------------------------------------------------


def _scaled(array: np.ndarray) -> torch.Tensor:
    """An integer picture's values in [0, 1] (by its type's maximum), floats as they are: (..., H, W) float32."""
    tensor = torch.from_numpy(array.copy())  # a writable, contiguous copy (PIL's arrays are read-only)
    if array.dtype.kind not in "ui":
        return tensor.float()
    return tensor.float() / float(np.iinfo(array.dtype).max)


def _picture_channels(pixels: torch.Tensor, in_chans: int, path: Path) -> torch.Tensor:
    """A picture (1, 3 or 4 channels, (C, H, W)) as ``in_chans`` channels: grey repeated, alpha dropped, RGB greyed."""
    if in_chans not in (1, 3):
        raise ChannelMismatch(
            f"{path}: a picture of {pixels.shape[0]} channel(s) cannot fill --in-chans {in_chans}: "
            f"only .npy and TIFF files hold other band counts"
        )
    colour = pixels[:3] if pixels.shape[0] >= 3 else pixels.expand(3, -1, -1)
    if in_chans == 3:
        return colour.contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # ITU-R 601 luma, as PIL's convert("L")
    return (colour * weights).sum(dim=0, keepdim=True)


def _bands(array: np.ndarray, in_chans: int, path: Path) -> torch.Tensor:
    """An array of bands (C, H, W) in its own units, which must have ``in_chans`` bands."""
    if array.ndim != 3 or array.shape[0] != in_chans:
        raise ChannelMismatch(
            f"{path}: an array of shape {tuple(array.shape)}, expected ({in_chans}, H, W) for --in-chans {in_chans}"
        )
    return torch.from_numpy(array.copy()).float()


def _read_pil(path: Path) -> torch.Tensor:
    """A JPEG, PNG or WebP as (C, H, W) in [0, 1], C its own channel count (grey, RGB or RGBA)."""
    with Image.open(path) as image:
        mode = {"1": "L", "P": "RGBA" if "transparency" in image.info else "RGB", "LA": "RGBA", "CMYK": "RGB"}
        image = image.convert(mode.get(image.mode, image.mode))
        array = np.asarray(image)
    if array.dtype == np.int32:  # PIL's 16-bit grey ("I;16" reads as "I")
        array = array.astype(np.uint16)
    return _scaled(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def _read_tiff(path: Path, in_chans: int) -> torch.Tensor:
    """A TIFF as (C, H, W): a picture when it has 1, 3 or 4 integer samples a pixel, otherwise one band a page."""
    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        array, axes = series.asarray(), series.axes
    if array.ndim == 2:
        array, axes = array[None], "C" + axes
    if axes.endswith("S"):  # samples interleaved in each pixel: (H, W, S)
        array = np.moveaxis(array, -1, 0)
    bands = array.shape[0]
    # Integer grey, RGB or RGBA is a picture, unless the model wants exactly these 4 bands.
    if array.dtype.kind in "ui" and bands in PICTURE_CHANNELS and not bands == in_chans == 4:
        return _picture_channels(_scaled(array), in_chans, path)
    return _bands(array, in_chans, path)


def read_image(path: Path, in_chans: int) -> torch.Tensor:
    """Read one file as a float tensor (``in_chans``, H, W): pictures in [0, 1], arrays in their own units.

    Raises :class:`UnreadableImage` for a file that cannot be read, :class:`ChannelMismatch` for one whose
    bands disagree with ``in_chans``.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in ARRAY_SUFFIXES:
            return _bands(np.load(path, allow_pickle=False), in_chans, path)
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path, in_chans)
        return _picture_channels(_read_pil(path), in_chans, path)
    except ChannelMismatch:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError, Image.DecompressionBombError) as error:
        # What PIL, numpy and tifffile (TiffFileError is a ValueError) raise for missing, truncated or foreign files.
        raise UnreadableImage(f"{path}: {type(error).__name__}: {error}") from error


def is_array_file(path: Path) -> bool:
    """Whether ``path`` holds bands in their own units (``.npy``, TIFF) rather than a picture's [0, 1]."""
    return path.suffix.lower() in ARRAY_SUFFIXES + TIFF_SUFFIXES


# ---- what a run reports about its files ---------------------------------------------------------


@dataclass
class BadFiles:
    """The files skipped so far, in the order they were met, each with the reason."""

    reasons: dict[str, str]

    def add(self, path: str, reason: str) -> bool:
        """Record a skipped file; True the first time it is met (so that it is warned about once)."""
        new = path not in self.reasons
        self.reasons.setdefault(path, reason)
        return new

    def summary(self) -> str:
        """One line: how many files were skipped and the first few of them."""
        if not self.reasons:
            return "unreadable files skipped: 0"
        shown = "; ".join(self.reasons[path] for path in list(self.reasons)[:SHOWN_BAD_FILES])
        more = len(self.reasons) - SHOWN_BAD_FILES
        return f"unreadable files skipped: {len(self.reasons)} ({shown}{f'; and {more} more' if more > 0 else ''})"


def read_readable(paths: Iterable[Path], in_chans: int, bad: BadFiles) -> list[torch.Tensor]:
    """The files of ``paths`` that can be read, each (``in_chans``, H, W); the others recorded in ``bad``.

    A :class:`ChannelMismatch` is raised, not skipped: callers read these files before training starts.
    """
    images = []
    for path in paths:
        try:
            images.append(read_image(path, in_chans))
        except UnreadableImage as error:
            bad.add(str(path), str(error))
    return images


def channel_stats(
    paths: Sequence[Path], in_chans: int, bad: BadFiles, *, count: int = STATS_FILES
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over every pixel of up to ``count`` files drawn from ``paths`` (a fixed sample).

    Returns (mean, std), ``in_chans`` values each, in the files' own units. Raises :class:`NoImages` when
    none of the sampled files can be read.
    """
    sample = random.Random(STATS_SEED).sample(list(paths), min(count, len(paths)))
    images = read_readable(sample, in_chans, bad)
    if not images:
        raise NoImages(f"--data: none of the {len(sample)} files sampled for the mean and std could be read")
    pixels = torch.cat([image.flatten(1).double() for image in images], dim=1)  # (C, all pixels)
    mean, std = pixels.mean(dim=1), pixels.std(dim=1)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant band: divide by 1 rather than by 0
    return tuple(mean.tolist()), tuple(std.tolist())


class ImageFiles(Dataset):
    """Image files through ``transform``, as (image, skipped) pairs; a file that fails is replaced by the next one.

    ``skipped`` is "" or the reasons, one a line, for the files passed over: the training loop counts them
    (the dataset may live in a worker process). A replacement keeps every batch full and the run
    deterministic. ``transform``: (C, H, W) floats -> (C, H', W').
    """

    def __init__(self, paths: Sequence[Path], in_chans: int, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.paths, self.in_chans, self.transform = list(paths), in_chans, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        reasons = []
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                return self.transform(read_image(path, self.in_chans)), "\n".join(reasons)
            except (UnreadableImage, ChannelMismatch) as error:
                reasons.append(str(error))
        raise NoImages(f"--data: none of the {len(self.paths)} files could be read: {reasons[0]}")


def record_skipped(notes: Iterable[object], bad: BadFiles) -> list[str]:
    """Add the reasons :class:`ImageFiles` gave for a batch to ``bad``; returns those met for the first time."""
    reasons = (line for note in notes if isinstance(note, str) for line in note.splitlines())
    return [reason for reason in reasons if bad.add(reason.split(": ", 1)[0], reason)]
