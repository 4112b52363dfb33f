"""VisionTransformer: the ViT trunk that the MAE encoder and the fine-tuning classifier share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._validation import describe, is_int, is_number, is_static, require
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig
from .hub.mixin import PretrainedMixin
from .layers import Mlp, PatchEmbed, build_blocks, init_vit_weights, run_block
from .patches import clip_grid, patch_grid
from .pos_embed import (
    clip_position_table,
    position_table_for_grid,
    resize_pos_embed,
    sincos_pos_embed_2d,
    unsaved_table_device,
)
from .windows import vitdet_global_blocks

_CLS_STD = 0.02
POOLS = ("token", "avg")
"""The poolings of patch tokens: the class token, or the mean of the patch tokens."""
HEAD_PREFIXES = ("head.", "fc_norm.")
"""The keys a fine-tuned classifier adds to the trunk: its linear head and the norm after its pool."""
_FORMATS = ("NCHW", "NLC")


class VisionTransformer(PretrainedMixin, nn.Module):
    """A ViT: patch embedding, class token, 2-D position table, pre-norm blocks and, optionally, a final norm.

    Keys: ``patch_embed.proj.*``, ``cls_token``, ``pos_embed``, ``blocks.N.*`` and ``norm.*`` (with
    ``final_norm``): the official and timm ViT keys. The position table starts as the 2-D sin-cos table
    of the config's grid; it is a fixed buffer, regenerated exactly for other grids, or with
    ``learned_position_table`` a parameter, interpolated (bicubic) for other grids. Every ``forward*``
    takes images (B, C, H, W) of any size divisible by the patch and checks them first. Not built
    directly: :class:`MAEEncoder` and :class:`MAEViTClassifier` are its two forms.

    timm's attributes, with timm's meanings: ``num_features`` (the width D), ``num_prefix_tokens``
    (1, the class token), ``feature_info`` (one entry per block: ``module``, ``num_chs``,
    ``reduction``) and ``pretrained_cfg`` (what the weights expect as input: mean, std, input
    size, interpolation, crop; the recorded values for loaded weights, the official recipe's when fresh).

    ``window_size`` (None: global attention everywhere) makes every block but ``global_blocks``
    (default with windows: ViTDet's, the last of each quarter) attend within windows of that many
    patches a side (:mod:`masked_autoencoder.windows`), as ViTDet's backbone for large images. Each
    block still takes and returns the whole token sequence, so hooks and :meth:`forward_intermediates`
    see whole maps. ``rel_pos=True`` adds ViTDet's decomposed relative position biases to every block
    (``blocks.N.attn.rel_pos_h`` / ``rel_pos_w``, zero to start with, sized for the block's window or,
    in a global block, the config's grid, and resized linearly for other grids).
    """

    def __init__(
        self,
        config: MAEConfig,
        *,
        learned_position_table: bool,
        final_norm: bool,
        drop_path_rate: float,
        window_size: int | None = None,
        global_blocks: Sequence[int] | None = None,
        rel_pos: bool = False,
    ) -> None:
        super().__init__()
        require(isinstance(rel_pos, bool), "rel_pos", repr(rel_pos), "a bool")
        if config.is_video:  # windows and relative biases are laid out over a 2-D grid of patches
            require(window_size is None, "window_size", repr(window_size), "None for clips (num_frames > 1)")
            require(not rel_pos, "rel_pos", repr(rel_pos), "False for clips (num_frames > 1)")
        ok_rate = is_number(drop_path_rate) and 0.0 <= drop_path_rate < 1.0
        require(ok_rate, "drop_path_rate", repr(drop_path_rate), "a number in [0, 1)")
        self.window_size = window_size
        self.global_blocks = _global_blocks(window_size, global_blocks, config.depth)
        self.rel_pos = rel_pos
        self.config = config
        self.learned_position_table = learned_position_table
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.token_patch, config.in_chans, dim)
        # Clips have no class token (VideoMAE, the space-time MAE), and their fixed table is not saved:
        # VideoMAE's checkpoints hold none, and it is computed exactly from the config.
        self.num_prefix_tokens = 0 if config.is_video else 1
        self.cls_token = None if config.is_video else nn.Parameter(torch.zeros(1, 1, dim))
        if config.is_video:
            require(not learned_position_table, "learned_position_table", True, "False for clips (a fixed table)")
            self.register_buffer("pos_embed", unsaved_clip_table(dim, config), persistent=False)
        elif learned_position_table:
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(dim, config.grid_size, cls_token=True)[None])
        else:  # fixed, but saved: official checkpoints hold it and load strictly
            self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, config.grid_size, cls_token=True)[None])
        self.blocks = build_blocks(
            dim,
            config.depth,
            config.num_heads,
            config.mlp_ratio,
            config.layer_norm_eps,
            drop_path_rate,
            window_size=window_size,
            global_blocks=self.global_blocks,
            rel_pos_grid=config.grid_size if rel_pos else None,
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if final_norm else None
        self.num_features = dim
        # timm's reduction of a patch grid: the patch size (the larger side of a non-square one).
        self.feature_info = [
            {"module": f"blocks.{index}", "num_chs": dim, "reduction": max(config.patch_hw)}
            for index in range(config.depth)
        ]
        self.grad_checkpointing = False
        if not self.patch_embed.proj.weight.is_meta:  # a model built on meta for loading has nothing to initialise
            if self.cls_token is not None:
                nn.init.normal_(self.cls_token, std=_CLS_STD)
            self.apply(init_vit_weights)

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """How checkpoints map onto this model (see :class:`CheckpointRules`)."""
        return CheckpointRules(
            position_tables=() if self.config.is_video else ("pos_embed",),
            learned_tables=("pos_embed",) if self.learned_position_table else (),
            settings=("num_heads", "layer_norm_eps", "video_pos_embed"),
            shapes=("embed_dim", "depth", "mlp_ratio", "tubelet_size"),
            fresh=tuple(f"blocks.{index}.attn.rel_pos_" for index in range(len(self.blocks)) if self.rel_pos),
            input_filters=("patch_embed.proj.weight",),
            foreign=HEAD_PREFIXES,
            foreign_hint=(
                "a fine-tuned classifier (head.*, fc_norm.*), not MAE pre-training weights: it has no decoder and "
                "its final norm was replaced; load it with MAEViTClassifier"
            ),
        )

    def grid_of(self, imgs: torch.Tensor) -> tuple[int, ...]:
        """Check an image batch for this model and return its patch grid. imgs: (B, C, H, W) -> (H / P_h, W / P_w).

        Clips (a video model): (B, C, T, H, W) -> (T / t, H / P_h, W / P_w).
        """
        config = self.config
        if config.is_video:
            grid = clip_grid(imgs, config.tubelet, config.in_chans)
        else:
            grid = patch_grid(imgs, config.patch_hw, config.in_chans)
        require(imgs.is_floating_point(), "imgs", describe(imgs), "a floating-point tensor")
        return grid

    def position_table(self, grid: tuple[int, ...]) -> torch.Tensor:
        """The position table for a patch grid, class row first: (1, 1 + h*w, D); clips: (1, T'*h*w, D)."""
        if self.config.is_video:
            return fixed_clip_table(self.pos_embed, self.config, grid)
        if self.learned_position_table:
            return resize_pos_embed(self.pos_embed, grid, self.config.grid_size)
        return position_table_for_grid(self.pos_embed, self.config.grid_size, grid)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (every block of the model).

        Turning it on turns the MLPs' activation recompute off (:meth:`set_activation_recompute`): the
        blocks' recomputation covers it, and inside a checkpoint it would keep each MLP's hidden tensor alive.
        """
        if enable:
            self.set_activation_recompute(False)
        self.grad_checkpointing = enable

    def set_activation_recompute(self, enable: bool = True) -> None:
        """Recompute each MLP's GELU output in backward instead of storing it (every block; off by default).

        Same values and gradients, about a quarter less kept for backward; but hooks on ``mlp.act`` run
        twice per step and outer saved-tensor hooks (``save_on_cpu``) miss what the MLPs save (see
        :class:`Mlp`). Not with gradient checkpointing, which recomputes whole blocks.
        """
        expected = "False while gradient checkpointing is on (it already recomputes whole blocks)"
        require(not (enable and self.grad_checkpointing), "enable", enable, expected)
        for module in self.modules():
            if isinstance(module, Mlp):
                module.recompute_activation = enable

    def run_blocks(
        self,
        tokens: torch.Tensor,
        blocks: nn.ModuleList | None = None,
        keep: torch.Tensor | None = None,
        grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Run the encoder's (or the given) blocks, without any final norm. tokens: (B, N, D) -> (B, N, D).

        ``keep``: an optional (B, N) boolean mask of the tokens that take part (False: padding). ``grid``:
        the (h, w) patch grid of tokens that are a class token and every patch, for windowed attention.
        """
        for block in self.blocks if blocks is None else blocks:
            tokens = run_block(block, tokens, self.grad_checkpointing, keep, grid)
        return tokens

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final norm where the model has one, else the tokens unchanged. (..., D) -> (..., D)."""
        return tokens if self.norm is None else self.norm(tokens)

    def transform(
        self, tokens: torch.Tensor, keep: torch.Tensor | None = None, grid: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """The blocks, then the final norm. tokens: (B, N, D) -> (B, N, D); ``keep``, ``grid``: :meth:`run_blocks`."""
        return self.final_norm(self.run_blocks(tokens, keep=keep, grid=grid))

    def embed(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the images, then embed them: patch tokens with positions (B, L, D), class token with its (B, 1, D)."""
        patches, cls, _ = self._embed(imgs)
        return patches, cls

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Encode every patch. imgs: (B, C, H, W) -> tokens (B, 1 + L, D), class token first, after the final norm."""
        tokens, grid = self._embed_all(imgs)
        return self.transform(tokens, grid=grid)

    def forward_pooled(self, imgs: torch.Tensor, pool: str = "token") -> torch.Tensor:
        """One feature vector per image. imgs: (B, C, H, W) -> (B, D).

        ``pool="token"``: the class token of :meth:`forward_features` (the paper's linear-probe feature).
        ``pool="avg"``: the mean of the patch tokens as they leave the last block, then the final norm
        (the paper's fine-tuning global pool, with the pretrained norm in the place of ``fc_norm``).
        A model without a final norm returns the tokens as they leave the last block.
        """
        require(pool in self.pools, "pool", repr(pool), f"one of {self.pools}")
        tokens, grid = self._embed_all(imgs)
        return self.final_norm(pool_tokens(self.run_blocks(tokens, grid=grid), pool, self.num_prefix_tokens))

    @property
    def pools(self) -> tuple[str, ...]:
        """The poolings this model offers: ``"token"`` needs a class token (clips have none)."""
        return POOLS if self.num_prefix_tokens else ("avg",)

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
        ``norm`` applies the final norm (if the model has one) to each. Returns ``(final tokens
        (B, 1 + L, D), outputs)``, or only the outputs with ``intermediates_only``; ``stop_early``
        skips blocks after the last index.
        """
        take = _block_indices(len(self.blocks), indices)
        require(output_fmt in _FORMATS, "output_fmt", repr(output_fmt), f"one of {_FORMATS}")
        tokens, grid = self._embed_all(imgs)
        outputs: list[Any] = []
        last = max(take) if stop_early or intermediates_only else len(self.blocks) - 1
        for index, block in enumerate(self.blocks[: last + 1]):
            tokens = run_block(block, tokens, self.grad_checkpointing, None, grid)
            if index in take:
                shown = self.final_norm(tokens) if norm else tokens
                outputs.append(_as_output(shown, grid, output_fmt, return_prefix_tokens, self.num_prefix_tokens))
        return outputs if intermediates_only else (self.final_norm(tokens), outputs)

    def _embed(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
        """Check the images, then embed: patches (B, L, D) and class token (B, 1, D), with positions, and the grid.

        Clips have no class token: None.
        """
        grid = self.grid_of(imgs)  # before any computation: bad input is our ValueError, not a conv error
        patches = self.patch_embed(imgs)
        table = self.position_table(grid)
        if self.cls_token is None:
            return patches + table, None, grid
        cls = (self.cls_token + table[:, :1]).expand(patches.shape[0], -1, -1)
        return patches + table[:, 1:], cls, grid

    def _embed_all(self, imgs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """:meth:`_embed` with the class token (if any) in front: tokens (B, 1 + L, D), and the grid."""
        patches, cls, grid = self._embed(imgs)
        return (patches if cls is None else torch.cat([cls, patches], dim=1)), grid


def _global_blocks(window_size: int | None, global_blocks: Sequence[int] | None, depth: int) -> tuple[int, ...]:
    """Check the windowing options; the blocks that attend globally (ViTDet's by default, with windows)."""
    require(
        window_size is None or (is_int(window_size) and window_size > 0),
        "window_size",
        repr(window_size),
        "None (global attention) or a positive int (patches per window side)",
    )
    if global_blocks is None:
        return () if window_size is None else vitdet_global_blocks(depth)
    require(window_size is not None, "global_blocks", repr(global_blocks), "None without window_size")
    ok = not isinstance(global_blocks, str) and all(is_int(index) and 0 <= index < depth for index in global_blocks)
    require(ok, "global_blocks", repr(global_blocks), f"block indices in [0, {depth - 1}]")
    return tuple(sorted(set(global_blocks)))


def pool_tokens(tokens: torch.Tensor, pool: str, prefix: int = 1) -> torch.Tensor:
    """One vector per image. tokens: (B, prefix + L, D), class token first -> (B, D): the class token or the patch
    mean. ``prefix``: the tokens in front of the patches (1, the class token; 0 for clips)."""
    return tokens[:, 0] if pool == "token" else tokens[:, prefix:].mean(dim=1)


def unsaved_clip_table(dim: int, config: MAEConfig) -> torch.Tensor:
    """A video model's fixed table for its configured grid, built where no checkpoint can bring it: (1, L, dim)."""
    return clip_position_table(dim, config.token_grid, config.video_pos_embed, device=unsaved_table_device())[None]


def fixed_clip_table(stored: torch.Tensor, config: MAEConfig, grid: tuple[int, ...]) -> torch.Tensor:
    """A clip model's stored (1, L, D) table, or its table computed for another tubelet grid: (1, T'*h*w, D)."""
    if is_static(*grid) and tuple(grid) == config.token_grid:
        return stored
    return clip_position_table(
        stored.shape[-1], grid, config.video_pos_embed, device=stored.device, dtype=stored.dtype
    )[None]


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


def _as_output(tokens: torch.Tensor, grid: tuple[int, ...], output_fmt: str, with_prefix: bool, prefix: int) -> Any:
    """Split off the class token (``prefix`` tokens) and lay the patch tokens out as asked. tokens: (B, 1 + L, D).

    ``"NCHW"``: (B, D, h, w), or (B, D, T', h, w) for clips.
    """
    patches = tokens[:, prefix:]
    if output_fmt == "NCHW":
        patches = patches.transpose(1, 2).unflatten(2, tuple(grid)).contiguous()
    return (patches, tokens[:, :prefix]) if with_prefix else patches
