"""Masked Autoencoders (He et al., 2021) as composable PyTorch building blocks."""

from ._version import __version__
from .checkpoint_rules import CheckpointRules
from .classifier import MAEViTClassifier
from .config import MAEConfig
from .encoder import MAEEncoder
from .factory import (
    create_classifier,
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
    videomae_vit_base,
    videomae_vit_base_patch16,
    vit_base_patch16,
    vit_huge_patch14,
    vit_large_patch16,
)
from .hub.known_weights import KnownWeights, list_pretrained
from .hub.mixin import PretrainedMixin
from .linear_probe import LinearProbe, linear_probe_head
from .loss import mae_loss, normalized_pixels
from .masking import BlockMasking, GridMasking, MaskingArgs, MaskingOutput, MaskingStrategy, RandomMasking, TubeMasking
from .model import MAEOutput, MaskedAutoencoderViT
from .optim import param_groups_lrd
from .patches import patchify, unpatchify
from .pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .precision import autocast_dtype
from .pyramid import SimpleFeaturePyramid
from .reconstruction import Reconstruction, reconstruct
from .registry import Architecture, list_models, model_config
from .upernet import UperNet, UperNetHead
from .vit import VisionTransformer

__all__ = [
    "Architecture",
    "BlockMasking",
    "CheckpointRules",
    "GridMasking",
    "KnownWeights",
    "LinearProbe",
    "MAEConfig",
    "MAEEncoder",
    "MAEOutput",
    "MAEViTClassifier",
    "MaskedAutoencoderViT",
    "MaskingArgs",
    "MaskingOutput",
    "MaskingStrategy",
    "PretrainedMixin",
    "RandomMasking",
    "Reconstruction",
    "SimpleFeaturePyramid",
    "TubeMasking",
    "UperNet",
    "UperNetHead",
    "VisionTransformer",
    "__version__",
    "autocast_dtype",
    "create_classifier",
    "create_model",
    "linear_probe_head",
    "list_models",
    "list_pretrained",
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
    "param_groups_lrd",
    "patchify",
    "reconstruct",
    "resize_pos_embed",
    "sincos_pos_embed_2d",
    "unpatchify",
    "videomae_vit_base",
    "videomae_vit_base_patch16",
    "vit_base_patch16",
    "vit_huge_patch14",
    "vit_large_patch16",
]
