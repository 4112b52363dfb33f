"""MAEEncoder: the ViT encoder, run on the kept patches for pre-training or on all of them as a backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ._validation import describe, require
from .config import MAEConfig, resolve_config
from .hub.mixin import PretrainedMixin
from .layers import PatchEmbed, build_blocks, init_vit_weights, run_block
from .masking import RandomMasking
from .patches import patch_grid
from .pos_embed import position_table_for_grid, sincos_pos_embed_2d

_CLS_STD = 0.02
_POOLS = ("token", "avg")
_FORMATS = ("NCHW", "NLC")


def _block_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's convention: None -> every block, n -> the last n, a sequence -> those (negative from the end)."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int):
        require(0 < indices <= depth, "indices", indices, f"a count of last blocks in [1, {depth}]")
        return list(range(depth - indices, depth))
    taken = []
    for index in indices:
        ok = isinstance(index, int) and -depth <= index < depth
        require(ok, "indices", list(indices), f"block indices in [{-depth}, {depth - 1}]")
        taken.append(index % depth)
    require(bool(taken), "indices", list(indices), "at least one block index")
    return taken


def _as_output(tokens: torch.Tensor, grid: tuple[int, int], output_fmt: str, with_prefix: bool) -> Any:
    """Split off the class token and lay the patch tokens out as asked. tokens: (B, 1 + L, D)."""
    patches = tokens[:, 1:]
    if output_fmt == "NCHW":
        patches = rearrange(patches, "b (h w) d -> b d h w", h=grid[0], w=grid[1]).contiguous()
    return (patches, tokens[:, :1]) if with_prefix else patches


class MAEEncoder(PretrainedMixin, nn.Module):
    """The MAE's ViT encoder: patch embedding, class token, fixed 2-D sin-cos positions, blocks, norm.

    Its ``state_dict`` keys are the official (and timm) encoder keys: ``patch_embed.proj.*``,
    ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``. It runs on any image size divisible
    by the patch: the position table is regenerated exactly for the input's grid.
    Build it from an :class:`MAEConfig`, keyword overrides, or both, or load weights with
    :meth:`from_pretrained`. ``drop_path_rate`` (stochastic depth, for fine-tuning) rises linearly
    over the blocks, as in the official fine-tuning code.
    """

    def __init__(self, config: MAEConfig | None = None, *, drop_path_rate: float = 0.0, **overrides: Any) -> None:
        super().__init__()
        self.config = config = resolve_config(config, overrides)
        ok_rate = isinstance(drop_path_rate, (int, float)) and 0.0 <= drop_path_rate < 1.0
        require(ok_rate, "drop_path_rate", repr(drop_path_rate), "a number in [0, 1)")
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_hw, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, not learned: a buffer (saved, so official checkpoints load strictly).
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, config.grid_size, cls_token=True)[None])
        self.blocks = build_blocks(
            dim, config.depth, config.num_heads, config.mlp_ratio, config.layer_norm_eps, drop_path_rate
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.masking = RandomMasking(config.mask_ratio)
        self.grad_checkpointing = False
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

    def position_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position table for a patch grid, class row first: (1, 1 + h*w, D); sin-cos, regenerated exactly."""
        return position_table_for_grid(self.pos_embed, self.config.grid_size, grid)

    def embed(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens with positions, and the class token with its position.

        imgs: (B, C, H, W) -> patches (B, L, D), cls (B, 1, D). ``imgs`` must be valid (see :meth:`grid_of`).
        """
        patches = self.patch_embed(imgs)
        table = self.position_table(self.grid_of(imgs))
        cls = (self.cls_token + table[:, :1]).expand(patches.shape[0], -1, -1)
        return patches + table[:, 1:], cls

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (encoder and decoder)."""
        self.grad_checkpointing = enable

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks, without the final norm. tokens: (B, N, D) -> (B, N, D)."""
        for block in self.blocks:
            tokens = run_block(block, tokens, self.grad_checkpointing)
        return tokens

    def transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm. tokens: (B, N, D) -> (B, N, D)."""
        return self.norm(self.run_blocks(tokens))

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

    def forward_pooled(self, imgs: torch.Tensor, pool: str = "token") -> torch.Tensor:
        """One feature vector per image. imgs: (B, C, H, W) -> (B, D).

        ``pool="token"``: the class token after the final norm (the paper's linear-probe feature).
        ``pool="avg"``: the mean of the patch tokens as they leave the last block, then the final
        norm (the paper's fine-tuning global pool, with the pretrained norm in the place of ``fc_norm``).
        """
        require(pool in _POOLS, "pool", repr(pool), f"one of {_POOLS}")
        patches, cls = self.embed(imgs)
        tokens = self.run_blocks(torch.cat([cls, patches], dim=1))
        return self.norm(tokens[:, 0] if pool == "token" else tokens[:, 1:].mean(dim=1))

    def forward_intermediates(
        self,
        imgs: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NCHW",
        return_prefix_tokens: bool = False,
        intermediates_only: bool = False,
        stop_early: bool = False,
    ) -> Any:
        """The outputs of chosen blocks, for dense heads, with the semantics of timm's method of the same name.

        ``indices``: None for every block, an int n for the last n, or block indices (negative
        from the end). Each output is the patch tokens as a map (B, D, H/P, W/P) for ``"NCHW"``, or
        (B, L, D) for ``"NLC"``; with ``return_prefix_tokens`` a pair (patches, class token (B, 1, D)).
        ``norm`` applies the final norm to each. Returns ``(final tokens (B, 1 + L, D), outputs)``,
        or only the outputs with ``intermediates_only``; ``stop_early`` skips blocks after the last index.
        """
        take = _block_indices(len(self.blocks), indices)
        require(output_fmt in _FORMATS, "output_fmt", repr(output_fmt), f"one of {_FORMATS}")
        grid = self.grid_of(imgs)
        patches, cls = self.embed(imgs)
        tokens = torch.cat([cls, patches], dim=1)
        outputs: list[Any] = []
        last = max(take) if stop_early or intermediates_only else len(self.blocks) - 1
        for index, block in enumerate(self.blocks[: last + 1]):
            tokens = run_block(block, tokens, self.grad_checkpointing)
            if index in take:
                outputs.append(
                    _as_output(self.norm(tokens) if norm else tokens, grid, output_fmt, return_prefix_tokens)
                )
        return outputs if intermediates_only else (self.norm(tokens), outputs)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`: (B, C, H, W) -> (B, 1 + L, D)."""
        return self.forward_features(imgs)
