"""Masked Autoencoders (He et al., 2021) as composable PyTorch building blocks."""

from ._version import __version__
from .architectures import list_models, model_config
from .config import MAEConfig
from .encoder import MAEEncoder
from .factory import (
    create_model,
    mae_vit_base,
    mae_vit_base_patch16,
    mae_vit_huge,
    mae_vit_huge_patch14,
    mae_vit_large,
    mae_vit_large_patch16,
    mae_vit_small,
    mae_vit_small_patch16,
    mae_vit_tiny,
    mae_vit_tiny_patch16,
)
from .loss import mae_loss, normalized_pixels
from .masking import MaskingOutput, RandomMasking
from .model import MAEOutput, MaskedAutoencoderViT
from .patches import patchify, unpatchify
from .pos_embed import sincos_pos_embed_2d

__all__ = [
    "MAEConfig",
    "MAEEncoder",
    "MAEOutput",
    "MaskedAutoencoderViT",
    "MaskingOutput",
    "RandomMasking",
    "__version__",
    "create_model",
    "list_models",
    "mae_loss",
    "mae_vit_base",
    "mae_vit_base_patch16",
    "mae_vit_huge",
    "mae_vit_huge_patch14",
    "mae_vit_large",
    "mae_vit_large_patch16",
    "mae_vit_small",
    "mae_vit_small_patch16",
    "mae_vit_tiny",
    "mae_vit_tiny_patch16",
    "model_config",
    "normalized_pixels",
    "patchify",
    "sincos_pos_embed_2d",
    "unpatchify",
]
