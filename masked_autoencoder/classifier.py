"""MAEViTClassifier: the paper's fine-tuning model, the ViT trunk with a pool and a linear head."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ._validation import describe, is_int, require
from .checkpoint_rules import CheckpointRules
from .config import MAEConfig, resolve_config
from .encoder import DECODER_PREFIXES
from .vit import HEAD_PREFIXES, POOLS, VisionTransformer, pool_tokens

NUM_CLASSES = 1000  # ImageNet-1K, the official default
GLOBAL_POOL = True  # the paper fine-tunes with global average pooling
# The official fine-tuning init of a new head: near zero, so that training starts from near-uniform predictions.
_HEAD_STD = 2e-5


class MAEViTClassifier(VisionTransformer):
    """The paper's fine-tuning model: the encoder's trunk, a pool and a linear head. imgs: (B, C, H, W) -> (B, classes).

    Its ``state_dict`` keys are those of the official fine-tuned checkpoints (``mae_finetuned_vit_*.pth``):
    the encoder's ``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks.N``, then

    - ``global_pool=True`` or ``"avg"`` (the paper's): ``fc_norm`` and ``head``. The model has no final
      norm (``norm`` is None): the patch tokens are averaged as they leave the last block, then
      normalised by ``fc_norm`` and classified.
    - ``global_pool=False`` or ``"token"``: ``norm`` and ``head``, on the class token after the final norm.

    ``fc_norm`` (None: with average pooling only, the official pairing) chooses the norm after the
    pool independently, as timm's argument of that name. ``pool`` (``"avg"`` / ``"token"``) is the one
    home of the pooling; ``global_pool`` reads it. ``save_pretrained`` records ``num_classes``, the
    pooling and ``fc_norm``, so that ``from_pretrained`` rebuilds the same model (after
    :meth:`reset_classifier` too). Clips (a video config, no class token): average pooling only, and the
    fixed space-time table, as VideoMAE's fine-tuning.

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
    (strictly). It takes the constructor's keywords: ``num_classes``, ``global_pool`` and ``fc_norm`` default
    to what the checkpoint records, else to its head's (the official pairing), else to 1000 and True; a head
    for another number of classes is replaced by a fresh one. A position table of another grid is fitted to
    the model's: a pre-training sin-cos table is regenerated exactly (default) or, with
    ``interpolate_sincos=True``, interpolated as the official code does; a learned table is interpolated.
    """

    def __init__(
        self,
        config: MAEConfig | None = None,
        *,
        num_classes: int = NUM_CLASSES,
        global_pool: bool | str = GLOBAL_POOL,
        fc_norm: bool | None = None,
        drop_path_rate: float = 0.0,
        **overrides: Any,
    ) -> None:
        _require_num_classes(num_classes)
        pool = _pool_name(global_pool)
        require(fc_norm is None or isinstance(fc_norm, bool), "fc_norm", repr(fc_norm), "None or a bool")
        use_fc_norm = pool == "avg" if fc_norm is None else fc_norm
        config = resolve_config(config, overrides)
        ok_pool = pool == "avg" or not config.is_video
        require(ok_pool, "global_pool", repr(global_pool), "'avg' for clips (no class token)")
        # A norm after the pool (fc_norm) replaces the final norm on the tokens, as in the official code and timm.
        # Clips keep their fixed table, as VideoMAE's fine-tuning does.
        trunk = {"learned_position_table": not config.is_video, "final_norm": not use_fc_norm}
        super().__init__(config, drop_path_rate=drop_path_rate, **trunk)
        self.pool = pool
        self.fc_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps) if use_fc_norm else None
        self._new_head(num_classes)

    @property
    def global_pool(self) -> bool:
        """Whether the model averages the patch tokens (``pool == "avg"``): a view of ``pool``, the pooling's home."""
        return self.pool == "avg"

    @property
    def checkpoint_rules(self) -> CheckpointRules:
        """A learned position table; a new head (and fc_norm); no decoder, and without a final norm no ``norm.``."""
        return dataclasses.replace(
            super().checkpoint_rules,
            fresh=HEAD_PREFIXES if self.fc_norm is not None else HEAD_PREFIXES[:1],
            fine_tuned_keys=HEAD_PREFIXES,
            unused=(*DECODER_PREFIXES, *(("norm.",) if self.norm is None else ())),
            foreign=(),
        )

    @property
    def checkpoint_options(self) -> dict[str, Any]:
        """What ``save_pretrained`` records beside the config: the head, the pooling and the norm after it."""
        return {"num_classes": self.num_classes, "global_pool": self.pool, "fc_norm": self.fc_norm is not None}

    @classmethod
    def options_from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        """A fine-tuned checkpoint's head and pool read from its keys, for files that do not record them.

        The official code pairs ``fc_norm`` with global pooling, and a class-token head with the final norm.
        """
        if not any(key.startswith(HEAD_PREFIXES) for key in state_dict):
            return {}
        head = state_dict.get("head.weight")
        with_fc_norm = "fc_norm.weight" in state_dict
        return {
            "num_classes": 0 if head is None else head.shape[0],
            "global_pool": "avg" if with_fc_norm else "token",
            "fc_norm": with_fc_norm,
        }

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh head for ``num_classes`` (0: none, ``forward`` then returns the pooled features), as in timm.

        ``global_pool``: ``"avg"`` (the mean patch token) or ``"token"`` (the class token) changes the
        pooling only, as timm's does; the norms stay as built (``fc_norm`` after the pool where the model
        has one). None keeps the pooling. ``save_pretrained`` records the new head and pooling.
        """
        _require_num_classes(num_classes)
        require(global_pool in (None, *self.pools), "global_pool", repr(global_pool), f"None or one of {self.pools}")
        self.pool = self.pool if global_pool is None else global_pool
        like = self.patch_embed.proj.weight
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
        pooled = pool_tokens(features, self.pool, self.num_prefix_tokens)
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


def _require_num_classes(num_classes: object) -> None:
    require(is_int(num_classes) and num_classes >= 0, "num_classes", repr(num_classes), "an int >= 0 (0: no head)")  # type: ignore[operator]


def _pool_name(global_pool: object) -> str:
    """The pooling a ``global_pool`` argument asks for: True or "avg" -> "avg", False or "token" -> "token"."""
    if isinstance(global_pool, bool):
        return POOLS[1] if global_pool else POOLS[0]
    require(global_pool in POOLS, "global_pool", repr(global_pool), f"a bool or one of {POOLS}")
    return global_pool  # type: ignore[return-value]
