"""Our weights in `transformers`' models: ViTMAEForPreTraining, ViTMAEModel and ViTModel, loaded from their files.

`transformers` 5 renames parameters in memory but reads the published file layout, so each twin is
written as a checkpoint folder (``to_transformers_state_dict``) and loaded with ``from_pretrained``,
which must find every key. ``layer_norm_eps`` is ours (1e-6), not `transformers`' default.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import PreTrainedModel, ViTMAEForPreTraining, ViTMAEModel, ViTModel

from masked_autoencoder import MAEEncoder
from masked_autoencoder.hub.transformers_format import config_to_transformers, to_transformers_state_dict

# The ViTMAEConfig fields that a ViTConfig has too (the rest is the decoder's and the masking's).
_VIT_FIELDS = (
    "image_size",
    "patch_size",
    "num_channels",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "qkv_bias",
    "layer_norm_eps",
)
_ENCODER_PREFIX = "vit."

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def _load(
    cls: type[PreTrainedModel], tensors: dict[str, torch.Tensor], config: dict, **kwargs: object
) -> PreTrainedModel:
    """``cls.from_pretrained`` of these tensors and config.json, checked to load every key and nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        save_file(tensors, Path(folder) / "model.safetensors")
        (Path(folder) / "config.json").write_text(json.dumps(config))
        model, info = cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    problems = {kind: info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[kind]}
    if problems:
        raise RuntimeError(f"{cls.__name__} did not load our weights exactly: {problems}")
    return model


def _tensors(ours: MAEEncoder) -> dict[str, torch.Tensor]:
    """Our tensors in the published ViTMAE file layout, on the CPU."""
    return to_transformers_state_dict({key: tensor.cpu() for key, tensor in ours.state_dict().items()})


def _encoder_tensors(ours: MAEEncoder) -> dict[str, torch.Tensor]:
    """The encoder's tensors in that layout (``vit.*``)."""
    return {key: tensor for key, tensor in _tensors(ours).items() if key.startswith(_ENCODER_PREFIX)}


def pretraining(ours: MAEEncoder, attn_implementation: str) -> ViTMAEForPreTraining:
    """ViTMAEForPreTraining with the weights of our MaskedAutoencoderViT, on its device, in training mode."""
    config = config_to_transformers(ours.config)
    model = _load(ViTMAEForPreTraining, _tensors(ours), config, attn_implementation=attn_implementation)
    return model.to(ours.pos_embed.device).train()


def mae_encoder(ours: MAEEncoder, attn_implementation: str = "sdpa") -> ViTMAEModel:
    """ViTMAEModel (no masking: ``mask_ratio=0``) with our encoder's weights, on its device, in eval mode.

    It still shuffles the tokens: pass ``noise=identity_noise(...)`` to keep them in image order.
    """
    config = config_to_transformers(ours.config) | {"mask_ratio": 0.0}
    model = _load(ViTMAEModel, _encoder_tensors(ours), config, attn_implementation=attn_implementation)
    return model.to(ours.pos_embed.device).eval()


def vit_encoder(ours: MAEEncoder, attn_implementation: str = "sdpa") -> ViTModel:
    """ViTModel (no pooling layer) with our encoder's weights, on its device, in eval mode."""
    mae_config = config_to_transformers(ours.config)
    config = {"model_type": "vit", **{field: mae_config[field] for field in _VIT_FIELDS}}
    tensors = {key.removeprefix(_ENCODER_PREFIX): tensor for key, tensor in _encoder_tensors(ours).items()}
    model = _load(ViTModel, tensors, config, add_pooling_layer=False, attn_implementation=attn_implementation)
    return model.to(ours.pos_embed.device).eval()


def identity_noise(imgs: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Increasing noise (B, L): ViTMAEModel's argsort shuffle then keeps every patch in image order."""
    return torch.arange(num_patches, device=imgs.device, dtype=torch.float32).expand(imgs.shape[0], -1)
