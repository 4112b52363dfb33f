"""The one registry of architectures, as data: name, aliases, config, default weights and fine-tuning recipe.

No modules are built here: factory.py turns a row into a model, hub/known_weights.py describes the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._validation import fail
from .config import MAEConfig


@dataclass(frozen=True)
class Architecture:
    """One named architecture and what the paper pairs with it."""

    name: str
    """The registry name (``create_model(name)``)."""
    config: dict[str, Any]
    """The :class:`MAEConfig` fields that differ from the defaults."""
    aliases: tuple[str, ...] = ()
    """Other names ``create_model`` accepts."""
    pretrained: str | None = None
    """What ``pretrained=True`` on the MAE factories loads: a full published model (with its decoder)."""
    fine_tuning_start: str | None = None
    """What ``pretrained=True`` on the classifier factories loads: the encoder the paper fine-tuned."""
    drop_path_rate: float = 0.0
    """The paper's fine-tuning stochastic depth for this size."""
    summary: str = field(default="", compare=False)


ARCHITECTURES: tuple[Architecture, ...] = (
    # Small models for experiments and tests (not in the paper).
    Architecture(
        name="mae_vit_tiny_patch16",
        aliases=("mae_vit_tiny",),
        config=dict(embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4),
        summary="ViT-Ti/16 (192 wide, 12 blocks), decoder 128 wide, 4 blocks",
    ),
    Architecture(
        name="mae_vit_small_patch16",
        aliases=("mae_vit_small",),
        config=dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
        summary="ViT-S/16 (384 wide, 12 blocks), decoder 256 wide, 4 blocks",
    ),
    # The paper's models, with its default decoder (512 wide, 8 blocks, 16 heads) and fine-tuning recipe.
    Architecture(
        name="mae_vit_base_patch16",
        aliases=("mae_vit_base",),
        config=dict(embed_dim=768, depth=12, num_heads=12),
        pretrained="facebook/vit-mae-base",
        fine_tuning_start="timm/vit_base_patch16_224.mae",
        drop_path_rate=0.1,
        summary="ViT-B/16 (768 wide, 12 blocks), decoder 512 wide, 8 blocks",
    ),
    Architecture(
        name="mae_vit_large_patch16",
        aliases=("mae_vit_large",),
        config=dict(embed_dim=1024, depth=24, num_heads=16),
        pretrained="facebook/vit-mae-large",
        fine_tuning_start="timm/vit_large_patch16_224.mae",
        drop_path_rate=0.2,
        summary="ViT-L/16 (1024 wide, 24 blocks), decoder 512 wide, 8 blocks",
    ),
    Architecture(
        name="mae_vit_huge_patch14",
        aliases=("mae_vit_huge",),
        config=dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
        pretrained="facebook/vit-mae-huge",
        fine_tuning_start="timm/vit_huge_patch14_224.mae",
        drop_path_rate=0.3,
        summary="ViT-H/14 (1280 wide, 32 blocks), decoder 512 wide, 8 blocks",
    ),
    # Video: VideoMAE's ViT-B (Tong et al., 2022): 16 frames in tubelets of 2, its flat table, 90% masking.
    Architecture(
        name="videomae_vit_base_patch16",
        aliases=("videomae_vit_base",),
        config=dict(
            embed_dim=768,
            depth=12,
            num_heads=12,
            decoder_embed_dim=384,
            decoder_depth=4,
            decoder_num_heads=6,
            num_frames=16,
            tubelet_size=2,
            video_pos_embed="flat",
        ),
        pretrained="MCG-NJU/videomae-base",
        summary="video ViT-B/16, 16 frames in tubelets of 2 (768 wide, 12 blocks), decoder 384 wide, 4 blocks",
    ),
)
_BY_NAME = {name: arch for arch in ARCHITECTURES for name in (arch.name, *arch.aliases)}


def list_models() -> list[str]:
    """The names ``create_model`` accepts, aliases included, sorted."""
    return sorted(_BY_NAME)


def architecture(name: str) -> Architecture:
    """The registry row of an architecture or alias; an unknown name raises ``ValueError`` listing the names."""
    if name not in _BY_NAME:
        fail("name", repr(name), f"one of {list_models()}")
    return _BY_NAME[name]


def model_config(name: str, **overrides: Any) -> MAEConfig:
    """The :class:`MAEConfig` of a named architecture, with keyword overrides applied."""
    return MAEConfig(**architecture(name).config).replace(**overrides)


def num_heads_for_width(embed_dim: int) -> int | None:
    """The head count our architectures use at a width (heads cannot be read from weights), or None."""
    heads = {arch.config["embed_dim"]: arch.config["num_heads"] for arch in ARCHITECTURES}
    return heads.get(embed_dim)
