"""Named architectures as data: name -> MAEConfig fields. No modules are built here."""

from __future__ import annotations

from typing import Any

from ._validation import fail
from .config import MAEConfig

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


def canonical_name(name: str) -> str:
    """The registry name of an architecture or alias (``mae_vit_base`` -> ``mae_vit_base_patch16``)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in _ARCHITECTURES:
        fail("name", repr(name), f"one of {list_models()}")
    return canonical


def model_config(name: str, **overrides: Any) -> MAEConfig:
    """The :class:`MAEConfig` of a named architecture, with keyword overrides applied."""
    return MAEConfig(**_ARCHITECTURES[canonical_name(name)]).replace(**overrides)


def num_heads_for_width(embed_dim: int) -> int | None:
    """The head count our architectures use at a width (heads cannot be read from weights), or None."""
    heads = {fields["embed_dim"]: fields["num_heads"] for fields in _ARCHITECTURES.values()}
    return heads.get(embed_dim)
