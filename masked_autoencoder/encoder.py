"""MAEEncoder: the ViT encoder, run on the kept patches for pre-training or on all of them as a backbone."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ._validation import require
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig, resolve_config
from .masking import MaskingArgs, MaskingOutput, MaskingStrategy, RandomMasking, kept_slots
from .vit import HEAD_PREFIXES, VisionTransformer

if TYPE_CHECKING:
    from typing_extensions import Unpack

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

    ``window_size``, ``global_blocks`` and ``rel_pos``: ViTDet's windowed attention and relative position
    biases for dense prediction (see :class:`VisionTransformer`); masked pre-training
    (:meth:`forward_encoder`) needs neither. ``final_norm=False`` leaves out the final norm (``norm`` is None),
    as VideoMAE's pre-training with mean pooling; ``from_pretrained`` builds it so for files without one.

    The strategy owns the mask ratio: ``config.mask_ratio`` always mirrors ``masking.mask_ratio``
    (given ``masking=BlockMasking(0.9)``, or later ``model.masking = ...``, the config says 0.9, and
    ``save_pretrained`` records it). A ``mask_ratio=`` keyword that disagrees with ``masking`` raises.
    """

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        drop_path_rate: float = 0.0,
        masking: MaskingStrategy | None = None,
        window_size: int | None = None,
        global_blocks: Sequence[int] | None = None,
        rel_pos: bool = False,
        final_norm: bool = True,
        **overrides: Any,
    ) -> None:
        _check_masking(masking)
        require(isinstance(final_norm, bool), "final_norm", repr(final_norm), "a bool")
        if masking is not None:
            given = overrides.get("mask_ratio", masking.mask_ratio)
            expected = f"{masking.mask_ratio}, the ratio of masking={masking!r}, or not given (the strategy owns it)"
            require(given == masking.mask_ratio, "mask_ratio", given, expected)
            overrides = {**overrides, "mask_ratio": masking.mask_ratio}
        config = resolve_config(config, overrides)
        windowing = {"window_size": window_size, "global_blocks": global_blocks, "rel_pos": rel_pos}
        super().__init__(
            config, learned_position_table=False, final_norm=final_norm, drop_path_rate=drop_path_rate, **windowing
        )
        self.masking = RandomMasking(config.mask_ratio) if masking is None else masking

    def __setattr__(self, name: str, value: Any) -> None:
        """Keep the one home of the mask ratio: a new strategy updates the config; a config must agree with it."""
        if name == "masking":
            require(isinstance(value, MaskingStrategy), "masking", type(value).__name__, "a MaskingStrategy")
        elif name == "config" and "masking" in self._modules:
            ratio = self.masking.mask_ratio
            ok = value.mask_ratio == ratio
            require(ok, "config.mask_ratio", value.mask_ratio, f"{ratio}, the strategy's: set model.masking instead")
        super().__setattr__(name, value)
        if name == "masking":
            super().__setattr__("config", self.config.replace(mask_ratio=value.mask_ratio))

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """The trunk's, and a full MAE checkpoint's decoder is left out."""
        return dataclasses.replace(super().checkpoint_rules, unused=DECODER_PREFIXES)

    @property
    def checkpoint_options(self) -> dict[str, Any]:
        """The windowing and relative positions, where the encoder has them: ``save_pretrained`` records them."""
        options: dict[str, Any] = {"rel_pos": True} if self.rel_pos else {}
        if self.window_size is not None:
            options |= {"window_size": self.window_size, "global_blocks": list(self.global_blocks)}
        return options if self.norm is not None else options | {"final_norm": False}

    @classmethod
    def options_from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        """An encoder saved without its final norm (VideoMAE's with ``use_mean_pooling``) is built without one."""
        trunk = "patch_embed.proj.weight" in state_dict and not any(key.startswith(HEAD_PREFIXES) for key in state_dict)
        return {"final_norm": False} if trunk and "norm.weight" not in state_dict else {}

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float | torch.Tensor | None = None, **masking_args: Unpack[MaskingArgs]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the kept patches, as in pre-training (the official method's signature and result).

        imgs: (B, C, H, W) -> latent (B, 1 + K, D) (class token first), mask (B, L) (1 = removed)
        and ids_restore (B, L); clips (B, C, T, H, W), for a video model: latent (B, K, D), no class token.
        The masking keywords (:class:`MaskingArgs`: ``noise``, ``mask``,
        ``generator``, ``masking``) are those of :class:`MaskingStrategy`; ``mask_ratio`` defaults to the
        strategy's; ``masking`` replaces the model's strategy for this call.
        A (B,) ``mask_ratio`` (:class:`RandomMasking`) lets each image keep its own K_b patches: the batch
        runs padded to the largest, the padding masked out of attention, and ``latent`` rows past an
        image's 1 + K_b are zero.
        """
        latent, masked, _ = self._encode_kept(imgs, mask_ratio, masking_args)
        return latent, masked.mask, masked.ids_restore

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`: (B, C, H, W) -> (B, 1 + L, D)."""
        return self.forward_features(imgs)

    def _encode_kept(
        self, imgs: torch.Tensor, mask_ratio: float | torch.Tensor | None, masking_args: MaskingArgs
    ) -> tuple[torch.Tensor, MaskingOutput, tuple[int, ...]]:
        """Check, embed, mask and encode: latent (B, 1 + K, D) (clips: (B, K, D)), the masking, and the patch grid."""
        call_args: dict[str, Any] = dict(masking_args)
        masking = call_args.pop("masking", None)
        _check_masking(masking)
        # The kept patches are no grid: windows and relative positions have nothing to act on.
        for name, value, default in (("window_size", self.window_size, None), ("rel_pos", self.rel_pos, False)):
            require(value == default, name, value, f"{default} for masked pre-training: the kept patches are no grid")
        patches, cls, grid = self._embed(imgs)
        strategy = self.masking if masking is None else masking
        masked = strategy(patches, grid=grid, mask_ratio=mask_ratio, **call_args)
        tokens = masked.kept if cls is None else torch.cat([cls, masked.kept], dim=1)
        if not isinstance(mask_ratio, torch.Tensor):
            return self.transform(tokens), masked, grid
        # A ratio per image: padded to the largest K; the padding takes no part in attention and leaves as zeros.
        slots = kept_slots(masked.mask, masked.kept.shape[1])
        keep = torch.cat([slots.new_ones(slots.shape[0], self.num_prefix_tokens), slots], dim=1)  # the class token
        return self.transform(tokens, keep) * keep[..., None], masked, grid


def _check_masking(masking: object) -> None:
    ok = masking is None or isinstance(masking, MaskingStrategy)
    require(ok, "masking", type(masking).__name__, "None or a MaskingStrategy (RandomMasking, BlockMasking, ...)")
