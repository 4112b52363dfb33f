import json

import pytest

from masked_autoencoder import MAEConfig


def test_defaults_are_the_official_constructor_defaults():
    config = MAEConfig()
    assert (config.img_size, config.patch_size, config.in_chans) == (224, 16, 3)
    assert (config.embed_dim, config.depth, config.num_heads) == (1024, 24, 16)
    assert (config.decoder_embed_dim, config.decoder_depth, config.decoder_num_heads) == (512, 8, 16)
    assert (config.mlp_ratio, config.norm_pix_loss) == (4.0, False)
    assert (config.mask_ratio, config.layer_norm_eps) == (0.75, 1e-6)


@pytest.mark.parametrize(
    "config",
    [MAEConfig(), MAEConfig(img_size=(224, 320), patch_size=(16, 8), in_chans=13, norm_pix_loss=True, mask_ratio=0.5)],
)
def test_config_round_trips_through_json(config):
    assert MAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_derived_sizes_for_non_square_images_and_patches():
    config = MAEConfig(img_size=(224, 320), patch_size=(16, 8), in_chans=4)
    assert config.image_hw == (224, 320)
    assert config.patch_hw == (16, 8)
    assert config.grid_size == (14, 40)
    assert config.patch_dim == 16 * 8 * 4


def test_replace_validates_and_keeps_other_fields():
    config = MAEConfig().replace(depth=2)
    assert config.depth == 2 and config.embed_dim == 1024
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        MAEConfig().replace(depth=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"embed_dim": 100, "num_heads": 16}, "embed_dim must be divisible by num_heads=16, got 100"),
        ({"decoder_embed_dim": 510, "decoder_num_heads": 2}, "decoder_embed_dim must be a multiple of 4"),
        ({"img_size": 225}, "img_size must be divisible by patch_size 16, got 225"),
        ({"img_size": (224, 0)}, "img_size must be a positive int or a pair"),
        ({"patch_size": (16, 16, 16)}, "patch_size must be a positive int or a pair"),
        ({"in_chans": 0}, "in_chans must be a positive int, got 0"),
        ({"depth": 2.0}, "depth must be a positive int, got 2.0"),
        ({"decoder_depth": -1}, "decoder_depth must be a positive int, got -1"),
        ({"mlp_ratio": 0}, "mlp_ratio must be a positive number, got 0"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\), got 1.0"),
        ({"mask_ratio": -0.1}, r"mask_ratio must be a number in \[0, 1\), got -0.1"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be a positive number, got 0.0"),
        ({"norm_pix_loss": "yes"}, "norm_pix_loss must be a bool, got 'yes'"),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        MAEConfig(**fields)


def test_unknown_fields_raise_value_error_listing_them():
    with pytest.raises(ValueError, match=r"config field names must be among .*, got \['hidden_size'\]"):
        MAEConfig.from_dict({"hidden_size": 768})
    with pytest.raises(ValueError, match="'dept'"):
        MAEConfig().replace(dept=2)
