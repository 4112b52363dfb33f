import pytest
import torch

from masked_autoencoder import MAEEncoder

TIMM_BLOCK_KEYS = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]


def test_encoder_keys_are_timm_vit_keys(tiny_config):
    expected = {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    }
    expected |= {f"blocks.{i}.{m}.{p}" for i in range(2) for m in TIMM_BLOCK_KEYS for p in ("weight", "bias")}
    assert set(MAEEncoder(tiny_config).state_dict()) == expected


def test_encoder_takes_the_encoder_half_of_a_full_checkpoint(tiny_model, tiny_config):
    encoder = MAEEncoder(tiny_config)
    encoder_keys = set(encoder.state_dict())
    encoder.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if k in encoder_keys})
    imgs = torch.randn(2, 3, 32, 32)
    assert torch.equal(encoder.eval()(imgs), tiny_model.forward_features(imgs))


def test_features_equal_the_masked_path_with_no_masking_in_identity_order(tiny_model, images):
    features = tiny_model.forward_features(images)
    identity = torch.arange(16.0).expand(2, -1)
    latent, mask, ids_restore = tiny_model.forward_encoder(images, 0.0, noise=identity)
    assert features.shape == (2, 17, 32)
    assert torch.equal(features, latent)
    assert not mask.any() and torch.equal(ids_restore, torch.arange(16).expand(2, -1))


def test_encoder_runs_on_other_image_sizes(tiny_config):
    encoder = MAEEncoder(tiny_config).eval()
    assert encoder(torch.randn(1, 3, 32, 48)).shape == (1, 1 + 4 * 6, 32)
    assert encoder(torch.randn(1, 3, 64, 64)).shape == (1, 1 + 64, 32)


def test_encoder_only_masked_path_keeps_a_quarter(tiny_config, images):
    latent, mask, _ = MAEEncoder(tiny_config).forward_encoder(images)
    assert latent.shape == (2, 1 + 4, 32) and mask.sum().item() == 24


def test_encoder_rejects_bad_images(tiny_config):
    with pytest.raises(ValueError, match=r"imgs must be height and width divisible by the patch size \(8, 8\)"):
        MAEEncoder(tiny_config)(torch.randn(1, 3, 33, 32))
