"""Linear probing as in the paper: a linear classifier on the class token of a frozen encoder."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import require, require_positive_int
from .vit import VisionTransformer

_HEAD_STD = 0.01  # the official probe's init (following MoCo v3)
_BN_EPS = 1e-6


def linear_probe_head(dim: int, num_classes: int) -> nn.Sequential:
    """The official probe head: BatchNorm1d without affine (eps 1e-6), then a linear layer. (B, D) -> (B, classes).

    The norm standardises each feature over the batch, which a linear head on frozen features needs
    (MAE features are far from unit scale). Linear: trunc normal weights (std 0.01), zero bias.
    """
    require_positive_int(dim, "dim")
    require_positive_int(num_classes, "num_classes")
    linear = nn.Linear(dim, num_classes)
    nn.init.trunc_normal_(linear.weight, std=_HEAD_STD)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=_BN_EPS), linear)


class LinearProbe(nn.Module):
    """A linear classifier on a frozen encoder's class token (after its final norm). imgs: (B, C, H, W) -> (B, classes).

    ``encoder``: an :class:`MAEEncoder` (a full :class:`MaskedAutoencoderViT` works too: its encoder
    half is used), or another model of the same trunk with a final norm (a class-token
    :class:`MAEViTClassifier`). The probe freezes it (``requires_grad=False``) and keeps it in eval
    mode whatever :meth:`train` is told, so that no drop path or other training behaviour touches the features;
    only ``head`` (:func:`linear_probe_head`) trains, and its BatchNorm follows ``train()`` / ``eval()``.
    Optimise ``probe.head.parameters()`` (the paper: LARS, 90 epochs). State keys: ``encoder.*``, ``head.*``.
    """

    def __init__(self, encoder: VisionTransformer, num_classes: int) -> None:
        # The probe's feature is the class token after the final norm: a model without one (global pool) has none.
        ok = isinstance(encoder, VisionTransformer) and encoder.norm is not None
        require(
            ok, "encoder", type(encoder).__name__, "an MAEEncoder with its final norm (not a global-pool classifier)"
        )
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.head = linear_probe_head(encoder.config.embed_dim, num_classes)

    def train(self, mode: bool = True) -> LinearProbe:
        """Set the head's mode; the frozen encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Classify images from the encoder's class token. imgs: (B, C, H, W) -> logits (B, num_classes)."""
        return self.head(self.encoder.forward_pooled(imgs, "token"))
