"""The `transformers` ViTMAE file layout (as in the published facebook/vit-mae-* files): keys and config.

Our keys are the official MAE keys. Their files split the fused ``attn.qkv`` into
``attention.attention.{query,key,value}`` and rename the rest; the tables below are the whole
difference. Recent `transformers` versions read this layout and write it on ``save_pretrained``,
except the decoder blocks, which they write as ``decoder.decoder_encoder.layer.N`` (accepted here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NoReturn

import torch

from .._validation import fail, require
from ..config import MAEConfig

# Our tensors outside any module -> theirs.
_TOP_LEVEL_TENSORS = {
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_pos_embed",
}
# Our modules outside the blocks (each with .weight and .bias) -> theirs.
_TOP_LEVEL_MODULES = {
    "patch_embed.proj": "vit.embeddings.patch_embeddings.projection",
    "norm": "vit.layernorm",
    "decoder_embed": "decoder.decoder_embed",
    "decoder_norm": "decoder.decoder_norm",
    "decoder_pred": "decoder.decoder_pred",
}
# Our block list -> theirs (the published layout).
_BLOCK_LISTS = {"blocks": "vit.encoder.layer", "decoder_blocks": "decoder.decoder_layers"}
# Another name of theirs for the decoder blocks: what `transformers` >= 5 writes on save.
_BLOCK_LIST_ALIASES = {"decoder.decoder_encoder.layer": "decoder_blocks"}
# Inside a block: our module path -> theirs.
_IN_BLOCK = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
# Our fused qkv projection is their three projections, stacked in this order along the output dim.
_QKV = ("query", "key", "value")
_QKV_THEIRS = "attention.attention"

_OURS_IN_BLOCK = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$")
_THEIRS_IN_BLOCK = re.compile(
    r"^(vit\.encoder\.layer|decoder\.decoder_layers|decoder\.decoder_encoder\.layer)\.(\d+)\.(.+)\.(weight|bias)$"
)


def to_transformers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (official) keys -> the published `transformers` ViTMAE file keys, splitting qkv."""
    out: dict[str, torch.Tensor] = {}
    blocks = _blocks_after_renaming_the_rest(
        state_dict, _OURS_IN_BLOCK, _BLOCK_LISTS, _TOP_LEVEL_TENSORS, _TOP_LEVEL_MODULES, out
    )
    for key, prefix, module, param, tensor in blocks:
        if module == "attn.qkv":
            for name, part in zip(_QKV, tensor.chunk(3, dim=0), strict=True):
                out[f"{prefix}.{_QKV_THEIRS}.{name}.{param}"] = part
        else:
            out[f"{prefix}.{_rename_module(module, _IN_BLOCK, key)}.{param}"] = tensor
    return out


