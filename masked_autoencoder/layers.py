"""The ViT building blocks: patch embedding, attention (fused qkv, SDPA), MLP, drop path, pre-norm block, init."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from .recompute import recomputed_in_backward
from .rel_pos import decomposed_bias, with_class_token
from .windows import windowed_attention


class PatchEmbed(nn.Module):
    """Linear embedding of non-overlapping patches. imgs: (B, C, H, W) -> (B, L, D), patches row-major.

    A (t, P_h, P_w) ``patch_size`` embeds tubelets of clips: (B, C, T, H, W) -> (B, L, D), (t, h, w) row-major.
    """

    def __init__(self, patch_size: tuple[int, ...], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        conv = nn.Conv3d if len(patch_size) == 3 else nn.Conv2d
        self.proj = conv(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.proj(imgs).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection. x: (B, N, D) -> (B, N, D).

    ``keep``: an optional (B, N) boolean mask of the tokens that take part as keys (padding: False).
    ``window_size`` (None: global): attention within windows of the patch grid (:mod:`.windows`), for
    tokens that are a class token and the patches of the ``grid`` (h, w) given to :meth:`forward`
    (N = 1 + h*w); without a grid (masked pre-training) attention is global. ``rel_pos_size`` (h, w):
    decomposed relative position biases (:mod:`.rel_pos`), parameters ``rel_pos_h`` (2h - 1, head dim)
    and ``rel_pos_w`` (2w - 1, head dim) starting at zero, as ViTDet's; applied where a grid is given.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int | None = None,
        rel_pos_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        if rel_pos_size is not None:
            head_dim = dim // num_heads
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, head_dim))
        self.rel_pos = rel_pos_size is not None

    def extra_repr(self) -> str:
        return "" if self.window_size is None else f"window_size={self.window_size}"

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, grid: tuple[int, int] | None = None
    ) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        tables = (self.rel_pos_h, self.rel_pos_w) if self.rel_pos and grid is not None else None
        if self.window_size is not None and grid is not None:
            x = windowed_attention(q, k, v, grid, self.window_size, tables)
        else:
            mask = None if keep is None else keep[:, None, None, :]
            if tables is not None:  # a grid, hence no keep: the bias alone
                mask = with_class_token(decomposed_bias(q[:, :, 1:], grid, *tables))  # type: ignore[arg-type]
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(x, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Two linear layers with an exact (erf) GELU between. x: (B, N, D) -> (B, N, D).

    ``recompute_activation`` (off by default; ``set_activation_recompute`` sets it in a whole model): in
    eager training the GELU's output (B, N, hidden_dim) is not kept for backward but recomputed there by
    running ``act`` again on its input (:func:`recomputed_in_backward`): same values and gradients, about
    a quarter less kept for backward (docs/training.md). Off by default because users see it: hooks on
    ``act`` run again in backward, and an outer ``saved_tensors_hooks`` (``save_on_cpu``) sees none of what
    ``fc2`` saves, while the GELU's input stays where it is. ``act`` and ``fc2`` always run as modules, so
    hooks and replacements (LoRA, quantisation) work as written. Only a plain ``nn.GELU`` is recomputed;
    under ``torch.compile`` the compiler chooses what to recompute.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.recompute_activation = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        activated = self.act(hidden)
        # Only a GELU is known to be a pure function of its input, safe to run again.
        recompute = self.recompute_activation and type(self.act) is nn.GELU and not torch.compiler.is_compiling()
        if not (recompute and torch.is_grad_enabled() and activated.requires_grad):
            return self.fc2(activated)
        # Through the module, not F.gelu: a hook that changes act's output must change the recomputed one too.
        with recomputed_in_backward(activated, lambda: self.act(hidden)):
            return self.fc2(activated)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples and rescale the rest.

    x: (B, ...) -> (B, ...); the identity in eval mode or with ``drop_prob`` 0.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        kept = torch.empty(x.shape[0], *(1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * kept / keep


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then + mlp(norm2(x)). x: (B, N, D) -> (B, N, D).

    ``drop_path`` is the stochastic-depth rate of both residual branches (fine-tuning only);
    ``attention``: :class:`Attention`'s keywords (``window_size``, ``rel_pos_size``); the forward's
    ``grid`` is :class:`Attention`'s.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        eps: float,
        drop_path: float = 0.0,
        attention: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, **(attention or {}))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, grid: tuple[int, int] | None = None
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), keep, grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def build_blocks(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    eps: float,
    drop_path_rate: float = 0.0,
    *,
    window_size: int | None = None,
    global_blocks: tuple[int, ...] = (),
    rel_pos_grid: tuple[int, int] | None = None,
) -> nn.ModuleList:
    """``depth`` fresh :class:`Block` s of width ``dim``; drop path rises linearly from 0 to ``drop_path_rate``.

    With ``window_size``, every block but ``global_blocks`` attends within windows. With ``rel_pos_grid``
    (the patch grid the global blocks are made for), every block has decomposed relative position
    biases, sized for its window or that grid.
    """
    rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # as official: 0 in the first block
    blocks = []
    for index, rate in enumerate(rates):
        window = None if index in global_blocks else window_size
        rel_pos_size = None if rel_pos_grid is None else rel_pos_grid if window is None else (window, window)
        attention = {"window_size": window, "rel_pos_size": rel_pos_size}
        blocks.append(Block(dim, num_heads, mlp_ratio, eps, rate, attention))
    return nn.ModuleList(blocks)


def run_block(
    block: nn.Module,
    x: torch.Tensor,
    checkpointing: bool,
    keep: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Apply a block (``keep``, ``grid``: see :class:`Attention`), recomputed in backward with ``checkpointing``."""
    if checkpointing and torch.is_grad_enabled():
        # Non-reentrant: works with torch.compile and inputs that need no grad; RNG (drop path) is replayed.
        return checkpoint(block, x, keep, grid, use_reentrant=False)
    return block(x, keep, grid)


def init_vit_weights(module: nn.Module) -> None:
    """The official MAE init for one module (use with ``Module.apply``).

    Linear: xavier_uniform weight, zero bias. LayerNorm: weight 1, bias 0. Patch projection:
    xavier_uniform on its (out, in) view, bias left at PyTorch's default as in the official code.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PatchEmbed):
        # Initialise like a Linear on the flattened (out, in) view, not with Conv2d's fan.
        weight = module.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
