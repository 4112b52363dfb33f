import pytest
import torch

from masked_autoencoder import (
    GridMasking,
    MAEConfig,
    MaskedAutoencoderViT,
    create_model,
    list_models,
    mae_vit_base,
    mae_vit_base_patch16,
    mae_vit_huge,
    mae_vit_large,
    mae_vit_small,
    mae_vit_tiny,
    model_config,
)

PAPER_SIZES = {  # name: (patch, width, depth, heads), from the paper's table
    "mae_vit_base_patch16": (16, 768, 12, 12),
    "mae_vit_large_patch16": (16, 1024, 24, 16),
    "mae_vit_huge_patch14": (14, 1280, 32, 16),
}


@pytest.mark.parametrize("name", list(PAPER_SIZES))
def test_paper_models_have_the_paper_sizes_and_default_decoder(name):
    config = model_config(name)
    assert (config.patch_size, config.embed_dim, config.depth, config.num_heads) == PAPER_SIZES[name]
    assert (config.decoder_embed_dim, config.decoder_depth, config.decoder_num_heads) == (512, 8, 16)
    assert (config.img_size, config.mlp_ratio, config.mask_ratio) == (224, 4.0, 0.75)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (mae_vit_base, "mae_vit_base_patch16"),
        (mae_vit_large, "mae_vit_large_patch16"),
        (mae_vit_huge, "mae_vit_huge_patch14"),
    ],
)
def test_factories_build_the_full_configs_with_the_right_shapes(factory, name):
    with torch.device("meta"):
        model = factory()
    patch, width, depth, _ = PAPER_SIZES[name]
    grid = 224 // patch
    assert model.config == model_config(name)
    assert model.pos_embed.shape == (1, 1 + grid * grid, width)
    assert model.decoder_pred.weight.shape == (patch * patch * 3, 512)
    assert len(model.blocks) == depth and len(model.decoder_blocks) == 8


def test_encoder_parameter_counts_match_the_paper():
    for name, millions in (("mae_vit_base", 86), ("mae_vit_large", 304), ("mae_vit_huge", 632)):
        with torch.device("meta"):
            model = create_model(name)
        encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("decoder", "mask_token")))
        # The paper's counts include a 1000-class head (about 1M): compare within 1%.
        assert encoder / 1e6 == pytest.approx(millions, rel=0.01)


def test_overrides_change_config_fields():
    model = mae_vit_tiny(img_size=64, norm_pix_loss=True, decoder_depth=1)
    assert isinstance(model, MaskedAutoencoderViT)
    assert model.config == model_config("mae_vit_tiny_patch16").replace(
        img_size=64, norm_pix_loss=True, decoder_depth=1
    )
    assert model(torch.randn(1, 3, 64, 64)).pred.shape == (1, 16, 768)


def test_aliases_and_names_build_the_same_model():
    assert mae_vit_base is mae_vit_base_patch16
    assert model_config("mae_vit_base") == model_config("mae_vit_base_patch16")
    assert isinstance(mae_vit_small(depth=1, decoder_depth=1).config, MAEConfig)


def test_list_models_names_every_architecture_and_alias():
    names = list_models()
    assert names == sorted(names)
    assert {"mae_vit_base", "mae_vit_base_patch16", "mae_vit_huge_patch14", "mae_vit_tiny_patch16"} <= set(names)
    for name in names:
        model_config(name)


def test_unknown_model_name_raises_value_error_listing_the_names():
    with pytest.raises(ValueError, match=r"name must be one of \[.*'mae_vit_base'.*\], got 'vit_base'"):
        create_model("vit_base")


def test_unknown_override_raises_value_error():
    with pytest.raises(ValueError, match="config field names must be among"):
        create_model("mae_vit_tiny", hidden_size=3)


def test_factories_take_the_models_own_arguments_beside_config_fields():
    model = mae_vit_tiny(masking=GridMasking(), img_size=64)
    assert isinstance(model.masking, GridMasking) and model.config.img_size == 64
    encoder = create_model("mae_vit_tiny", encoder_only=True, drop_path_rate=0.1)
    assert encoder.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
