"""SimpleFeaturePyramid: ViTDet's multi-scale maps (strides 4 to 64) from the last map of a plain ViT."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import require, require_positive_int
from .vit import VisionTransformer

STRIDES = {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}
"""The pyramid's maps by name (torchvision's FPN names, in order) and their strides in pixels."""
LEVEL_STRIDES = (4, 8, 16, 32)  # the strides, in pixels, of the four maps that both dense models' branches make
# Each branch by detectron2's name, simfp_<log2 of the stride it makes>, and that stride ("pool" has no branch).
_BRANCHES = dict(zip(("simfp_2", "simfp_3", "simfp_4", "simfp_5"), LEVEL_STRIDES, strict=True))
_RESAMPLED_STRIDE = 16  # a patch that is no power of two (14) is resized to this stride: ViTDet's, ViT-B/16's patch
_LN_EPS = 1e-6  # detectron2's LayerNorm, which ViTDet's "LN" norm is


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position of an NCHW map. (B, C, H, W) -> (B, C, H, W)."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return super().forward(maps.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNorm(nn.Conv2d):
    """A convolution without bias, then a norm of its output channels (``norm``): detectron2's ``Conv2d(norm=...)``.

    Keys: ``weight`` and ``norm.*``, as detectron2's, so that ViTDet's pyramid keys map one to one.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, norm: nn.Module) -> None:
        super().__init__(in_chans, out_chans, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = norm
        nn.init.kaiming_uniform_(self.weight, a=1)  # detectron2's c2_xavier_fill, as ViTDet initialises these

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(maps))


def _layer_norm(chans: int) -> LayerNorm2d:
    return LayerNorm2d(chans, eps=_LN_EPS)


def rescale_branch(
    dim: int, scale: float, norm: Callable[[int], nn.Module], halve: bool
) -> tuple[list[nn.Module], int]:
    """The layers that take a map of stride s to stride s / ``scale``, and their output channels.

    ``scale`` 4: a 2x2 stride-2 transposed conv, ``norm``, GELU, another such conv (8: three, with a
    ``norm`` and GELU between each two); 2: one transposed conv; 1: nothing; 0.5: a 2x2 max-pool (0.25: a
    4x4 one, and so on). ``scale`` must be a power of two. ``halve``: each transposed conv halves the channels
    (ViTDet's pyramid) rather than keeping them (BEiT's neck). (B, D, h, w) -> (B, D', h * scale, w * scale).
    """
    if scale < 1:
        return [nn.MaxPool2d(kernel_size=round(1 / scale), stride=round(1 / scale))], dim
    layers: list[nn.Module] = []
    for step in range(round(math.log2(scale))):
        if step:
            layers += [norm(dim), nn.GELU()]
        out = dim // 2 if halve else dim
        layers.append(nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2))
        dim = out
    return layers, dim


def power_of_two_patch(encoder: VisionTransformer) -> int | None:
    """The encoder's patch side if it is square and a power of two (its map then rescales exactly to every
    stride of ``LEVEL_STRIDES``), else None."""
    height, width = encoder.config.patch_hw
    return height if height == width and height & (height - 1) == 0 else None