def from_transformers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `transformers` ViTMAE file keys (either decoder layout) -> our (official) keys, fusing qkv."""
    top_tensors, top_modules, in_block = (_inverse(t) for t in (_TOP_LEVEL_TENSORS, _TOP_LEVEL_MODULES, _IN_BLOCK))
    block_lists = _inverse(_BLOCK_LISTS) | _BLOCK_LIST_ALIASES
    out: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, dict[str, torch.Tensor]] = {}
    blocks = _blocks_after_renaming_the_rest(state_dict, _THEIRS_IN_BLOCK, block_lists, top_tensors, top_modules, out)
    for key, prefix, module, param, tensor in blocks:
        qkv_module, _, qkv_name = module.rpartition(".")
        if qkv_module == _QKV_THEIRS and qkv_name in _QKV:
            qkv_parts.setdefault(f"{prefix}.attn.qkv.{param}", {})[qkv_name] = tensor
        else:
            out[f"{prefix}.{_rename_module(module, in_block, key)}.{param}"] = tensor
    for key, parts in qkv_parts.items():
        missing = [name for name in _QKV if name not in parts]
        require(not missing, "state_dict", f"no {missing} for {key}", "query, key and value for every block")
        out[key] = torch.cat([parts[name] for name in _QKV], dim=0)
    return out


def _blocks_after_renaming_the_rest(
    state_dict: dict[str, torch.Tensor],
    pattern: re.Pattern[str],
    block_lists: dict[str, str],
    top_tensors: dict[str, str],
    top_modules: dict[str, str],
    out: dict[str, torch.Tensor],
) -> Iterator[tuple[str, str, str, str, torch.Tensor]]:
    """Rename every key outside the blocks into ``out``; yield the others as (key, the other layout's block
    prefix, module path inside the block, ``weight`` / ``bias``, tensor)."""
    for key, tensor in state_dict.items():
        match = pattern.match(key)
        if match is None:
            out[_rename_top_level(key, top_tensors, top_modules)] = tensor
            continue
        block_list, index, module, param = match.groups()
        yield key, f"{block_lists[block_list]}.{index}", module, param, tensor


def _inverse(table: dict[str, str]) -> dict[str, str]:
    return {theirs: ours for ours, theirs in table.items()}


def _rename_top_level(key: str, tensors: dict[str, str], modules: dict[str, str]) -> str:
    """Rename a bare tensor key, or a ``<module>.weight`` / ``<module>.bias`` key, outside the blocks."""
    if key in tensors:
        return tensors[key]
    module, _, param = key.rpartition(".")
    if param not in ("weight", "bias"):
        _unknown_key(key)
    return f"{_rename_module(module, modules, key)}.{param}"


def _rename_module(module: str, table: dict[str, str], key: str) -> str:
    if module not in table:
        _unknown_key(key)
    return table[module]


def _unknown_key(key: str) -> NoReturn:
    fail("state_dict", f"the key {key!r}", "a MAE checkpoint key (see masked_autoencoder.hub.transformers_format)")


def _mlp_width(dim: int, mlp_ratio: float, name: str) -> int:
    """dim * mlp_ratio, which must be whole: `transformers` stores widths, we store the ratio."""
    width = dim * mlp_ratio
    require(width == int(width), "mlp_ratio", mlp_ratio, f"a ratio that makes {name} * mlp_ratio a whole number")
    return int(width)


def config_to_transformers(config: MAEConfig) -> dict[str, Any]:
    """An :class:`MAEConfig` as the fields of a `transformers` ``ViTMAEConfig`` (square images only)."""
    (image_h, image_w), (patch_h, patch_w) = config.image_hw, config.patch_hw
    require(
        image_h == image_w and patch_h == patch_w,
        "config",
        (config.img_size, config.patch_size),
        "square img_size and patch_size (transformers' ViTMAE is square-only)",
    )
    return {
        "model_type": "vit_mae",
        "architectures": ["ViTMAEForPreTraining"],
        "image_size": image_h,
        "patch_size": patch_h,
        "num_channels": config.in_chans,
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "intermediate_size": _mlp_width(config.embed_dim, config.mlp_ratio, "embed_dim"),
        "decoder_hidden_size": config.decoder_embed_dim,
        "decoder_num_hidden_layers": config.decoder_depth,
        "decoder_num_attention_heads": config.decoder_num_heads,
        "decoder_intermediate_size": _mlp_width(config.decoder_embed_dim, config.mlp_ratio, "decoder_embed_dim"),
        "hidden_act": "gelu",
        "qkv_bias": True,
        "layer_norm_eps": config.layer_norm_eps,
        "mask_ratio": config.mask_ratio,
        "norm_pix_loss": config.norm_pix_loss,
    }


# What `transformers`' ViTMAEConfig assumes for a field that a config.json leaves out.
_TRANSFORMERS_DEFAULTS: dict[str, Any] = {
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "decoder_hidden_size": 512,
    "decoder_num_hidden_layers": 8,
    "decoder_num_attention_heads": 16,
    "decoder_intermediate_size": 2048,
    "hidden_act": "gelu",
    "qkv_bias": True,
    "layer_norm_eps": 1e-12,
    "mask_ratio": 0.75,
    "norm_pix_loss": False,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def config_from_transformers(written: dict[str, Any]) -> MAEConfig:
    """A `transformers` ViTMAE ``config.json`` dict -> :class:`MAEConfig` (values are taken as written)."""
    values = _TRANSFORMERS_DEFAULTS | written
    require(values.get("model_type") == "vit_mae", "config model_type", repr(values.get("model_type")), "'vit_mae'")
    require(values["hidden_act"] == "gelu", "config hidden_act", repr(values["hidden_act"]), "'gelu'")
    require(values["qkv_bias"] is True, "config qkv_bias", repr(values["qkv_bias"]), "True")
    for dropout in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        require(values[dropout] == 0.0, f"config {dropout}", values[dropout], "0.0 (MAE uses no dropout)")
    mlp_ratio = values["intermediate_size"] / values["hidden_size"]
    for width, hidden in (("intermediate_size", "hidden_size"), ("decoder_intermediate_size", "decoder_hidden_size")):
        # Our blocks are int(dim * mlp_ratio) wide: the ratio must reproduce both widths exactly.
        require(
            values[hidden] * mlp_ratio == values[width],
            f"config {width}",
            values[width],
            f"{hidden} * {mlp_ratio} (one MLP ratio for encoder and decoder)",
        )
    return MAEConfig(
        img_size=values["image_size"],
        patch_size=values["patch_size"],
        in_chans=values["num_channels"],
        embed_dim=values["hidden_size"],
        depth=values["num_hidden_layers"],
        num_heads=values["num_attention_heads"],
        decoder_embed_dim=values["decoder_hidden_size"],
        decoder_depth=values["decoder_num_hidden_layers"],
        decoder_num_heads=values["decoder_num_attention_heads"],
        mlp_ratio=mlp_ratio,
        norm_pix_loss=values["norm_pix_loss"],
        mask_ratio=values["mask_ratio"],
        layer_norm_eps=values["layer_norm_eps"],
    )
