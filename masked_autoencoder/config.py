"""MAEConfig: the architecture and training-target settings of a Masked Autoencoder (the only home of defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._validation import fail, require, require_mask_ratio, require_positive_int, require_positive_number, to_pair

Size = int | tuple[int, int]
IMAGE_MASK_RATIO = 0.75  # the paper's
CLIP_MASK_RATIO = 0.9  # the space-time MAE's and VideoMAE's
LOSS_TARGETS = ("mae", "videomae")
# Width multiples each fixed table needs: (row, column) x (sin, cos) quarters; time in a quarter, space in
# the rest split likewise; (sin, cos) pairs.
_TABLE_WIDTHS = {"2d": (4, "2-D sin-cos"), "separable": (16, "separable space-time"), "flat": (2, "flat 1-D")}


@dataclass(frozen=True)
class MAEConfig:
    """Settings of a Masked Autoencoder ViT.

    Field names are the official ``MaskedAutoencoderViT`` constructor's argument names and the
    defaults are its defaults (a ViT-L/16 encoder with a 512-wide, 8-block decoder).
    ``img_size`` and ``patch_size`` take an int or an (h, w) pair; ``img_size`` only fixes the
    grid of the stored position tables: the model runs on any image size divisible by the patch.

    Clips: ``num_frames`` and ``tubelet_size`` (VideoMAE's names; 1 and 1, the defaults, mean images) make a
    video MAE, fed (B, C, T, H, W) and cut into ``tubelet_size`` x P_h x P_w tubelets, without a class token
    (as VideoMAE and the space-time MAE), with the fixed position table ``video_pos_embed``: ``"separable"``
    (time and space in their own dims, :func:`~masked_autoencoder.pos_embed.sincos_pos_embed_3d`) or
    ``"flat"`` (VideoMAE's 1-D table of the token index). ``mask_ratio`` defaults to the paper's 0.75 for
    images and 0.9 for clips (the space-time MAE's and VideoMAE's).

    ``loss_target``: what the decoder learns to predict. ``"mae"`` (the official MAE's and the space-time
    MAE's): the model's input, with ``norm_pix_loss`` each patch normalised by its own mean and variance.
    ``"videomae"`` (VideoMAE's weights): the pixels in the data's units (the input un-normalised with the
    model's ``pretrained_cfg``), with ``norm_pix_loss`` each channel of a patch normalised apart (std + eps).
    """

    img_size: Size = 224
    patch_size: Size = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    mask_ratio: float = None  # type: ignore[assignment]  # resolved in __post_init__: IMAGE_ / CLIP_MASK_RATIO
    layer_norm_eps: float = 1e-6
    num_frames: int = 1
    tubelet_size: int = 1
    video_pos_embed: str = "separable"
    loss_target: str = "mae"

    def __post_init__(self) -> None:
        image_h, image_w = to_pair(self.img_size, "img_size")
        patch_h, patch_w = to_pair(self.patch_size, "patch_size")
        require(
            image_h % patch_h == 0 and image_w % patch_w == 0,
            "img_size",
            repr(self.img_size),
            f"divisible by patch_size {self.patch_size!r}",
        )
        for name in (
            "in_chans",
            "embed_dim",
            "depth",
            "num_heads",
            "decoder_embed_dim",
            "decoder_depth",
            "decoder_num_heads",
        ):
            require_positive_int(getattr(self, name), name)
        self._check_clip_fields()
        require(self.loss_target in LOSS_TARGETS, "loss_target", repr(self.loss_target), f"one of {LOSS_TARGETS}")
        for width, heads in (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads")):
            dim, num_heads = getattr(self, width), getattr(self, heads)
            require(dim % num_heads == 0, width, dim, f"divisible by {heads}={num_heads}")
            multiple, table = _TABLE_WIDTHS[self.video_pos_embed if self.is_video else "2d"]
            require(dim % multiple == 0, width, dim, f"a multiple of {multiple} ({table} position embeddings)")
        require_positive_number(self.mlp_ratio, "mlp_ratio")
        require(isinstance(self.norm_pix_loss, bool), "norm_pix_loss", repr(self.norm_pix_loss), "a bool")
        # Stored as a Python float: a NumPy scalar ratio is accepted, and config.json stays plain JSON.
        ratio = _default_mask_ratio(self.is_video) if self.mask_ratio is None else self.mask_ratio
        object.__setattr__(self, "mask_ratio", require_mask_ratio(ratio))
        require_positive_number(self.layer_norm_eps, "layer_norm_eps")

    def _check_clip_fields(self) -> None:
        require_positive_int(self.num_frames, "num_frames")
        require_positive_int(self.tubelet_size, "tubelet_size")
        frames, tubelet = self.num_frames, self.tubelet_size
        require(frames % tubelet == 0, "num_frames", frames, f"a multiple of tubelet_size={tubelet}")
        kinds = ("separable", "flat") if self.is_video else ("separable",)
        ok_kind = self.video_pos_embed in kinds
        require(ok_kind, "video_pos_embed", repr(self.video_pos_embed), f"one of {kinds} (images: the 2-D table)")

    @property
    def is_video(self) -> bool:
        """Whether the model takes clips (B, C, T, H, W): ``num_frames`` or ``tubelet_size`` above 1."""
        return (self.num_frames, self.tubelet_size) != (1, 1)

    @property
    def tubelet(self) -> tuple[int, int, int]:
        """The (t, P_h, P_w) a token covers: ``tubelet_size`` frames of a patch (1 for images)."""
        return (self.tubelet_size, *self.patch_hw)

    @property
    def token_patch(self) -> tuple[int, ...]:
        """What one token covers, as :func:`patchify` takes it: (P_h, P_w) for images, :attr:`tubelet` for clips."""
        return self.tubelet if self.is_video else self.patch_hw

    @property
    def token_grid(self) -> tuple[int, ...]:
        """The tokens' grid at the configured size: (h, w) for images, (T / t, h, w) for clips."""
        return (self.num_frames // self.tubelet_size, *self.grid_size) if self.is_video else self.grid_size

    @property
    def image_hw(self) -> tuple[int, int]:
        """The configured image size as (H, W)."""
        return to_pair(self.img_size, "img_size")

    @property
    def patch_hw(self) -> tuple[int, int]:
        """The patch size as (P_h, P_w)."""
        return to_pair(self.patch_size, "patch_size")

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid of the configured image (frame) size, (H / P_h, W / P_w)."""
        (image_h, image_w), (patch_h, patch_w) = self.image_hw, self.patch_hw
        return image_h // patch_h, image_w // patch_w

    @property
    def patch_dim(self) -> int:
        """Pixel values per patch (tubelet), t * P_h * P_w * C: the width of the decoder's prediction."""
        frames, patch_h, patch_w = self.tubelet
        return frames * patch_h * patch_w * self.in_chans

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (pairs become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MAEConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        _require_known_fields(values)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def replace(self, **overrides: Any) -> MAEConfig:
        """A copy with some fields changed (validated again); unknown names raise ``ValueError``. A ``mask_ratio``
        at its default (0.75 for images, 0.9 for clips) follows a change between images and clips."""
        _require_known_fields(overrides)
        if "mask_ratio" not in overrides and self.mask_ratio == _default_mask_ratio(self.is_video):
            overrides = {**overrides, "mask_ratio": None}  # a ratio at its default follows images <-> clips
        return dataclasses.replace(self, **overrides)


def _default_mask_ratio(video: bool) -> float:
    return CLIP_MASK_RATIO if video else IMAGE_MASK_RATIO


def split_config_fields(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments told apart by name: (:class:`MAEConfig` fields, the rest: a model's own arguments)."""
    names = {f.name for f in dataclasses.fields(MAEConfig)}
    return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}


def _require_known_fields(values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(MAEConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        fail("config field names", unknown, f"among {sorted(known)}")


def resolve_config(config: MAEConfig | None, overrides: dict[str, Any]) -> MAEConfig:
    """The config a module is built from: ``config`` (or the defaults) with keyword overrides applied."""
    if config is not None and not isinstance(config, MAEConfig):
        fail("config", type(config).__name__, "an MAEConfig or None")
    return (config or MAEConfig()).replace(**overrides)