def min_cells(stride: int) -> int:
    """Cells a side that a map of ``stride`` needs so that the stride-32 level still has one."""
    return max(1, LEVEL_STRIDES[-1] // stride)


def require_encoder(encoder: object) -> None:
    """Raise unless ``encoder`` is one of this library's ViTs (whose ``forward_intermediates`` the heads read)."""
    expected = "an MAE encoder: a VisionTransformer (MAEEncoder, MaskedAutoencoderViT or MAEViTClassifier)"
    require(isinstance(encoder, VisionTransformer), "encoder", type(encoder).__name__, expected)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid (Li et al., 2022) on an MAE encoder: a detection backbone for torchvision.

    imgs (B, C, H, W) -> ``OrderedDict`` {"0": (B, out, H/4, W/4), "1": (B, out, H/8, W/8), "2": (B, out,
    H/16, W/16), "3": (B, out, H/32, W/32), "pool": (B, out, H/64, W/64)} (``STRIDES``; H/32 rounds
    down, H/64 up, as the pools round them), out = ``out_channels``. From the last block's patch map (B, D, H/P, W/P),
    without the final norm (ViTDet's): two 2x2 stride-2 transposed convs with a channel LayerNorm
    and GELU between them (stride 4, D/4 channels), one (stride 8, D/2), the map itself (stride 16, D),
    a 2x2 max-pool (stride 32, D); each then a 1x1 and a 3x3 conv to ``out`` channels, each conv
    without bias and followed by a channel LayerNorm (ViTDet's "LN"); "pool" subsamples stride 32
    (max-pool, kernel 1, stride 2: torchvision's and ViTDet's ``LastLevelMaxPool``).

    Other patches: the branches start from the patch's stride P, each scaling by P / its stride, so a
    patch of 8 upsamples once for stride 4, keeps the map for 8 and max-pools 2x2 for 16 and 4x4 for
    32 (a patch of 4 or 32 likewise): no level is resampled. A patch that is no power of two (ViT-H/14)
    has its last map resized bilinearly to (ceil(H/16), ceil(W/16)) first, then the patch-16 branches.
    ViTDet instead resizes ViT-H's 14x14 patch-embedding kernel to 16x16 and runs the ViT at patch
    16; this keeps the encoder as it was pre-trained.

    torchvision's ``FasterRCNN``, ``MaskRCNN`` and ``RetinaNet`` take it with their defaults: it has
    ``out_channels``, and their default anchors have five levels (one per map, sizes 32 to 512), their
    RoI poolers read "0" to "3". RetinaNet's anchors are then on strides 4 to 64 rather than its usual
    8 to 128. The detectors pad images to multiples of 32, divisible by a patch of 16 or 8; with a patch
    of 14, pass ``size_divisible=224`` (divisible by 14 and 32).

    ``encoder``: an :class:`MAEEncoder` (a :class:`MaskedAutoencoderViT`'s decoder or an
    :class:`MAEViTClassifier`'s head would stay unused, without gradients). Its final norm takes no
    part either: with ``DistributedDataParallel`` pass ``find_unused_parameters=True`` or freeze it
    (``encoder.norm.requires_grad_(False)``). Images: any size divisible by the patch (the encoder
    checks it), at least 32 pixels a side (17 for a patch that is no power of two; else the stride-32
    and 64 maps are empty). Keys: ``encoder.*`` (the encoder's own, so its weights load as usual) and
    detectron2 ViTDet's ``simfp_2.*``, ``simfp_3.*``, ``simfp_4.*``, ``simfp_5.*`` (strides 4, 8, 16, 32).
    """

    def __init__(self, encoder: VisionTransformer, out_channels: int = 256) -> None:
        require_encoder(encoder)
        require_positive_int(out_channels, "out_channels")
        super().__init__()
        self.encoder = encoder
        self.out_channels = out_channels
        self.base_stride = power_of_two_patch(encoder) or _RESAMPLED_STRIDE  # the stride the branches start from
        self._resampled = self.base_stride != encoder.config.patch_hw[0]
        for name, stride in _BRANCHES.items():
            layers, dim = rescale_branch(encoder.num_features, self.base_stride / stride, _layer_norm, halve=True)
            layers += [
                ConvNorm(dim, out_channels, 1, _layer_norm(out_channels)),
                ConvNorm(out_channels, out_channels, 3, _layer_norm(out_channels)),
            ]
            self.add_module(name, nn.Sequential(*layers))

    def forward(self, imgs: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The pyramid's maps. imgs: (B, C, H, W) -> {"0": (B, out, H/4, W/4), ..., "pool": (B, out, H/64, W/64)}."""
        grid = self.encoder.grid_of(imgs)  # first: a non-tensor or a wrong size is the encoder's ValueError
        height, width = imgs.shape[-2:]
        base = [-(-side // self.base_stride) for side in (height, width)] if self._resampled else list(grid)
        minimum = _RESAMPLED_STRIDE + 1 if self._resampled else LEVEL_STRIDES[-1]
        expected = f"at least {minimum} pixels high and wide (the stride-32 and 64 maps would be empty)"
        require(min(base) >= min_cells(self.base_stride), "imgs", f"images of {height} x {width} pixels", expected)
        (last,) = self.encoder.forward_intermediates(imgs, [-1], output_fmt="NCHW", intermediates_only=True)
        if self._resampled:
            last = F.interpolate(last, size=tuple(base), mode="bilinear", align_corners=False)
        maps = [self.get_submodule(name)(last) for name in _BRANCHES]
        maps.append(F.max_pool2d(maps[-1], kernel_size=1, stride=2))
        return OrderedDict(zip(STRIDES, maps, strict=True))
