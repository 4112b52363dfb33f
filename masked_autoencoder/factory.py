"""Model factories: ``create_model`` and the ``mae_vit_*`` functions, built from the named architectures."""

from __future__ import annotations

from typing import Any

from .architectures import model_config
from .model import MaskedAutoencoderViT


def create_model(name: str, *, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """Build a named architecture with freshly initialised weights; overrides change config fields.

    ``pretrained`` is reserved for loading published weights and must be False for now.
    """
    if pretrained:
        raise NotImplementedError("pretrained weights are not available yet: pass pretrained=False")
    return MaskedAutoencoderViT(model_config(name, **overrides))


def mae_vit_tiny_patch16(*, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """MAE with a ViT-Ti/16 encoder (192 wide, 12 blocks) and a 128-wide, 4-block decoder."""
    return create_model("mae_vit_tiny_patch16", pretrained=pretrained, **overrides)


def mae_vit_small_patch16(*, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """MAE with a ViT-S/16 encoder (384 wide, 12 blocks) and a 256-wide, 4-block decoder."""
    return create_model("mae_vit_small_patch16", pretrained=pretrained, **overrides)


def mae_vit_base_patch16(*, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """MAE ViT-B/16 as in the paper (768 wide, 12 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_base_patch16", pretrained=pretrained, **overrides)


def mae_vit_large_patch16(*, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """MAE ViT-L/16 as in the paper (1024 wide, 24 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_large_patch16", pretrained=pretrained, **overrides)


def mae_vit_huge_patch14(*, pretrained: bool | str = False, **overrides: Any) -> MaskedAutoencoderViT:
    """MAE ViT-H/14 as in the paper (1280 wide, 32 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_huge_patch14", pretrained=pretrained, **overrides)


mae_vit_tiny = mae_vit_tiny_patch16
mae_vit_small = mae_vit_small_patch16
mae_vit_base = mae_vit_base_patch16
mae_vit_large = mae_vit_large_patch16
mae_vit_huge = mae_vit_huge_patch14
