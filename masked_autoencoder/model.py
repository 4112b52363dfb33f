"""MaskedAutoencoderViT: encoder on the kept patches, light decoder with mask tokens, loss on removed patches."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._validation import describe, require
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig
from .encoder import MAEEncoder
from .layers import build_blocks, init_vit_weights
from .loss import check_loss_inputs, masked_mse
from .masking import MaskingArgs, MaskingStrategy, RandomMasking, gather_tokens, kept_slots
from .patches import to_patches, to_tubelets, unpatchify
from .pos_embed import position_table_for_grid, sincos_pos_embed_2d
from .vit import fixed_clip_table, unsaved_clip_table

if TYPE_CHECKING:
    from typing_extensions import Unpack

_MASK_TOKEN_STD = 0.02


@dataclass
class MAEOutput:
    """What :class:`MaskedAutoencoderViT` returns. B batch, L patches, K kept, D encoder width."""

    loss: torch.Tensor
    """(): the reconstruction loss on the removed patches."""
    pred: torch.Tensor
    """(B, L, P*P*C): predicted pixels (or normalized pixels) of every patch, image order."""
    mask: torch.Tensor
    """(B, L), per patch, dtype of the images: 1 where a patch was removed, 0 where kept (``Reconstruction.mask``
    is the same per pixel). Accepted back as ``mask=``."""
    ids_restore: torch.Tensor
    """(B, L): undoes the masking shuffle."""
    latent: torch.Tensor
    """(B, 1 + K, D): the encoder's output, class token first (clips: (B, K, D), no class token)."""


# A pytree node for torch.export (and torch.compile): an exported MAE returns an MAEOutput, as in eager.
torch.export.register_dataclass(MAEOutput, serialized_type_name="masked_autoencoder.MAEOutput")


