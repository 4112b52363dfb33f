"""The paper's baseline for its speed-up (He et al., 2021, Table 2): the same ViT with mask tokens in the encoder.

The encoder sees every patch, a removed one replaced by a learned mask token plus its position
embedding; the decoder then gets every token; the loss is on the removed patches, as in the MAE.
"""

from __future__ import annotations

import torch
from torch import nn

from masked_autoencoder import MAEOutput, MaskedAutoencoderViT

_MASK_TOKEN_STD = 0.02  # as the decoder's mask token


class MaskTokensInEncoder(nn.Module):
    """An MAE whose encoder runs on all L patches, the removed ones as mask tokens.

    It runs the modules, and so the weights, of the :class:`MaskedAutoencoderViT` it wraps (patch
    embedding, masking, blocks, norm, decoder, loss); only the encoder's mask token is its own.
    imgs: (B, C, H, W) -> :class:`MAEOutput` with latent (B, 1 + L, D) and the identity as ids_restore.
    """

    def __init__(self, mae: MaskedAutoencoderViT) -> None:
        super().__init__()
        self.mae = mae
        self.mask_token = nn.Parameter(torch.zeros(1, 1, mae.config.embed_dim))
        nn.init.normal_(self.mask_token, std=_MASK_TOKEN_STD)

    def forward(self, imgs: torch.Tensor, *, noise: torch.Tensor | None = None) -> MAEOutput:
        mae = self.mae
        grid = mae.grid_of(imgs)
        patches, cls = mae.embed(imgs)  # (B, L, D) with positions, (B, 1, D)
        removed = mae.masking(patches, noise=noise).mask  # (B, L), 1 = removed: the MAE's masks for the same noise
        positions = mae.position_table(grid)[:, 1:]
        tokens = torch.where(removed.bool().unsqueeze(-1), self.mask_token + positions, patches)
        latent = mae.transform(torch.cat([cls, tokens], dim=1))
        # Every token is already in image order: the decoder adds no mask token and unshuffles nothing.
        identity = torch.arange(removed.shape[1], device=imgs.device).expand_as(removed)
        pred = mae.forward_decoder(latent, identity, grid)
        return MAEOutput(mae.forward_loss(imgs, pred, removed), pred, removed, identity, latent)
