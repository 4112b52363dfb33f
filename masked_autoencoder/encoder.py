"""MAEEncoder: the ViT encoder, run on the kept patches for pre-training or on all of them as a backbone."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ._validation import require
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig, resolve_config
from .masking import MaskingOutput, MaskingStrategy, RandomMasking, kept_slots
from .vit import VisionTransformer

# Pre-training checkpoint keys that belong to the decoder: an encoder has no place for them.
DECODER_PREFIXES = ("decoder_", "mask_token")


class MAEEncoder(VisionTransformer):
    """The MAE's ViT encoder: patch embedding, class token, fixed 2-D sin-cos positions, blocks, final norm.

    Its ``state_dict`` keys are the official (and timm) encoder keys: ``patch_embed.proj.*``,
    ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``. It runs on any image size divisible
    by the patch: the position table is regenerated exactly for the input's grid.
    Build it from an :class:`MAEConfig`, keyword overrides, or both, or load weights with
    :meth:`from_pretrained` (which takes a full MAE's checkpoint too: the decoder is left out).
    ``drop_path_rate`` (stochastic depth, for fine-tuning) rises linearly over the blocks, as in the
    official fine-tuning code. ``masking``: how pre-training chooses the removed patches, a
    :class:`MaskingStrategy` (default: :class:`RandomMasking` at the config's ``mask_ratio``, the paper's).
    """

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        drop_path_rate: float = 0.0,
        masking: MaskingStrategy | None = None,
        **overrides: Any,
    ) -> None:
        config = resolve_config(config, overrides)
        super().__init__(config, learned_position_table=False, final_norm=True, drop_path_rate=drop_path_rate)
        _check_masking(masking)
        self.masking = RandomMasking(config.mask_ratio) if masking is None else masking

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """The trunk's, and a full MAE checkpoint's decoder is left out."""
        return dataclasses.replace(super().checkpoint_rules, unused=DECODER_PREFIXES)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | torch.Tensor | None = None,
        *,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        masking: MaskingStrategy | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the kept patches, as in pre-training (the official method's signature and result).

        imgs: (B, C, H, W) -> latent (B, 1 + K, D) (class token first), mask (B, L) (1 = removed)
        and ids_restore (B, L). The masking arguments are those of :class:`MaskingStrategy`;
        ``mask_ratio`` defaults to the strategy's; ``masking`` replaces the model's strategy for this call.
        A (B,) ``mask_ratio`` (:class:`RandomMasking`) lets each image keep its own K_b patches: the batch
        runs padded to the largest, the padding masked out of attention, and ``latent`` rows past an
        image's 1 + K_b are zero.
        """
        latent, masked, _ = self._encode_kept(
            imgs, mask_ratio, noise=noise, mask=mask, generator=generator, masking=masking
        )
        return latent, masked.mask, masked.ids_restore

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`: (B, C, H, W) -> (B, 1 + L, D)."""
        return self.forward_features(imgs)

    def _encode_kept(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | torch.Tensor | None,
        *,
        masking: MaskingStrategy | None,
        **masking_args: Any,
    ) -> tuple[torch.Tensor, MaskingOutput, tuple[int, int]]:
        """Check, embed, mask and encode: latent (B, 1 + K, D), the masking, and the patch grid."""
        _check_masking(masking)
        patches, cls, grid = self._embed(imgs)
        strategy = self.masking if masking is None else masking
        masked = strategy(patches, grid=grid, mask_ratio=mask_ratio, **masking_args)
        tokens = torch.cat([cls, masked.kept], dim=1)
        if not isinstance(mask_ratio, torch.Tensor):
            return self.transform(tokens), masked, grid
        # A ratio per image: padded to the largest K; the padding takes no part in attention and leaves as zeros.
        slots = kept_slots(masked.mask, masked.kept.shape[1])
        keep = torch.cat([slots.new_ones(slots.shape[0], 1), slots], dim=1)  # the class token always
        return self.transform(tokens, keep) * keep[..., None], masked, grid


def _check_masking(masking: object) -> None:
    ok = masking is None or isinstance(masking, MaskingStrategy)
    require(ok, "masking", type(masking).__name__, "None or a MaskingStrategy (RandomMasking, BlockMasking, ...)")
