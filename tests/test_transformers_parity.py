"""Parity with `transformers`' ViTMAE through its published file layout: outputs, gradients, keys, config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY as CONFTEST_TINY
from hub_cache import ATOL, inputs, tiny_model
from safetensors.torch import load_file, save_file
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEDecoder, ViTMAEEmbeddings

from masked_autoencoder import MAEConfig, MaskedAutoencoderViT, model_config
from masked_autoencoder.hub.transformers_format import (
    config_from_transformers,
    config_to_transformers,
    from_transformers_state_dict,
    to_transformers_state_dict,
)

TINY = CONFTEST_TINY.replace(decoder_depth=2)
# transformers >= 5 writes the decoder blocks under this name on save_pretrained (we write decoder.decoder_layers).
SAVED_DECODER_ALIAS = "decoder.decoder_encoder.layer."


def _write_transformers_files(model: MaskedAutoencoderViT, directory: Path) -> Path:
    """Write our model as a `transformers` checkpoint folder (model.safetensors + config.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(to_transformers_state_dict(model.state_dict()), directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config_to_transformers(model.config)))
    return directory


def _load_transformers(directory: Path, attn_implementation: str = "sdpa") -> ViTMAEForPreTraining:
    theirs, info = ViTMAEForPreTraining.from_pretrained(
        directory, attn_implementation=attn_implementation, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return theirs.eval()


def _pair(
    tmp_path: Path, config: MAEConfig = TINY, attn_implementation: str = "sdpa"
) -> tuple[MaskedAutoencoderViT, ViTMAEForPreTraining]:
    ours = tiny_model(config)
    return ours, _load_transformers(_write_transformers_files(ours, tmp_path / "ours"), attn_implementation)


def _saved_by_transformers(theirs: ViTMAEForPreTraining, directory: Path) -> dict[str, torch.Tensor]:
    """What `save_pretrained` writes to disk: the published file layout (with its decoder alias)."""
    theirs.save_pretrained(directory)
    return load_file(directory / "model.safetensors")


def _transformers_grads_in_our_keys(theirs: ViTMAEForPreTraining, directory: Path) -> dict[str, torch.Tensor]:
    """Their gradients renamed to our keys, through the file layout; parameters without a grad are left out."""
    for param in theirs.parameters():
        # NaN marks "no gradient" so the file keeps one tensor per parameter and we can drop them after renaming.
        param.data = param.grad if param.grad is not None else torch.full_like(param, float("nan"))
    grads = from_transformers_state_dict(_saved_by_transformers(theirs, directory))
    return {key: grad for key, grad in grads.items() if not grad.isnan().any()}


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_outputs_match_transformers_loaded_from_our_files(tmp_path, norm_pix_loss, attn_implementation):
    ours, theirs = _pair(tmp_path, TINY.replace(norm_pix_loss=norm_pix_loss), attn_implementation)
    imgs, noise = inputs(TINY, batch=3)
    with torch.no_grad():
        out, ref = ours(imgs, noise=noise), theirs(pixel_values=imgs, noise=noise)
    torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=ATOL)
    torch.testing.assert_close(out.pred, ref.logits, rtol=0, atol=ATOL)
    assert torch.equal(out.mask, ref.mask)
    assert torch.equal(out.ids_restore, ref.ids_restore)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_gradients_match_transformers_in_the_file_layout(tmp_path, norm_pix_loss):
    ours, theirs = _pair(tmp_path, TINY.replace(norm_pix_loss=norm_pix_loss))
    # from_pretrained leaves the fixed sin-cos tables trainable; freeze them as their __init__ does.
    theirs.vit.embeddings.position_embeddings.requires_grad_(False)
    theirs.decoder.decoder_pos_embed.requires_grad_(False)
    imgs, noise = inputs(TINY, batch=3)
    ours(imgs, noise=noise).loss.backward()
    theirs(pixel_values=imgs, noise=noise).loss.backward()
    expected = {name: param.grad for name, param in ours.named_parameters() if param.requires_grad}
    got = _transformers_grads_in_our_keys(theirs, tmp_path / "grads")
    assert set(got) == set(expected)
    for key, grad in expected.items():
        torch.testing.assert_close(got[key], grad, rtol=0, atol=ATOL, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("config", [TINY, TINY.replace(img_size=(32, 48), patch_size=(8, 4))], ids=["square", "rect"])
def test_key_table_round_trip_is_bit_exact(config):
    state_dict = tiny_model(config).state_dict()
    back = from_transformers_state_dict(to_transformers_state_dict(state_dict))
    assert set(back) == set(state_dict)
    assert all(torch.equal(back[key], tensor) for key, tensor in state_dict.items())


def test_file_saved_by_transformers_loads_strictly_into_our_model(tmp_path):
    ours, theirs = _pair(tmp_path)
    saved = _saved_by_transformers(theirs, tmp_path / "saved")
    assert any(key.startswith(SAVED_DECODER_ALIAS) for key in saved), "the alias layout is no longer exercised"
    state_dict = from_transformers_state_dict(saved)
    assert set(state_dict) == set(ours.state_dict())
    assert all(torch.equal(state_dict[key], tensor) for key, tensor in ours.state_dict().items())
    reloaded = tiny_model(TINY, seed=1)
    reloaded.load_state_dict(state_dict, strict=True)
    imgs, noise = inputs(TINY, batch=3)
    with torch.no_grad():
        out, ref = reloaded(imgs, noise=noise), ours(imgs, noise=noise)
    assert torch.equal(out.pred, ref.pred) and torch.equal(out.loss, ref.loss)


def test_position_tables_equal_transformers_sincos_init():
    # A fresh ViTMAEForPreTraining (5.23) has zero tables; its module-level init computes the real ones.
    their_config = ViTMAEConfig(**config_to_transformers(TINY))
    embeddings = ViTMAEEmbeddings(their_config)
    embeddings.initialize_weights()
    grid_h, grid_w = TINY.grid_size
    decoder = ViTMAEDecoder(their_config, num_patches=grid_h * grid_w)
    ours = tiny_model(TINY)
    torch.testing.assert_close(ours.pos_embed, embeddings.position_embeddings.detach())
    torch.testing.assert_close(ours.decoder_pos_embed, decoder.decoder_pos_embed.detach())


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        TINY.replace(norm_pix_loss=True, mask_ratio=0.5, mlp_ratio=2.5, layer_norm_eps=1e-12),
        model_config("mae_vit_huge_patch14"),
    ],
    ids=["tiny", "tiny-variant", "huge"],
)
def test_config_round_trips_through_transformers_fields(config):
    assert config_from_transformers(config_to_transformers(config)) == config