class MaskedAutoencoderViT(MAEEncoder):
    """A Masked Autoencoder with a ViT encoder (He et al., 2021), faithful to the official model.

    It is an :class:`MAEEncoder` plus the decoder: ``decoder_embed``, ``mask_token``,
    ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``, ``decoder_pred``. Subclassing
    (not wrapping) the encoder keeps the official flat ``state_dict`` keys, so official
    checkpoints load with ``strict=True``.

    imgs: (B, C, H, W) -> :class:`MAEOutput`. Build from an :class:`MAEConfig`, keyword
    overrides of its fields, or both; ``final_norm`` as :class:`MAEEncoder`'s. A video config (``num_frames``,
    ``tubelet_size``) makes a video MAE:
    clips (B, C, T, H, W) -> :class:`MAEOutput` over the T'*h*w tubelets, with the same pieces.
    """

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        masking: MaskingStrategy | None = None,
        final_norm: bool = True,
        **overrides: Any,
    ) -> None:
        super().__init__(config, masking=masking, final_norm=final_norm, **overrides)
        config = self.config
        dim = config.decoder_embed_dim
        self.decoder_embed = nn.Linear(config.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        if config.is_video:  # fixed and not saved, as the encoder's (see VisionTransformer)
            self.register_buffer("decoder_pos_embed", unsaved_clip_table(dim, config), persistent=False)
        else:
            self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(dim, config.grid_size, cls_token=True)[None])
        self.decoder_blocks = build_blocks(
            dim, config.decoder_depth, config.decoder_num_heads, config.mlp_ratio, config.layer_norm_eps
        )
        self.decoder_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(dim, config.patch_dim)
        if not self.mask_token.is_meta:  # as in the encoder: nothing to initialise on meta
            nn.init.normal_(self.mask_token, std=_MASK_TOKEN_STD)
            for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
                module.apply(init_vit_weights)

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """The encoder's, but the decoder is used: its heads and pixel target must agree with a checkpoint's too."""
        rules = super().checkpoint_rules
        tables = () if self.config.is_video else ("decoder_pos_embed",)
        return dataclasses.replace(
            rules,
            position_tables=(*rules.position_tables, *tables),
            unused=(),
            settings=(*rules.settings, "decoder_num_heads", "norm_pix_loss", "loss_target"),
            shapes=(*rules.shapes, "decoder_embed_dim", "decoder_depth"),
            pixel_outputs=("decoder_pred.weight", "decoder_pred.bias"),
        )

    def forward_decoder(
        self,
        latent: torch.Tensor,
        ids_restore: torch.Tensor,
        grid_size: tuple[int, int] | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the pixels of every patch from the encoded kept patches.

        latent: (B, 1 + K, D), ids_restore: (B, L) -> pred (B, L, P*P*C), image order.
        ``grid_size`` (h, w) with h * w = L defaults to the config's grid. ``mask`` (B, L) is needed
        when the images kept different numbers of patches (a per-image ratio): it says which latent
        rows are padding.
        """
        grid = self.config.token_grid if grid_size is None else tuple(grid_size)
        self._check_decoder_inputs(latent, ids_restore, grid, mask)
        return self._decode(latent, ids_restore, grid, mask)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """The official method: :func:`patchify` with this model's patch. (B, C, H, W) -> (B, L, P_h*P_w*C)."""
        self.grid_of(imgs)
        return self._pixels(imgs)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """The official method: :func:`unpatchify` with this model's patch, square grid. (B, L, N) -> (B, C, H, W).

        Clips: the configured (T', h, w) grid. (B, L, N) -> (B, C, T, H, W).
        """
        if self.config.is_video:
            return unpatchify(x, self.config.tubelet, self.config.token_grid)
        return unpatchify(x, self.config.patch_hw)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official method: per-sample random masking of tokens, whatever the model's own strategy.

        x: (B, L, D) -> kept tokens (B, K, D), mask (B, L) (1 = removed), ids_restore (B, L): :class:`RandomMasking`.
        """
        masked = RandomMasking()(x, mask_ratio=mask_ratio)  # the call's ratio, not the strategy's default
        return masked.kept, masked.mask, masked.ids_restore

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of :func:`mae_loss` with this model's target (``loss_target``). imgs: (B, C, H, W), pred: (B, L, N),
        mask: (B, L)."""
        self.grid_of(imgs)
        target = self._target(imgs)
        check_loss_inputs(pred, target, mask)
        return self._loss(pred, target, mask)

    def forward(  # type: ignore[override]
        self, imgs: torch.Tensor, *, mask_ratio: float | torch.Tensor | None = None, **masking_args: Unpack[MaskingArgs]
    ) -> MAEOutput:
        """Mask, encode, decode and score a batch. imgs: (B, C, H, W) -> :class:`MAEOutput`.

        Masking arguments as :class:`MaskingStrategy`: ``mask_ratio`` (default: the strategy's), and the
        keywords of :class:`MaskingArgs`: ``noise`` (B, L) for the official shuffle, a ``mask``
        (B, L), or a ``generator``; ``masking`` replaces the model's strategy (``model.masking``) for this call. A (B,)
        ``mask_ratio`` gives each image its own ratio (see :meth:`forward_encoder`).
        """
        latent, masked, grid = self._encode_kept(imgs, mask_ratio, masking_args)
        pred = self._decode(
            latent, masked.ids_restore, grid, masked.mask if isinstance(mask_ratio, torch.Tensor) else None
        )
        loss = self._loss(pred, self._target(imgs), masked.mask)
        return MAEOutput(loss, pred, masked.mask, masked.ids_restore, latent)

    def _decode(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, ...], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`forward_decoder` on inputs already checked."""
        x = self.decoder_embed(latent)
        batch, length = ids_restore.shape
        prefix = self.num_prefix_tokens  # the class token (images), or none (clips)
        mask_tokens = self.mask_token.expand(batch, length + prefix - x.shape[1], -1)
        shuffled = torch.cat([x[:, prefix:], mask_tokens], dim=1)  # (B, L, D) in shuffle order, the kept first
        if mask is not None:  # images kept different numbers: their padding becomes mask tokens too
            shuffled = torch.where(kept_slots(mask, length)[..., None], shuffled, self.mask_token)
        patches = gather_tokens(shuffled, ids_restore)
        if self.config.is_video:
            table = fixed_clip_table(self.decoder_pos_embed, self.config, grid)
        else:
            table = position_table_for_grid(self.decoder_pos_embed, self.config.grid_size, grid)
        x = self.run_blocks(torch.cat([x[:, :prefix], patches], dim=1) + table, self.decoder_blocks)
        return self.decoder_pred(self.decoder_norm(x[:, prefix:]))

    def _target(self, imgs: torch.Tensor) -> torch.Tensor:
        """The pixels the config's ``loss_target`` predicts, of images already checked: (B, C, ...) -> (B, L, N).

        ``"mae"``: the input's patches; ``"videomae"``: the patches of the input in the data's units.
        """
        return self._pixels(imgs if self.config.loss_target == "mae" else self.in_data_units(imgs))

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss on the config's ``loss_target``. pred, target (:meth:`_target`): (B, L, N), mask: (B, L) -> ().

        With ``norm_pix_loss``, VideoMAE's target normalises each channel of a patch apart.
        """
        config = self.config
        channels = None if config.loss_target == "mae" else config.in_chans
        return masked_mse(pred, target, mask, config.norm_pix_loss, channels=channels)

    def in_data_units(self, imgs: torch.Tensor) -> torch.Tensor:
        """Images (or clips) in the model's input space -> in the data's units, un-normalised with ``pretrained_cfg``:
        (B, C, ...) -> (B, C, ...). ``loss_target="videomae"`` predicts these."""
        mean, std = self._data_stats(imgs)
        return imgs * std + mean

    def in_input_space(self, imgs: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`in_data_units`: (B, C, ...) in the data's units -> normalised, the model's input."""
        mean, std = self._data_stats(imgs)
        return (imgs - mean) / std

    def _data_stats(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pretrained_cfg``'s mean and std, shaped to broadcast over the channels (dim 1) of ``imgs``."""
        shape = (-1,) + (1,) * (imgs.dim() - 2)
        cfg = self.pretrained_cfg
        mean, std = (
            torch.tensor(cfg[key], dtype=imgs.dtype, device=imgs.device).view(shape) for key in ("mean", "std")
        )
        return mean, std

    def _pixels(self, imgs: torch.Tensor) -> torch.Tensor:
        """The prediction target's layout of images already checked: (B, C, H, W) or clips -> (B, L, N)."""
        if self.config.is_video:
            return to_tubelets(imgs, self.config.tubelet)
        return to_patches(imgs, self.config.patch_hw)

    def _check_decoder_inputs(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, ...], mask: torch.Tensor | None
    ) -> None:
        width, prefix = self.config.embed_dim, self.num_prefix_tokens
        ok_latent = isinstance(latent, torch.Tensor) and latent.dim() == 3 and latent.shape[-1] == width
        require(ok_latent, "latent", describe(latent), f"a (B, {prefix} + K, {width}) tensor")
        ok_ids = (
            isinstance(ids_restore, torch.Tensor)
            and ids_restore.dim() == 2
            and ids_restore.shape[0] == latent.shape[0]
            and ids_restore.dtype == torch.int64
            and latent.shape[1] <= ids_restore.shape[1] + prefix
        )
        require(ok_ids, "ids_restore", describe(ids_restore), f"a (B={latent.shape[0]}, L) int64 tensor with L >= K")
        length = ids_restore.shape[1]
        ok_grid = len(grid) == len(self.config.token_grid) and math.prod(grid) == length
        require(ok_grid, "grid_size", grid, f"a grid of {' * '.join('Thw'[-len(grid) :])} = L = {length} patches")
        ok_mask = mask is None or (isinstance(mask, torch.Tensor) and mask.shape == ids_restore.shape)
        require(
            ok_mask, "mask", describe(mask), f"None or a tensor of the shape of ids_restore {tuple(ids_restore.shape)}"
        )
