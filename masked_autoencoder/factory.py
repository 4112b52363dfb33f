"""Factories: ``create_model``, ``create_classifier`` and the named functions, each built from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from ._validation import require
from .classifier import GLOBAL_POOL, NUM_CLASSES, MAEViTClassifier
from .encoder import MAEEncoder
from .model import MaskedAutoencoderViT
from .registry import Architecture, architecture, model_config
from .vit import VisionTransformer

ModelT = TypeVar("ModelT", bound=VisionTransformer)
# The fields that make an architecture: pretrained weights must agree on them.
_ARCHITECTURE_FIELDS = ("patch_size", "embed_dim", "depth", "num_heads")


def create_model(
    name: str, *, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any
) -> Any:
    """Build a named architecture: a :class:`MaskedAutoencoderViT`, or with ``encoder_only`` its :class:`MAEEncoder`.

    ``pretrained``: False for fresh (official) initialisation, True for the architecture's default
    published weights (the full facebook/vit-mae-* models), or any repo id or path that
    ``from_pretrained`` reads; the weights must be of this architecture. Keywords are config fields
    (overrides) or the model's own arguments (``masking=``, ``drop_path_rate=``), told apart by name.
    A pretrained model is returned in eval mode, as ``from_pretrained`` returns it.
    """
    arch = architecture(name)
    model_class = MAEEncoder if encoder_only else MaskedAutoencoderViT
    if not pretrained:
        return model_class(model_config(name), **overrides)  # the class tells config fields from its own options
    return _load_checked(model_class, arch, arch.pretrained if pretrained is True else pretrained, overrides)


def create_classifier(
    name: str,
    *,
    num_classes: int = NUM_CLASSES,
    global_pool: bool = GLOBAL_POOL,
    drop_path_rate: float | None = None,
    pretrained: bool | str | Path = False,
    interpolate_sincos: bool = False,
    **overrides: Any,
) -> MAEViTClassifier:
    """Build the :class:`MAEViTClassifier` of a named architecture (see ``list_models()``).

    ``drop_path_rate`` defaults to the paper's fine-tuning recipe (0.1 / 0.2 / 0.3 for ViT-B / L / H,
    0 for the others). ``pretrained``: False for a fresh model, True for the encoder the paper
    fine-tuned (timm/vit_*_224.mae, normalized-pixel pre-training), or any repo id or path of weights
    of this architecture, pre-trained or fine-tuned. ``interpolate_sincos``: see :class:`MAEViTClassifier`.
    Overrides change config fields (e.g. ``img_size=448``).
    """
    arch = architecture(name)
    options: dict[str, Any] = dict(
        num_classes=num_classes,
        global_pool=global_pool,
        drop_path_rate=arch.drop_path_rate if drop_path_rate is None else drop_path_rate,
    )
    if not pretrained:
        require(not interpolate_sincos, "interpolate_sincos", True, "False without pretrained weights to resize")
        return MAEViTClassifier(model_config(name, **overrides), **options)
    source = arch.fine_tuning_start if pretrained is True else pretrained
    return _load_checked(
        MAEViTClassifier, arch, source, {**overrides, **options, "interpolate_sincos": interpolate_sincos}
    )


def _load_checked(
    model_class: type[ModelT], arch: Architecture, source: str | Path | None, kwargs: dict[str, Any]
) -> ModelT:
    """``model_class.from_pretrained(source, **kwargs)``, refused unless the weights are of ``arch``."""
    require(source is not None, "pretrained", True, f"a repo id or path: {arch.name} has no published weights")
    expected = model_config(arch.name)
    model = model_class.from_pretrained(source, **kwargs)
    got = {field: getattr(model.config, field) for field in _ARCHITECTURE_FIELDS}
    differ = {field: value for field, value in got.items() if value != getattr(expected, field)}
    require(not differ, "pretrained", f"{str(source)!r} with {differ}", f"weights of {arch.name} ({expected})")
    return model


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


def videomae_vit_base_patch16(
    *, pretrained: bool | str | Path = False, encoder_only: bool = False, **overrides: Any
) -> Any:
    """A video MAE with VideoMAE-Base's geometry: ViT-B/16 on 16 frames in tubelets of 2 (224 px), its flat
    position table, a 384-wide, 4-block decoder, 90% masking. ``pretrained=True``: MCG-NJU/videomae-base."""
    return create_model("videomae_vit_base_patch16", pretrained=pretrained, encoder_only=encoder_only, **overrides)


def vit_base_patch16(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-B/16 classifier (drop path 0.1); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_base_patch16", **kwargs)


def vit_large_patch16(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-L/16 classifier (drop path 0.2); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_large_patch16", **kwargs)


def vit_huge_patch14(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-H/14 classifier (drop path 0.3); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_huge_patch14", **kwargs)


mae_vit_tiny = mae_vit_tiny_patch16
mae_vit_small = mae_vit_small_patch16
mae_vit_base = mae_vit_base_patch16
videomae_vit_base = videomae_vit_base_patch16
mae_vit_large = mae_vit_large_patch16
mae_vit_huge = mae_vit_huge_patch14
