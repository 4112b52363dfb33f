"""Model factories: ``create_model`` and the ``mae_vit_*`` functions, built from the named architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._validation import fail, require
from .architectures import canonical_name, model_config
from .encoder import MAEEncoder
from .hub.formats import Checkpoint
from .hub.known_weights import DEFAULT_WEIGHTS
from .hub.mixin import read_checkpoint
from .model import MaskedAutoencoderViT

# The fields that make an architecture: pretrained weights must agree on them.
_ARCHITECTURE_FIELDS = ("patch_size", "embed_dim", "depth", "num_heads")


def create_model(
    name: str, *, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any
) -> Any:
    """Build a named architecture: a :class:`MaskedAutoencoderViT`, or with ``encoder_only`` its :class:`MAEEncoder`.

    ``pretrained``: False for fresh (official) initialisation, True for the architecture's default
    published weights (the full facebook/vit-mae-* models), or any repo id or path that
    ``from_pretrained`` reads; the weights must be of this architecture. Overrides change config fields.
    """
    model_class = MAEEncoder if encoder_only else MaskedAutoencoderViT
    if not pretrained:
        return model_class(model_config(name, **overrides))
    return model_class.from_checkpoint(pretrained_checkpoint(name, pretrained, overrides))


def pretrained_checkpoint(
    name: str, pretrained: bool | str | Path, overrides: dict[str, Any], defaults: dict[str, str] = DEFAULT_WEIGHTS
) -> Checkpoint:
    """Read the weights that a factory's ``pretrained`` names, checked to be weights of the architecture ``name``.

    ``pretrained``: True for the architecture's weights in ``defaults``, else a repo id or path.
    """
    canonical = canonical_name(name)
    source = defaults.get(canonical) if pretrained is True else pretrained
    if source is None:
        fail("pretrained", True, f"a repo id or path: {canonical} has no published weights")
    checkpoint = read_checkpoint(source, overrides=overrides)
    expected = model_config(canonical)
    differ = {
        f: getattr(checkpoint.config, f)
        for f in _ARCHITECTURE_FIELDS
        if getattr(checkpoint.config, f) != getattr(expected, f)
    }
    require(not differ, "pretrained", f"{str(source)!r} with {differ}", f"weights of {canonical} ({expected})")
    return checkpoint


def mae_vit_tiny_patch16(*, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any) -> Any:
    """MAE with a ViT-Ti/16 encoder (192 wide, 12 blocks) and a 128-wide, 4-block decoder."""
    return create_model("mae_vit_tiny_patch16", pretrained=pretrained, encoder_only=encoder_only, **overrides)


def mae_vit_small_patch16(
    *, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any
) -> Any:
    """MAE with a ViT-S/16 encoder (384 wide, 12 blocks) and a 256-wide, 4-block decoder."""
    return create_model("mae_vit_small_patch16", pretrained=pretrained, encoder_only=encoder_only, **overrides)


def mae_vit_base_patch16(*, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any) -> Any:
    """MAE ViT-B/16 as in the paper (768 wide, 12 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_base_patch16", pretrained=pretrained, encoder_only=encoder_only, **overrides)


def mae_vit_large_patch16(
    *, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any
) -> Any:
    """MAE ViT-L/16 as in the paper (1024 wide, 24 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_large_patch16", pretrained=pretrained, encoder_only=encoder_only, **overrides)


def mae_vit_huge_patch14(*, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any) -> Any:
    """MAE ViT-H/14 as in the paper (1280 wide, 32 blocks; decoder 512 wide, 8 blocks)."""
    return create_model("mae_vit_huge_patch14", pretrained=pretrained, encoder_only=encoder_only, **overrides)


mae_vit_tiny = mae_vit_tiny_patch16
mae_vit_small = mae_vit_small_patch16
mae_vit_base = mae_vit_base_patch16
mae_vit_large = mae_vit_large_patch16
mae_vit_huge = mae_vit_huge_patch14
