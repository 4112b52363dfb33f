"""Named architectures: the registry, ``create_model`` / ``list_models`` and the ``mae_vit_*`` factories."""

from __future__ import annotations

from typing import Any

from ._validation import fail
from .config import MAEConfig
from .model import MaskedAutoencoderViT

# name -> the MAEConfig fields that differ from the defaults.
_ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Small models for experiments and tests (not in the paper).
    "mae_vit_tiny_patch16": dict(
        embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4
    ),
    "mae_vit_small_patch16": dict(
        embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8
    ),
    # The paper's models, with its default decoder (512 wide, 8 blocks, 16 heads).
    "mae_vit_base_patch16": dict(embed_dim=768, depth=12, num_heads=12),
    "mae_vit_large_patch16": dict(embed_dim=1024, depth=24, num_heads=16),
    "mae_vit_huge_patch14": dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
}
_ALIASES = {
    "mae_vit_tiny": "mae_vit_tiny_patch16",
    "mae_vit_small": "mae_vit_small_patch16",
    "mae_vit_base": "mae_vit_base_patch16",
    "mae_vit_large": "mae_vit_large_patch16",
    "mae_vit_huge": "mae_vit_huge_patch14",
}


def list_models() -> list[str]:
    """The names ``create_model`` accepts, aliases included, sorted."""
    return sorted([*_ARCHITECTURES, *_ALIASES])


def model_config(name: str, **overrides: Any) -> MAEConfig:
    """The :class:`MAEConfig` of a named architecture, with keyword overrides applied."""
    canonical = _ALIASES.get(name, name)
    if canonical not in _ARCHITECTURES:
        fail("name", repr(name), f"one of {list_models()}")
    return MAEConfig(**_ARCHITECTURES[canonical]).replace(**overrides)


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
