"""The `transformers` VideoMAE file layout (``VideoMAEForPreTraining``, e.g. MCG-NJU/videomae-base): keys and config.

VideoMAE's blocks are ViTMAE's blocks under other top-level names, with VideoMAE's attention biases: a bias for
the query and the value (``q_bias`` / ``v_bias`` in the published files, ``query.bias`` / ``value.bias`` in
memory) and none for the key, or none at all (``qkv_bias`` / ``qv_bias`` False). Reading renames the top level
to ViTMAE's layout and fills the biases VideoMAE has not with zeros (a key bias shifts every score of a query by
the same amount, so attention ignores it), then converts as a ViTMAE file. The position tables are the fixed
flattened 1-D ones (``video_pos_embed="flat"``), stored by neither side.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import require
from ..config import CLIP_MASK_RATIO, MAEConfig
from .transformers_format import config_from_transformers, from_transformers_state_dict

# VideoMAE's key prefixes -> ViTMAE's (the published layout, read by transformers_format).
_TO_VIT_MAE = {
    "videomae.embeddings.patch_embeddings.projection.": "vit.embeddings.patch_embeddings.projection.",
    "videomae.encoder.layer.": "vit.encoder.layer.",
    "videomae.layernorm.": "vit.layernorm.",
    "encoder_to_decoder.": "decoder.decoder_embed.",
    "mask_token": "decoder.mask_token",
    "decoder.decoder_layers.": "decoder.decoder_layers.",
    "decoder.norm.": "decoder.decoder_norm.",
    "decoder.head.": "decoder.decoder_pred.",
}
_ATTENTION = ".attention.attention."
# The published files' bias names -> the in-memory ones.
_BIASES = {"q_bias": "query.bias", "v_bias": "value.bias"}
# What `transformers`' VideoMAEConfig assumes for a field that a config.json leaves out, where ViTMAE's differs.
_VIDEOMAE_DEFAULTS: dict[str, Any] = {
    "num_frames": 16,
    "tubelet_size": 2,
    "decoder_hidden_size": 384,
    "decoder_num_hidden_layers": 4,
    "decoder_num_attention_heads": 6,
    "decoder_intermediate_size": 1536,
    "norm_pix_loss": True,
}


def from_videomae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VideoMAE's pre-training keys (either bias layout) -> our (official) keys, with zeros for the absent biases."""
    renamed = {_to_vit_mae(key): tensor for key, tensor in state_dict.items()}
    for key, tensor in list(renamed.items()):
        if key.endswith(".query.weight") and _ATTENTION in key:  # one per attention block
            block = key.removesuffix("query.weight")
            for name in ("query", "key", "value"):
                renamed.setdefault(f"{block}{name}.bias", tensor.new_zeros(tensor.shape[0]))
    weight = renamed.get("decoder.decoder_embed.weight")
    if weight is not None:  # VideoMAE's encoder_to_decoder has no bias
        renamed.setdefault("decoder.decoder_embed.bias", weight.new_zeros(weight.shape[0]))
    return from_transformers_state_dict(renamed)


def config_from_videomae(written: dict[str, Any]) -> MAEConfig:
    """A `transformers` VideoMAE ``config.json`` dict -> :class:`MAEConfig` (values taken as written).

    VideoMAE's table is the flattened 1-D one, its mask ratio 0.9 (the tube masking its files do not record), and
    its loss target its own (``loss_target="videomae"``).
    """
    require(written.get("model_type") == "videomae", "config model_type", repr(written.get("model_type")), "'videomae'")
    values = _VIDEOMAE_DEFAULTS | written
    # Biases VideoMAE lacks are zeros (see the module's docstring); ViTMAE's reader wants its own flag.
    as_vit_mae = {key: value for key, value in values.items() if key not in ("qkv_bias", "qv_bias", "num_frames")}
    as_vit_mae |= {"model_type": "vit_mae", "mask_ratio": CLIP_MASK_RATIO}
    video = {"num_frames": values["num_frames"], "tubelet_size": values["tubelet_size"], "video_pos_embed": "flat"}
    return config_from_transformers(as_vit_mae).replace(**video, loss_target="videomae")


def _to_vit_mae(key: str) -> str:
    """One VideoMAE key in ViTMAE's layout (unknown keys unchanged: the ViTMAE reader names them)."""
    for name, in_memory in _BIASES.items():
        if key.endswith(f"{_ATTENTION}{name}"):
            key = key.removesuffix(name) + in_memory
    prefix = next((prefix for prefix in _TO_VIT_MAE if key.startswith(prefix)), None)
    return key if prefix is None else _TO_VIT_MAE[prefix] + key.removeprefix(prefix)