def test_config_from_the_json_transformers_writes(tmp_path):
    ViTMAEConfig(
        image_size=32,
        patch_size=8,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        mask_ratio=0.6,
        norm_pix_loss=True,
    ).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    # layer_norm_eps is taken as written: transformers' default 1e-12, not our 1e-6.
    expected = CONFTEST_TINY.replace(
        in_chans=1, mlp_ratio=2.0, norm_pix_loss=True, mask_ratio=0.6, layer_norm_eps=1e-12
    )
    assert config_from_transformers(written) == expected


@pytest.mark.parametrize("overrides", [dict(img_size=(32, 64)), dict(patch_size=(8, 4))], ids=["image", "patch"])
def test_config_to_transformers_rejects_non_square(overrides):
    with pytest.raises(ValueError, match=r"^config must be square"):
        config_to_transformers(TINY.replace(**overrides))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model_type": "vit"}, "model_type"),
        ({"decoder_intermediate_size": 48}, "decoder_intermediate_size"),
        ({"intermediate_size": 98, "hidden_size": 44}, "config intermediate_size must be hidden_size"),
        ({"hidden_dropout_prob": 0.1}, "config hidden_dropout_prob must be 0.0"),
        ({"attention_probs_dropout_prob": 0.1}, "config attention_probs_dropout_prob must be 0.0"),
        ({"hidden_act": "relu"}, "config hidden_act must be 'gelu'"),
    ],
)
def test_config_from_transformers_rejects_inconsistent_fields(change, named):
    with pytest.raises(ValueError, match=named):
        config_from_transformers(config_to_transformers(TINY) | change)


def test_config_to_transformers_rejects_a_ratio_that_gives_fractional_widths():
    with pytest.raises(ValueError, match="mlp_ratio must be a ratio that makes embed_dim \\* mlp_ratio a whole number"):
        config_to_transformers(TINY.replace(mlp_ratio=3.3))


@pytest.mark.parametrize(
    ("convert", "key"),
    [
        (to_transformers_state_dict, "cls_token.extra"),
        (to_transformers_state_dict, "norm.running_mean"),
        (from_transformers_state_dict, "vit.embeddings.cls_token.extra"),
        (from_transformers_state_dict, "vit.layernorm.running_mean"),
    ],
)
def test_only_weight_and_bias_follow_a_known_module(convert, key):
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        convert({key: torch.zeros(2)})


@pytest.mark.parametrize("key", ["head.weight", "vit.pooler.dense.weight"])
@pytest.mark.parametrize("convert", [to_transformers_state_dict, from_transformers_state_dict])
def test_unknown_keys_are_named_in_the_error(convert, key):
    state_dict = tiny_model(TINY).state_dict()
    if convert is from_transformers_state_dict:
        state_dict = to_transformers_state_dict(state_dict)
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        convert({**state_dict, key: torch.zeros(2)})


@pytest.mark.parametrize("name", ["mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"])
def test_parameter_counts_match_transformers_for_paper_models(name):
    config = model_config(name)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = MaskedAutoencoderViT(config)
        theirs = ViTMAEForPreTraining(ViTMAEConfig(**config_to_transformers(config)))
    assert next(theirs.parameters()).is_meta

    def trainable(model):
        return sum(param.numel() for param in model.parameters() if param.requires_grad)

    def stored(model):
        return sum(tensor.numel() for tensor in model.state_dict().values())

    assert trainable(ours) == trainable(theirs)
    assert stored(ours) == stored(theirs)


def test_unmasked_encoder_equals_transformers_vitmae_model_in_identity_order(tmp_path):
    """Backbone equivalence: no masking here; transformers' ViTMAEModel with mask ratio 0 and noise = arange."""
    ours = tiny_model(TINY)
    folder = _write_transformers_files(ours, tmp_path)
    theirs = ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    imgs, _ = inputs(TINY, batch=3)
    identity = torch.arange(16.0).expand(imgs.shape[0], -1)
    with torch.no_grad():
        expected = theirs(pixel_values=imgs, noise=identity, output_hidden_states=True)
        features = ours.forward_features(imgs)
        blocks = ours.forward_intermediates(imgs, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True)
    torch.testing.assert_close(features, expected.last_hidden_state, atol=ATOL, rtol=0)
    for (patches, cls), hidden in zip(blocks, expected.hidden_states[1:], strict=True):
        torch.testing.assert_close(torch.cat([cls, patches], dim=1), hidden, atol=ATOL, rtol=0)
