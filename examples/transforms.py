"""torchvision transforms built from a model's ``pretrained_cfg``: what its weights expect as input, one lookup.

Images are PIL images (or tensors) until these transforms turn them into float tensors (C, H, W), normalised
with the ``mean`` and ``std`` the model records (ImageNet's for the published weights, a data set's own after
``examples/pretrain.py`` measured them). Sizes come from ``input_size`` (C, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision.transforms import v2

DataConfig = Mapping[str, Any]
PRETRAIN_CROP_SCALE = (0.2, 1.0)  # the paper's RandomResizedCrop area range for pre-training (appendix A.1)
# The paper's fine-tuning augmentation (appendix A.2, timm's "rand-m9-mstd0.5-inc1"): two RandAugment operations
# of magnitude 9, then random erasing with probability 0.25; torchvision's RandAugment has no magnitude noise.
RAND_AUGMENT_OPS = 2
RAND_AUGMENT_MAGNITUDE = 9
ERASE_PROB = 0.25


def image_size(cfg: DataConfig) -> tuple[int, int]:
    """The model's input (H, W)."""
    _, height, width = cfg["input_size"]
    return height, width


def interpolation(cfg: DataConfig) -> v2.InterpolationMode:
    """The resize the weights were trained with (``"bicubic"`` for every published MAE)."""
    return v2.InterpolationMode(cfg["interpolation"])


def normalize(cfg: DataConfig) -> v2.Normalize:
    """Pixels (..., C, H, W) in the data's units -> the model's input space."""
    return v2.Normalize(cfg["mean"], cfg["std"])


def denormalize(imgs: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """The model's input space (..., C, H, W) -> pixels in the data's units ([0, 1] for images; not clipped)."""
    shape = (len(cfg["mean"]), 1, 1)
    mean = torch.tensor(cfg["mean"], dtype=imgs.dtype, device=imgs.device).view(shape)
    return imgs * torch.tensor(cfg["std"], dtype=imgs.dtype, device=imgs.device).view(shape) + mean


def to_model_input(cfg: DataConfig) -> v2.Compose:
    """A PIL image (or a tuple of them) -> floats (C, H, W) in [0, 1], then normalised."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), normalize(cfg)])


def pretrain_transform(cfg: DataConfig) -> v2.Compose:
    """The paper's only pre-training augmentations, RandomResizedCrop (scale 0.2-1) and a flip: -> (C, H, W)."""
    crop = v2.RandomResizedCrop(image_size(cfg), scale=PRETRAIN_CROP_SCALE, interpolation=interpolation(cfg))
    return v2.Compose([crop, v2.RandomHorizontalFlip(), to_model_input(cfg)])


def eval_transform(cfg: DataConfig) -> v2.Compose:
    """The official evaluation: short side resized to side / ``crop_pct``, the centre cropped: (C, H, W)."""
    height, width = image_size(cfg)
    resize = v2.Resize(int(max(height, width) / cfg["crop_pct"]), interpolation=interpolation(cfg))
    return v2.Compose([resize, v2.CenterCrop((height, width)), to_model_input(cfg)])


def finetune_transform(
    cfg: DataConfig,
    *,
    magnitude: int = RAND_AUGMENT_MAGNITUDE,
    erase_prob: float = ERASE_PROB,
) -> v2.Compose:
    """The paper's fine-tuning augmentation: RandomResizedCrop (default scale 0.08-1), flip, RandAugment, the
    model's input, then RandomErasing: -> (C, H, W). ``magnitude`` 0 leaves RandAugment out, ``erase_prob`` 0 the
    erasing (the linear probe's augmentation is the crop and the flip only)."""
    crop = v2.RandomResizedCrop(image_size(cfg), interpolation=interpolation(cfg))
    augment = [v2.RandAugment(RAND_AUGMENT_OPS, magnitude, interpolation=interpolation(cfg))] if magnitude else []
    erase = [v2.RandomErasing(erase_prob, value=0)] if erase_prob else []  # 0: the mean pixel, after normalisation
    return v2.Compose([crop, v2.RandomHorizontalFlip(), *augment, to_model_input(cfg), *erase])
