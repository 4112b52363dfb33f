"""The `transformers` ViTMAE file layout (as in the published facebook/vit-mae-* files): keys and config.

Our keys are the official MAE keys. Their files split the fused ``attn.qkv`` into
``attention.attention.{query,key,value}`` and rename the rest; the tables below are the whole
difference. Recent `transformers` versions read this layout and write it on ``save_pretrained``,
except the decoder blocks, which they write as ``decoder.decoder_encoder.layer.N`` (accepted here).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from .._validation import fail, require
from ..config import MAEConfig

# Our module path -> theirs, outside the blocks.
_TOP_LEVEL = {
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "patch_embed.proj": "vit.embeddings.patch_embeddings.projection",
    "norm": "vit.layernorm",
    "decoder_embed": "decoder.decoder_embed",
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_pos_embed",
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
    for key, tensor in state_dict.items():
        match = _OURS_IN_BLOCK.match(key)
        if match is None:
            out[_rename_top_level(key, _TOP_LEVEL)] = tensor
            continue
        block_list, index, module, param = match.groups()
        prefix = f"{_BLOCK_LISTS[block_list]}.{index}"
        if module == "attn.qkv":
            for name, part in zip(_QKV, tensor.chunk(3, dim=0), strict=True):
                out[f"{prefix}.{_QKV_THEIRS}.{name}.{param}"] = part
        else:
            out[f"{prefix}.{_rename_module(module, _IN_BLOCK, key)}.{param}"] = tensor
    return out


def from_transformers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `transformers` ViTMAE file keys (either decoder layout) -> our (official) keys, fusing qkv."""
    top_level = {theirs: ours for ours, theirs in _TOP_LEVEL.items()}
    in_block = {theirs: ours for ours, theirs in _IN_BLOCK.items()}
    block_lists = {theirs: ours for ours, theirs in _BLOCK_LISTS.items()} | _BLOCK_LIST_ALIASES
    out: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = _THEIRS_IN_BLOCK.match(key)
        if match is None:
            out[_rename_top_level(key, top_level)] = tensor
            continue
        block_list, index, module, param = match.groups()
        prefix = f"{block_lists[block_list]}.{index}"
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


def _rename_top_level(key: str, table: dict[str, str]) -> str:
    """Rename a key whose module path (the key, or the key less ``.weight`` / ``.bias``) is in ``table``."""
    if key in table:
        return table[key]
    module, _, param = key.rpartition(".")
    return f"{_rename_module(module, table, key)}.{param}"


def _rename_module(module: str, table: dict[str, str], key: str) -> str:
    if module not in table:
        fail("state_dict", f"the key {key!r}", "a MAE checkpoint key (see masked_autoencoder.hub.transformers_format)")
    return table[module]


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
        "intermediate_size": int(config.embed_dim * config.mlp_ratio),
        "decoder_hidden_size": config.decoder_embed_dim,
        "decoder_num_hidden_layers": config.decoder_depth,
        "decoder_num_attention_heads": config.decoder_num_heads,
        "decoder_intermediate_size": int(config.decoder_embed_dim * config.mlp_ratio),
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
}


def config_from_transformers(written: dict[str, Any]) -> MAEConfig:
    """A `transformers` ViTMAE ``config.json`` dict -> :class:`MAEConfig` (values are taken as written)."""
    values = _TRANSFORMERS_DEFAULTS | written
    require(values.get("model_type") == "vit_mae", "config model_type", repr(values.get("model_type")), "'vit_mae'")
    require(values["hidden_act"] == "gelu", "config hidden_act", repr(values["hidden_act"]), "'gelu'")
    require(values["qkv_bias"] is True, "config qkv_bias", repr(values["qkv_bias"]), "True")
    mlp_ratio = values["intermediate_size"] / values["hidden_size"]
    decoder_ratio = values["decoder_intermediate_size"] / values["decoder_hidden_size"]
    require(
        decoder_ratio == mlp_ratio,
        "config decoder_intermediate_size",
        values["decoder_intermediate_size"],
        f"decoder_hidden_size * {mlp_ratio} (one MLP ratio for encoder and decoder)",
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
