"""MAEViTClassifier: the paper's fine-tuning model (the MAE encoder, a pool and a linear head) and its factories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._validation import require, require_positive_int
from .architectures import canonical_name, model_config
from .config import MAEConfig
from .encoder import MAEEncoder
from .factory import pretrained_checkpoint
from .hub.formats import Checkpoint
from .hub.known_weights import FINE_TUNING_WEIGHTS
from .pos_embed import resize_pos_embed

_NUM_CLASSES = 1000  # ImageNet-1K, the official default
_GLOBAL_POOL = True  # the paper fine-tunes with global average pooling
# The official fine-tuning init of a new head: near zero, so that training starts from near-uniform predictions.
_HEAD_STD = 2e-5
# The paper's fine-tuning recipe: stochastic depth grows with the model.
_PAPER_DROP_PATH = {"mae_vit_base_patch16": 0.1, "mae_vit_large_patch16": 0.2, "mae_vit_huge_patch14": 0.3}


class MAEViTClassifier(MAEEncoder):
    """The paper's fine-tuning model: the MAE encoder, a pool and a linear head. imgs: (B, C, H, W) -> (B, classes).

    Its ``state_dict`` keys are those of the official fine-tuned checkpoints (``mae_finetuned_vit_*.pth``):
    the encoder's ``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks.N``, then

    - ``global_pool=True`` (the paper's): ``fc_norm`` and ``head``. The patch tokens are averaged as
      they leave the last block, without the pretrained final norm (which is removed: ``norm`` is an
      ``nn.Identity``), then normalised by a new LayerNorm ``fc_norm`` and classified.
    - ``global_pool=False``: ``norm`` and ``head``, on the class token after the final norm.

    ``forward`` is ``forward_head(forward_features(imgs))``: the tokens (B, 1 + L, D) as the pool
    takes them (after the final norm in class-token mode, without it in global-pool mode), then the
    pool and the head; ``forward_head(features, pre_logits=True)`` gives the pooled (B, D) features.

    The position table is a trainable parameter (fine-tuning updates it): the sin-cos table of the
    config's grid to start with, interpolated in 2-D (bicubic) for images of another size.
    ``drop_path_rate``: stochastic depth, rising linearly over the blocks (the paper: 0.1 for ViT-B,
    0.2 for ViT-L, 0.3 for ViT-H). The head starts near zero: trunc normal weights (std 2e-5), zero bias.

    ``from_pretrained`` reads every pre-training family (the decoder, and in global-pool mode the final
    norm, are left out; ``head`` and ``fc_norm`` start fresh, the only keys allowed missing) and official
    fine-tuned classifiers (strictly). It also takes the constructor's keywords: ``num_classes`` and
    ``global_pool`` default to a fine-tuned checkpoint's own head, else to 1000 and True; a head for
    another number of classes is replaced by a fresh one. A position table of another grid is fitted
    to the model's: a pre-training sin-cos table is regenerated exactly (default) or, with
    ``interpolate_sincos=True``, interpolated as the official code does; a learned table is interpolated.
    """

    _init_options = ("num_classes", "global_pool", "drop_path_rate")

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        num_classes: int = _NUM_CLASSES,
        global_pool: bool = _GLOBAL_POOL,
        drop_path_rate: float = 0.0,
        **overrides: Any,
    ) -> None:
        require_positive_int(num_classes, "num_classes")
        require(isinstance(global_pool, bool), "global_pool", repr(global_pool), "a bool")
        super().__init__(config, drop_path_rate=drop_path_rate, **overrides)
        self.num_classes, self.global_pool = num_classes, global_pool
        dim = self.config.embed_dim
        # Fine-tuning trains the position table: a parameter in place of the encoder's fixed buffer.
        self.pos_embed = nn.Parameter(self.pos_embed)
        if global_pool:
            # An Identity, not a del: the inherited backbone methods keep working (on the un-normed tokens).
            self.norm = nn.Identity()
            self.fc_norm = nn.LayerNorm(dim, eps=self.config.layer_norm_eps)
        self.head = nn.Linear(dim, num_classes)
        if not self.head.weight.is_meta:  # from_pretrained builds on meta: nothing to initialise there
            nn.init.trunc_normal_(self.head.weight, std=_HEAD_STD)
            nn.init.zeros_(self.head.bias)

    @classmethod
    def _build_for(
        cls,
        checkpoint: Checkpoint,
        *,
        num_classes: int | None = None,
        global_pool: bool | None = None,
        drop_path_rate: float = 0.0,
    ) -> MAEViTClassifier:
        """A classifier for a checkpoint: with the head of a fine-tuned one unless told otherwise."""
        if num_classes is None:
            num_classes = checkpoint.num_classes or _NUM_CLASSES
        if global_pool is None:
            global_pool = _GLOBAL_POOL if checkpoint.global_pool is None else checkpoint.global_pool
        return cls(checkpoint.config, num_classes=num_classes, global_pool=global_pool, drop_path_rate=drop_path_rate)

    def position_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """The learned table, interpolated in 2-D (bicubic) for another grid: (1, 1 + h*w, D)."""
        return resize_pos_embed(self.pos_embed, grid, self.config.grid_size)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify the tokens of :meth:`forward_features`. features: (B, 1 + L, D) -> logits (B, classes).

        Global pool: ``fc_norm`` of the mean patch token; class-token mode: the class token (already
        normed by ``forward_features``). ``pre_logits``: the pooled features (B, D), before the head.
        """
        pooled = self.fc_norm(features[:, 1:].mean(dim=1)) if self.global_pool else features[:, 0]
        return pooled if pre_logits else self.head(pooled)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Classify images. imgs: (B, C, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(imgs))

    def no_weight_decay(self) -> set[str]:
        """The parameters the official fine-tuning exempts from weight decay (pass to :func:`param_groups_lrd`)."""
        return {"pos_embed", "cls_token"}


def create_classifier(
    name: str,
    *,
    num_classes: int = _NUM_CLASSES,
    global_pool: bool = _GLOBAL_POOL,
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
    canonical = canonical_name(name)
    options: dict[str, Any] = dict(
        num_classes=num_classes,
        global_pool=global_pool,
        drop_path_rate=_PAPER_DROP_PATH.get(canonical, 0.0) if drop_path_rate is None else drop_path_rate,
    )
    if not pretrained:
        require(not interpolate_sincos, "interpolate_sincos", True, "False without pretrained weights to resize")
        return MAEViTClassifier(model_config(canonical, **overrides), **options)
    checkpoint = pretrained_checkpoint(canonical, pretrained, overrides, FINE_TUNING_WEIGHTS)
    return MAEViTClassifier.from_checkpoint(checkpoint, interpolate_sincos=interpolate_sincos, **options)


def vit_base_patch16(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-B/16 classifier (drop path 0.1); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_base_patch16", **kwargs)


def vit_large_patch16(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-L/16 classifier (drop path 0.2); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_large_patch16", **kwargs)


def vit_huge_patch14(**kwargs: Any) -> MAEViTClassifier:
    """The paper's ViT-H/14 classifier (drop path 0.3); keywords as :func:`create_classifier`."""
    return create_classifier("mae_vit_huge_patch14", **kwargs)
