"""MAEViTClassifier: the paper's fine-tuning model, the ViT trunk with a pool and a linear head."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ._validation import describe, require, require_positive_int
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig, resolve_config
from .encoder import DECODER_PREFIXES
from .vit import VisionTransformer

NUM_CLASSES = 1000  # ImageNet-1K, the official default
GLOBAL_POOL = True  # the paper fine-tunes with global average pooling
# The official fine-tuning init of a new head: near zero, so that training starts from near-uniform predictions.
_HEAD_STD = 2e-5
_POOLS = ("avg", "token")


class MAEViTClassifier(VisionTransformer):
    """The paper's fine-tuning model: the encoder's trunk, a pool and a linear head. imgs: (B, C, H, W) -> (B, classes).

    Its ``state_dict`` keys are those of the official fine-tuned checkpoints (``mae_finetuned_vit_*.pth``):
    the encoder's ``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks.N``, then

    - ``global_pool=True`` (the paper's): ``fc_norm`` and ``head``. The model has no final norm
      (``norm`` is None): the patch tokens are averaged as they leave the last block, then
      normalised by ``fc_norm`` and classified.
    - ``global_pool=False``: ``norm`` and ``head``, on the class token after the final norm.

    ``forward`` is ``forward_head(forward_features(imgs))``: the tokens (B, 1 + L, D) after the final
    norm where there is one, then the pool and the head; ``forward_head(features, pre_logits=True)``
    gives the pooled (B, D) features. ``forward_pooled`` and ``forward_intermediates`` mean what they
    mean on :class:`MAEEncoder`, with this model's final norm (none in global-pool mode).

    The position table is a trainable parameter (fine-tuning updates it): the sin-cos table of the
    config's grid to start with, interpolated in 2-D (bicubic) for images of another size.
    ``drop_path_rate``: stochastic depth, rising linearly over the blocks (the paper: 0.1 for ViT-B,
    0.2 for ViT-L, 0.3 for ViT-H). The head starts near zero: trunc normal weights (std 2e-5), zero bias.

    ``from_pretrained`` reads every pre-training family (the decoder, and in global-pool mode the final
    norm, are left out; ``head`` and ``fc_norm`` start fresh) and official fine-tuned classifiers
    (strictly). It takes the constructor's keywords: ``num_classes`` and ``global_pool`` default to a
    fine-tuned checkpoint's own head, else to 1000 and True; a head for another number of classes is
    replaced by a fresh one. A position table of another grid is fitted to the model's: a pre-training
    sin-cos table is regenerated exactly (default) or, with ``interpolate_sincos=True``, interpolated as
    the official code does; a learned table is interpolated.
    """

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        num_classes: int = NUM_CLASSES,
        global_pool: bool = GLOBAL_POOL,
        drop_path_rate: float = 0.0,
        **overrides: Any,
    ) -> None:
        require_positive_int(num_classes, "num_classes")
        require(isinstance(global_pool, bool), "global_pool", repr(global_pool), "a bool")
        config = resolve_config(config, overrides)
        # Global pooling normalises the pooled features (fc_norm) instead of the tokens: no final norm.
        super().__init__(config, learned_position_table=True, final_norm=not global_pool, drop_path_rate=drop_path_rate)
        self.global_pool = global_pool
        self.pool = "avg" if global_pool else "token"
        dim = config.embed_dim
        self.fc_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if global_pool else None
        self._new_head(num_classes)

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """A learned position table; a new head; no decoder, and in global-pool mode no pre-training norm."""
        return dataclasses.replace(
            super().checkpoint_rules,
            fresh=("head.", "fc_norm."),
            unused=(*DECODER_PREFIXES, *(("norm.",) if self.global_pool else ())),
        )

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh head for ``num_classes`` (0: none, ``forward`` then returns the pooled features), as in timm.

        ``global_pool``: ``"avg"`` (the mean patch token) or ``"token"`` (the class token) changes the
        pooling only, as timm's does; the norms stay as built (``fc_norm`` after the pool in global-pool
        mode). None keeps the pooling.
        """
        ok = isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 0
        require(ok, "num_classes", repr(num_classes), "an int >= 0 (0: no head)")
        require(global_pool in (None, *_POOLS), "global_pool", repr(global_pool), f"None or one of {_POOLS}")
        self.pool = self.pool if global_pool is None else global_pool
        like = self.cls_token
        self._new_head(num_classes)
        self.head.to(like.device, like.dtype).train(self.training)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify the tokens of :meth:`forward_features`. features: (B, 1 + L, D) -> logits (B, classes).

        ``pool`` ``"avg"`` (global pool): the mean patch token; ``"token"``: the class token (normed by
        ``forward_features`` in class-token mode); then ``fc_norm`` where the model has one.
        ``pre_logits``: the pooled features (B, D), before the head.
        """
        width = self.config.embed_dim
        ok = isinstance(features, torch.Tensor) and features.dim() == 3 and features.shape[1] > 1
        require(ok and features.shape[2] == width, "features", describe(features), f"a (B, 1 + L, {width}) tensor")
        return self._head(features, pre_logits)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Classify images. imgs: (B, C, H, W) -> logits (B, num_classes)."""
        return self._head(self.forward_features(imgs), pre_logits=False)

    def no_weight_decay(self) -> set[str]:
        """The parameters the official fine-tuning exempts from weight decay (pass to :func:`param_groups_lrd`)."""
        return {"pos_embed", "cls_token"}

    def _head(self, features: torch.Tensor, pre_logits: bool) -> torch.Tensor:
        """:meth:`forward_head` on features already checked."""
        pooled = features[:, 1:].mean(dim=1) if self.pool == "avg" else features[:, 0]
        if self.fc_norm is not None:
            pooled = self.fc_norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def _new_head(self, num_classes: int) -> None:
        """A head for ``num_classes``, near zero as the official fine-tuning starts it (nn.Identity for 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes and not self.head.weight.is_meta:  # built on meta for loading: nothing to initialise
            nn.init.trunc_normal_(self.head.weight, std=_HEAD_STD)
            nn.init.zeros_(self.head.bias)
