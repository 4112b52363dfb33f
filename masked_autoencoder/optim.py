"""Layer-wise learning-rate decay (from BEiT, as in the official MAE fine-tuning): parameter groups for an optimizer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from ._validation import describe, is_number, require


def _vit_trunk(model: nn.Module) -> tuple[str, nn.Module]:
    """The ViT (a module with its blocks in ``.blocks``) of ``model``: the model itself, or the one nested in it."""
    trunks = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "blocks", None), nn.ModuleList)
    ]
    outermost = [
        (name, module)
        for name, module in trunks
        if not any(name.startswith(f"{other}.") for other, _ in trunks if other)
    ]
    if trunks and trunks[0][0] == "":  # the model is the ViT
        return trunks[0]
    names = [name for name, _ in outermost]
    require(len(outermost) == 1, "model", describe(model), f"a ViT, or a module with one ViT inside (found {names})")
    return outermost[0]


def _layer_id(name: str, num_layers: int) -> int:
    """The layer of a parameter: 0 for the embeddings, i + 1 for ``blocks.i``, ``num_layers`` for everything else."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers


def param_groups_lrd(
    model: nn.Module,
    weight_decay: float = 0.05,
    no_weight_decay_list: Iterable[str] = (),
    layer_decay: float = 0.75,
    *,
    lr: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups with layer-wise lr decay, with the official fine-tuning's semantics and argument names.

    ``model``: a ViT with ``blocks`` and the official parameter names (:class:`MAEViTClassifier`,
    :class:`MAEEncoder`, ...), or a module with one such ViT nested anywhere inside (a detector whose
    backbone holds an encoder, e.g. ``detector.backbone.encoder.blocks.3``): the ViT's parameters get
    the decay by their layer, as ViTDet's, and every other parameter (neck, heads) is of the top layer,
    at the full rate. ``no_weight_decay_list`` names match in the model or in the ViT (``pos_embed``).
    With num_layers = depth + 1, layer 0 is ``cls_token``, ``pos_embed`` and
    ``patch_embed.*``, ``blocks.i`` is layer i + 1, and everything else (``norm``, ``fc_norm``,
    ``head``, ...) is the top layer, num_layers. A parameter of layer l gets
    ``lr_scale = layer_decay ** (num_layers - l)`` (1.0 at the top). 1-D parameters (biases, norms)
    and the names in ``no_weight_decay_list`` get no weight decay: pass ``model.no_weight_decay()``
    as the official script does (with the default empty list, the 3-D ``cls_token`` and ``pos_embed``
    are decayed). Frozen parameters (``requires_grad=False``) are left out.

    Returns one group per (layer, decay) in the order of the parameters:
    ``{"lr_scale", "weight_decay", "params"}``. Optimizers ignore ``lr_scale``: the official schedule
    sets each group's lr to ``lr * lr_scale`` at every step. Given ``lr``, each group also gets that
    learning rate, which torch's LR schedulers then scale group by group.
    """
    trunk_name, trunk = _vit_trunk(model)
    require(is_number(weight_decay) and weight_decay >= 0, "weight_decay", repr(weight_decay), "a number >= 0")
    require(is_number(layer_decay) and 0 < layer_decay <= 1, "layer_decay", repr(layer_decay), "a number in (0, 1]")
    ok_list = not isinstance(no_weight_decay_list, str) and isinstance(no_weight_decay_list, Iterable)
    require(ok_list, "no_weight_decay_list", repr(no_weight_decay_list), "an iterable of parameter names")
    require(lr is None or (is_number(lr) and lr > 0), "lr", repr(lr), "None or a positive number")
    num_layers = len(trunk.blocks) + 1
    skip = set(no_weight_decay_list)
    prefix = f"{trunk_name}." if trunk_name else ""
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_trunk = name.startswith(prefix)
        own_name = name.removeprefix(prefix) if in_trunk else name  # as the trunk names it
        decay = not (param.ndim == 1 or name in skip or own_name in skip)
        layer = _layer_id(own_name, num_layers) if in_trunk else num_layers  # a neck or head: the full rate
        if (layer, decay) not in groups:
            scale = layer_decay ** (num_layers - layer)
            group = {"lr_scale": scale, "weight_decay": weight_decay if decay else 0.0, "params": []}
            groups[(layer, decay)] = group if lr is None else {**group, "lr": lr * scale}
        groups[(layer, decay)]["params"].append(param)
    return list(groups.values())
