"""The MAE reconstruction loss: MSE per patch, averaged over removed patches only."""

from __future__ import annotations

import torch

from ._validation import describe, require

NORM_PIX_EPS = 1e-6
# Images first is the order of model.forward_loss: the likeliest reason for a 4-D pred.
_EXPECTED_PATCHES = (
    "a 3-D tensor (B, L, N): the call is mae_loss(pred, patchify(imgs, patch_size), mask); "
    "a model's forward_loss(imgs, pred, mask) takes the images first"
)


def patch_variance(patches: torch.Tensor) -> torch.Tensor:
    """Each patch's variance over its values. (B, L, N) -> (B, L, 1).

    Unbiased (torch's default), as the official code; a patch of one value has variance 0 (not NaN).
    """
    return patches.var(dim=-1, keepdim=True, correction=1 if patches.shape[-1] > 1 else 0)


def normalized_pixels(target: torch.Tensor, eps: float = NORM_PIX_EPS) -> torch.Tensor:
    """Normalize each patch by its own mean and variance (:func:`patch_variance`). target: (B, L, N) -> (B, L, N)."""
    mean = target.mean(dim=-1, keepdim=True)
    return (target - mean) / (patch_variance(target) + eps).sqrt()


def channel_normalized_pixels(target: torch.Tensor, channels: int, eps: float = NORM_PIX_EPS) -> torch.Tensor:
    """VideoMAE's target: each channel of each patch normalised apart, by its mean and unbiased std, + ``eps``.

    target: (B, L, N), each patch's values ordered with the channel last (:func:`patchify`'s order) -> (B, L, N).
    """
    split = target.unflatten(-1, (-1, channels))  # (B, L, N / C, C)
    std = split.var(dim=-2, keepdim=True, correction=1 if split.shape[-2] > 1 else 0).sqrt()
    return ((split - split.mean(dim=-2, keepdim=True)) / (std + eps)).flatten(-2)


def mae_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = False,
    eps: float = NORM_PIX_EPS,
) -> torch.Tensor:
    """Mean squared error on removed patches: ``sum(mse_per_patch * mask) / sum(mask)``.

    pred, target: (B, L, N) (``target`` usually :func:`patchify` of the images), mask: (B, L)
    with 1 = removed -> a scalar. With ``norm_pix_loss`` the target of each patch is
    :func:`normalized_pixels`. Computed in (at least) float32 even under autocast. A mask with no
    removed patch gives 0, not NaN.
    """
    check_loss_inputs(pred, target, mask)
    return masked_mse(pred, target, mask, norm_pix_loss, eps)


def check_loss_inputs(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise unless ``pred`` and ``target`` are (B, L, N) tensors of one shape and ``mask`` a (B, L) tensor."""
    for name, value in (("pred", pred), ("target", target)):
        require(isinstance(value, torch.Tensor) and value.dim() == 3, name, describe(value), _EXPECTED_PATCHES)
    require(target.shape == pred.shape, "target", describe(target), f"the shape of pred {tuple(pred.shape)}")
    ok_mask = isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(pred.shape[:2])
    require(ok_mask, "mask", describe(mask), f"a tensor of shape {tuple(pred.shape[:2])} (B, L)")


def masked_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool,
    eps: float = NORM_PIX_EPS,
    channels: int | None = None,
) -> torch.Tensor:
    """:func:`mae_loss` of inputs already checked (the model's inner path). (B, L, N), (B, L, N), (B, L) -> ().

    ``channels``: normalise each channel of a patch apart (:func:`channel_normalized_pixels`, VideoMAE's target).
    """
    compute = torch.promote_types(pred.dtype, torch.float32)
    pred, target, mask = pred.to(compute), target.to(compute), mask.to(compute)
    if norm_pix_loss:
        if channels is None:
            target = normalized_pixels(target, eps)
        else:
            target = channel_normalized_pixels(target, channels, eps)
    per_patch = (pred - target).pow(2).mean(dim=-1)
    # tiny instead of 0: an all-kept mask gives 0 / tiny = 0, and any real count is unchanged.
    return (per_patch * mask).sum() / mask.sum().clamp_min(torch.finfo(compute).tiny)
