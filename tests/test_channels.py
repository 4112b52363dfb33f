"""RGB weights for any channel count: the patch embedding as timm adapts it, and the MAE's pixel head."""

import pytest
import torch
from conftest import TINY
from hub_cache import encoder_part, pickled, tiny_model
from timm.models._manipulate import adapt_input_conv

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT, create_model
from masked_autoencoder.hub.channels import adapt_pixel_head


@pytest.mark.parametrize("channels", [1, 2, 4, 6, 13])
@pytest.mark.parametrize("cls", [MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT])
def test_patch_embedding_is_adapted_as_timms_adapt_input_conv(tmp_path, cls, channels, caplog):
    rgb = tiny_model()
    folder = rgb.save_pretrained(tmp_path / "rgb")
    with caplog.at_level("INFO", logger="masked_autoencoder"):
        model = cls.from_pretrained(folder, in_chans=channels)
    weight = rgb.patch_embed.proj.weight.detach()
    torch.testing.assert_close(model.patch_embed.proj.weight, adapt_input_conv(channels, weight), rtol=0, atol=0)
    assert model.config.in_chans == channels and "adapted to the model's input channels" in caplog.text
    assert model.forward_features(torch.randn(2, channels, 32, 32)).shape == (2, 17, 32)


@pytest.mark.parametrize("channels", [1, 6])
def test_equal_channels_mean_what_grey_rgb_means_to_the_rgb_model(tmp_path, channels):
    rgb = tiny_model()
    model = MaskedAutoencoderViT.from_pretrained(rgb.save_pretrained(tmp_path / "rgb"), in_chans=channels)
    grey = torch.randn(2, 1, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        ours = model(grey.expand(-1, channels, -1, -1), noise=noise)
        theirs = rgb(grey.expand(-1, 3, -1, -1), noise=noise)
    torch.testing.assert_close(ours.latent, theirs.latent, rtol=1e-5, atol=1e-5)
    rgb_pixels = theirs.pred.unflatten(-1, (64, 3))  # (B, L, P*P, C): the pixel order is (p, q, c)
    expected = rgb_pixels.mean(-1, keepdim=True) if channels == 1 else rgb_pixels[..., torch.arange(channels) % 3]
    torch.testing.assert_close(ours.pred, expected.flatten(-2), rtol=1e-5, atol=1e-5)


def test_pixel_head_rows_follow_the_pixel_order():
    rows = torch.arange(2 * 2 * 3, dtype=torch.float).reshape(-1, 1)  # (p, q) in 4 places, RGB each
    assert adapt_pixel_head(rows, 1).flatten().tolist() == [1.0, 4.0, 7.0, 10.0]
    assert adapt_pixel_head(rows, 4).flatten().tolist()[:8] == [0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 3.0]


def test_factories_and_official_files_take_in_chans(tmp_path):
    folder = create_model("mae_vit_tiny", img_size=32).save_pretrained(tmp_path / "tiny")
    assert create_model("mae_vit_tiny", pretrained=folder, in_chans=13).patch_embed.proj.in_channels == 13
    path = tmp_path / "mae_pretrain_vit_base.pth"
    path.write_bytes(pickled({"model": encoder_part(tiny_model().state_dict())}))
    assert MAEEncoder.from_pretrained(path, num_heads=4, in_chans=2).config.in_chans == 2


def test_only_rgb_weights_are_adapted(tmp_path):
    folder = MAEEncoder(TINY.replace(in_chans=4)).save_pretrained(tmp_path / "four")
    with pytest.raises(
        ValueError, match="has 4-channel weights: only RGB .* to in_chans=2; build the model with in_chans=4"
    ):
        MAEEncoder.from_pretrained(folder, in_chans=2)
