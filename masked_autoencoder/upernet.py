"""UperNet (Xiao et al., 2018) for semantic segmentation, on four maps of an MAE encoder as BEiT and MAE use it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import describe, is_int, is_number, require, require_positive_int
from .pyramid import LEVEL_STRIDES, min_cells, power_of_two_patch, require_encoder, rescale_branch
from .vit import VisionTransformer

_SEG_STD = 0.01  # mmseg's init of the classifier (normal, zero bias)
_SCALES = (4.0, 2.0, 1.0, 0.5)  # BEiT's neck: the four blocks' maps (stride P) to strides P/4, P/2, P, 2P


class ConvBNReLU(nn.Sequential):
    """A convolution without bias, BatchNorm and ReLU, with mmcv's ``ConvModule`` keys (``conv.*``, ``bn.*``).

    (B, C_in, h, w) -> (B, C_out, h, w); ``padding`` keeps the size.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int) -> None:
        conv = nn.Conv2d(in_chans, out_chans, kernel_size, padding=kernel_size // 2, bias=False)
        super().__init__(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_chans), activate=nn.ReLU(inplace=True)))


def _resize(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


class UperNetHead(nn.Module):
    """UperNet's decode head, as mmseg's ``UPerHead``: maps of strides s, 2s, 4s, ... -> per-pixel class logits.

    maps: one (B, C_i, h_i, w_i) per entry of ``in_channels``, finest first (for four: strides 4, 8, 16,
    32) -> logits (B, num_classes, H, W) at ``size``, or at the finest map's size without it. A
    pooling pyramid module (average pools to 1x1, 2x2, 3x3 and 6x6 for ``pool_scales`` (1, 2, 3, 6), each
    a 1x1 conv, upsampled back and concatenated with the map, then a 3x3 conv) on the coarsest map; an FPN
    top-down path (lateral 1x1 convs, each level plus the upsampled coarser one, then a 3x3 conv); every
    level upsampled to the finest, concatenated, fused by a 3x3 conv; dropout; a 1x1 classifier; bilinear
    upsampling (``align_corners=False``) to ``size``. Each conv is followed by BatchNorm and ReLU, as in
    mmseg (whose configs use SyncBatchNorm: ``nn.SyncBatchNorm.convert_sync_batchnorm`` converts them);
    its pooled 1x1 maps need a batch of at least 2 in training. ``channels``: the width of every level
    (512, mmseg's UperNet on ViT; BEiT used 768). Keys: mmseg's, ``psp_modules.*``, ``bottleneck.*``,
    ``lateral_convs.*``, ``fpn_convs.*``, ``fpn_bottleneck.*``, ``conv_seg.*``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        ok = isinstance(in_channels, Sequence) and len(in_channels) > 0
        ok = ok and all(is_int(chans) and chans > 0 for chans in in_channels)
        require(ok, "in_channels", repr(in_channels), "a non-empty sequence of positive ints, one per map")
        require_positive_int(num_classes, "num_classes")
        require_positive_int(channels, "channels")
        ok = isinstance(pool_scales, Sequence) and all(is_int(s) and s > 0 for s in pool_scales)
        require(ok, "pool_scales", repr(pool_scales), "a sequence of positive ints (output sides of the pools)")
        require(is_number(dropout) and 0 <= dropout < 1, "dropout", repr(dropout), "a number in [0, 1)")
        super().__init__()
        self.in_channels = list(in_channels)
        coarsest = in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvBNReLU(coarsest, channels, 1)) for scale in pool_scales
        )
        self.bottleneck = ConvBNReLU(coarsest + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(chans, channels, 1) for chans in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=_SEG_STD)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, maps: Sequence[torch.Tensor], size: Sequence[int] | None = None) -> torch.Tensor:
        """Per-pixel logits. maps: (B, C_i, h_i, w_i), finest first -> (B, num_classes, *size) (default: h_0, w_0)."""
        _check_maps(maps, self.in_channels)
        coarsest = maps[-1]
        pooled = [_resize(module(coarsest), coarsest.shape[-2:]) for module in self.psp_modules]
        levels = [conv(m) for conv, m in zip(self.lateral_convs, maps[:-1], strict=True)]
        levels.append(self.bottleneck(torch.cat([coarsest, *pooled], dim=1)))
        for index in range(len(levels) - 1, 0, -1):  # top-down: each level takes in the coarser one
            levels[index - 1] = levels[index - 1] + _resize(levels[index], levels[index - 1].shape[-2:])
        outs = [conv(level) for conv, level in zip(self.fpn_convs, levels[:-1], strict=True)] + [levels[-1]]
        finest = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([outs[0], *(_resize(out, finest) for out in outs[1:])], dim=1))
        logits = self.conv_seg(self.dropout(fused))
        return logits if size is None else _resize(logits, size)


def _check_maps(maps: Sequence[torch.Tensor], in_channels: list[int]) -> None:
    """Raise unless ``maps`` are one 4-D tensor per entry of ``in_channels``, with those channels."""
    ok = len(maps) == len(in_channels) and all(
        isinstance(m, torch.Tensor) and m.dim() == 4 and m.shape[1] == chans
        for m, chans in zip(maps, in_channels, strict=True)
    )
    got = [describe(m) for m in maps]
    require(ok, "maps", got, f"{len(in_channels)} maps (B, C, h, w), finest first, of {in_channels} channels")


class UperNet(nn.Module):
    """Semantic segmentation as MAE's Table 5 (BEiT's code): an MAE encoder, BEiT's neck and a :class:`UperNetHead`.

    imgs (B, C, H, W) -> logits (B, num_classes, H, W). The patch maps (B, D, H/P, W/P) of four blocks
    (``indices``, without the final norm; default: evenly spaced, depth/4 - 1, depth/2 - 1, 3 depth/4 - 1
    and depth - 1, e.g. 2, 5, 8, 11 for ViT-B as mmseg's ViT UperNet; BEiT and MAE's ADE20K runs used
    3, 5, 7, 11 for ViT-B and 7, 11, 15, 23 for ViT-L) go, shallowest first, to strides 4, 8, 16 and 32:
    for P = 16, two 2x2 stride-2 transposed convs with BatchNorm and GELU between them, one, none, a
    2x2 max-pool (each D channels, BEiT's ``fpn1`` to ``fpn4``); then the head. Another power of two
    scales by P / stride likewise (P = 8: one transposed conv, none, 2x2 and 4x4 max-pools); any other
    patch (14) goes to strides P/4, P/2, P and 2P by BEiT's layers. Images: any size divisible by the
    patch, at least 32 pixels a side (2 patches for a patch that is no power of two). The
    encoder's final norm and any block after the deepest index take no part: with
    ``DistributedDataParallel`` pass ``find_unused_parameters=True`` or freeze them.
    Keys: ``encoder.*`` (its own), ``neck.0.*`` to ``neck.3.*``, ``decode_head.*`` (:class:`UperNetHead`'s).
    Not included: mmseg's auxiliary FCN head and the sliding-window inference of its ADE20K runs.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        num_classes: int,
        indices: Sequence[int] | None = None,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        require_encoder(encoder)
        depth = encoder.config.depth
        require(depth >= 4, "encoder", f"an encoder of {depth} blocks", "an encoder of at least 4 blocks")
        if indices is None:
            indices = [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]
        ok = isinstance(indices, Sequence) and all(is_int(i) and -depth <= i < depth for i in indices)
        ok = ok and len({i % depth for i in indices}) == len(indices) == len(_SCALES)
        require(ok, "indices", repr(indices), f"four distinct block indices in [{-depth}, {depth - 1}]")
        super().__init__()
        self.encoder = encoder
        self.indices = sorted(i % depth for i in indices)  # forward_intermediates returns them in block order
        dim, patch = encoder.num_features, power_of_two_patch(encoder)
        scales = _SCALES if patch is None else [patch / stride for stride in LEVEL_STRIDES]
        self.min_patches = 2 if patch is None else min_cells(patch)  # 2: BEiT's 2x2 pool for the coarsest map
        self.neck = nn.ModuleList(
            nn.Sequential(*rescale_branch(dim, scale, nn.BatchNorm2d, halve=False)[0]) for scale in scales
        )
        self.decode_head = UperNetHead([dim] * len(_SCALES), num_classes, channels, pool_scales, dropout)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits. imgs: (B, C, H, W) -> (B, num_classes, H, W)."""
        grid = self.encoder.grid_of(imgs)  # first: a non-tensor or a wrong size is the encoder's ValueError
        expected = f"at least {self.min_patches} patches a side"
        require(min(grid) >= self.min_patches, "imgs", f"a grid of {grid[0]} x {grid[1]} patches", expected)
        maps = self.encoder.forward_intermediates(imgs, self.indices, output_fmt="NCHW", intermediates_only=True)
        return self.decode_head([rescale(m) for rescale, m in zip(self.neck, maps, strict=True)], size=imgs.shape[-2:])
