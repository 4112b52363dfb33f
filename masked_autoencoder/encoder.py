"""MAEEncoder: the ViT encoder, run on the kept patches for pre-training or on all of them as a backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._validation import describe, require
from .config import MAEConfig, resolve_config
from .hub.mixin import PretrainedMixin
from .layers import PatchEmbed, build_blocks, init_vit_weights
from .masking import RandomMasking
from .patches import patch_grid
from .pos_embed import position_table_for_grid, sincos_pos_embed_2d

_CLS_STD = 0.02


class MAEEncoder(PretrainedMixin, nn.Module):
    """The MAE's ViT encoder: patch embedding, class token, fixed 2-D sin-cos positions, blocks, norm.

    Its ``state_dict`` keys are the official (and timm) encoder keys: ``patch_embed.proj.*``,
    ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``. It runs on any image size divisible
    by the patch: the position table is regenerated exactly for the input's grid.
    Build it from an :class:`MAEConfig`, keyword overrides, or both, or load weights with
    :meth:`from_pretrained`.
    """

    def __init__(self, config: MAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = config = resolve_config(config, overrides)
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_hw, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, not learned: a buffer (saved, so official checkpoints load strictly).
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, config.grid_size, cls_token=True)[None])
        self.blocks = build_blocks(dim, config.depth, config.num_heads, config.mlp_ratio, config.layer_norm_eps)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.masking = RandomMasking(config.mask_ratio)
        if not self.cls_token.is_meta:  # from_pretrained builds on meta: nothing to initialise there
            self._init_encoder_weights()

    def _init_encoder_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=_CLS_STD)
        self.apply(init_vit_weights)

    def grid_of(self, imgs: torch.Tensor) -> tuple[int, int]:
        """Validate an image batch for this model and return its patch grid. imgs: (B, C, H, W)."""
        grid = patch_grid(imgs, self.config.patch_hw, self.config.in_chans)
        require(imgs.is_floating_point(), "imgs", describe(imgs), "a floating-point tensor")
        return grid

    def embed(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens with positions, and the class token with its position.

        imgs: (B, C, H, W) -> patches (B, L, D), cls (B, 1, D). ``imgs`` must be valid (see :meth:`grid_of`).
        """
        patches = self.patch_embed(imgs)
        table = position_table_for_grid(self.pos_embed, self.config.grid_size, self.grid_of(imgs))
        cls = (self.cls_token + table[:, :1]).expand(patches.shape[0], -1, -1)
        return patches + table[:, 1:], cls

    def transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm. tokens: (B, N, D) -> (B, N, D)."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        *,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the kept patches, as in pre-training (the official method's signature and result).

        imgs: (B, C, H, W) -> latent (B, 1 + K, D) (class token first), mask (B, L) (1 = removed)
        and ids_restore (B, L). The masking arguments are those of :class:`RandomMasking`;
        ``mask_ratio`` defaults to the config's.
        """
        patches, cls = self.embed(imgs)
        masked = self.masking(patches, mask_ratio=mask_ratio, noise=noise, mask=mask, generator=generator)
        latent = self.transform(torch.cat([cls, masked.kept], dim=1))
        return latent, masked.mask, masked.ids_restore

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Encode every patch (no masking). imgs: (B, C, H, W) -> tokens (B, 1 + L, D), class token first."""
        patches, cls = self.embed(imgs)
        return self.transform(torch.cat([cls, patches], dim=1))

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`: (B, C, H, W) -> (B, 1 + L, D)."""
        return self.forward_features(imgs)
