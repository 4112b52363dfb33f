"""Reconstructions in image space, for looking at what an MAE predicts (pure torch, no plotting)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch

from .loss import NORM_PIX_EPS, patch_variance
from .masking import MaskingArgs
from .model import MaskedAutoencoderViT
from .patches import patchify, unpatchify

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Reconstruction(NamedTuple):
    """Images (B, C, H, W) in the model's input space, as in the paper's figures (clips: (B, C, T, H, W))."""

    masked: torch.Tensor
    """The input with its removed patches set to ``fill``."""
    reconstruction: torch.Tensor
    """The model's prediction of every patch."""
    pasted: torch.Tensor
    """The prediction for the removed patches, the input's own pixels for the visible ones."""
    mask: torch.Tensor
    """(B, 1, H, W), per pixel: 1 on the pixels of removed patches (``MAEOutput.mask`` says it per patch, (B, L));
    clips: (B, 1, T, H, W), 1 on the pixels of removed tubelets."""


@torch.no_grad()
def reconstruct(
    model: MaskedAutoencoderViT,
    imgs: torch.Tensor,
    *,
    mask_ratio: float | None = None,
    fill: float = 0.0,
    **masking_args: Unpack[MaskingArgs],
) -> Reconstruction:
    """Mask, predict and reassemble images. imgs: (B, C, H, W) -> :class:`Reconstruction`.

    Masking arguments as the model's forward takes them: ``mask_ratio`` and :class:`MaskingArgs` (``noise``,
    ``mask`` (B, L), bool or a model's 0 / 1 float ``out.mask``, ``generator``, and ``masking``, a strategy for this
    call such as ``GridMasking()``).
    When the model predicts per-patch normalized pixels (``config.norm_pix_loss``), a prediction says
    nothing of a patch's own mean and variance, which were hidden: each patch is mapped back to pixels
    with the mean and the standard deviation averaged over the *visible* patches of its image (their
    per-patch statistics, unbiased variance as in the loss). A model with ``loss_target="videomae"`` predicts
    the pixels in the data's units (with ``norm_pix_loss``, each channel of a patch normalised apart, mapped back
    by the visible patches' per-channel statistics), brought back to its input space. Runs without gradients.
    """
    out = model(imgs, mask_ratio=mask_ratio, **masking_args)
    config, grid = model.config, model.grid_of(imgs)
    patch = config.token_patch  # clips: (t, P_h, P_w) tubelets
    target = patchify(imgs, patch).to(out.pred.dtype)
    if config.loss_target == "mae":
        pred = _to_pixels(out.pred, target, out.mask, 1) if config.norm_pix_loss else out.pred
    else:  # VideoMAE's: pixels in the data's units, each channel normalised apart
        data = patchify(model.in_data_units(imgs), patch).to(out.pred.dtype)
        in_data_units = _to_pixels(out.pred, data, out.mask, config.in_chans) if config.norm_pix_loss else out.pred
        pred = patchify(model.in_input_space(unpatchify(in_data_units, patch, grid)), patch)
    removed = out.mask.unsqueeze(-1)
    mask_image = unpatchify(removed.expand(-1, -1, math.prod(patch)), patch, grid)
    return Reconstruction(
        masked=unpatchify(target * (1 - removed) + fill * removed, patch, grid),
        reconstruction=unpatchify(pred, patch, grid),
        pasted=unpatchify(target * (1 - removed) + pred * removed, patch, grid),
        mask=mask_image,
    )


def _to_pixels(pred: torch.Tensor, target: torch.Tensor, removed: torch.Tensor, groups: int) -> torch.Tensor:
    """Undo per-patch normalisation with the visible patches' average statistics. pred, target: (B, L, N).

    ``groups``: 1, each patch normalised as a whole (:func:`~masked_autoencoder.normalized_pixels`); C, each of
    its C channels (channel last) apart, std + eps (:func:`~masked_autoencoder.loss.channel_normalized_pixels`).
    """
    visible = (1 - removed)[:, :, None, None]  # (B, L, 1, 1)
    count = visible.sum(dim=1, keepdim=True).clamp_min(1)
    split = target.unflatten(-1, (-1, groups)) if groups > 1 else target[..., None]  # (B, L, N / G, G)
    mean = split.mean(dim=-2, keepdim=True)
    if groups > 1:
        scale = split.var(dim=-2, keepdim=True).sqrt() + NORM_PIX_EPS
    else:
        scale = (patch_variance(target)[..., None] + NORM_PIX_EPS).sqrt()
    mean, scale = ((value * visible).sum(dim=1, keepdim=True) / count for value in (mean, scale))
    return (pred.unflatten(-1, split.shape[-2:]) * scale + mean).flatten(-2)
