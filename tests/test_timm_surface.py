"""timm's model surface on our models, checked against timm itself on the same weights."""

import pytest
import timm
import torch
from conftest import TINY
from hub_cache import add_to_cache, timm_files, tiny_encoder

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT, create_model


def _timm_vit(**kwargs: object) -> torch.nn.Module:
    shape = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)
    return timm.models.vision_transformer.VisionTransformer(**shape, **kwargs).eval()


def _classifier_pair(global_pool: bool) -> tuple[MAEViTClassifier, torch.nn.Module]:
    torch.manual_seed(0)
    ours = MAEViTClassifier(TINY, num_classes=5, global_pool=global_pool).eval()
    theirs = _timm_vit(num_classes=5, global_pool="avg" if global_pool else "token", fc_norm=global_pool)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("model", [MAEEncoder(TINY), MaskedAutoencoderViT(TINY), MAEViTClassifier(TINY)])
def test_num_features_prefix_tokens_and_feature_info_are_timms(model):
    theirs = _timm_vit(num_classes=0)
    assert model.num_features == theirs.num_features == 32
    assert model.num_prefix_tokens == theirs.num_prefix_tokens == 1
    assert model.feature_info == theirs.feature_info
    assert timm.data.resolve_model_data_config(model)["mean"] == model.pretrained_cfg["mean"]


@pytest.mark.parametrize("global_pool", [True, False])
def test_forward_head_and_reset_classifier_match_timm(global_pool):
    ours, theirs = _classifier_pair(global_pool)
    imgs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = ours.forward_features(imgs)
        torch.testing.assert_close(features, theirs.forward_features(imgs))
        for pre_logits in (True, False):
            expected = theirs.forward_head(features, pre_logits)
            torch.testing.assert_close(ours.forward_head(features, pre_logits), expected)
        for num_classes, pool in ((0, None), (3, "token"), (0, "avg")):
            ours.reset_classifier(num_classes, pool)
            theirs.reset_classifier(num_classes, pool)
            theirs.head.load_state_dict(ours.head.state_dict())
            assert ours.num_classes == theirs.num_classes == num_classes
            assert type(ours.head) is type(theirs.head)
            torch.testing.assert_close(ours(imgs), theirs(imgs))


def test_reset_classifier_keeps_mode_device_and_dtype_and_refuses_bad_arguments():
    model = MAEViTClassifier(TINY, num_classes=5).to(torch.float64).eval()
    model.reset_classifier(7)
    assert model.head.weight.dtype == torch.float64 and not model.head.training
    assert model(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 7)
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 0 \(0: no head\), got -1"):
        model.reset_classifier(-1)
    with pytest.raises(ValueError, match=r"global_pool must be None or one of \('token', 'avg'\), got 'max'"):
        model.reset_classifier(3, "max")


def test_pretrained_cfg_comes_from_the_timm_config_or_the_known_table(tmp_path):
    add_to_cache(tmp_path, "timm/vit_base_patch16_224.mae", timm_files(tiny_encoder()))
    loaded = MAEEncoder.from_pretrained("timm/vit_base_patch16_224.mae", cache_dir=tmp_path, num_heads=4)
    assert loaded.pretrained_cfg["tag"] == "mae" and loaded.pretrained_cfg["license"] == "cc-by-nc-4.0"
    assert list(loaded.pretrained_cfg["mean"]) == [0.485, 0.456, 0.406]
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": tiny_encoder().state_dict()}, path)
    official = MAEEncoder.from_pretrained(path, num_heads=4)
    assert official.pretrained_cfg["name"] == "mae_pretrain_vit_base.pth"
    assert official.pretrained_cfg["input_size"] == (3, 32, 32)  # the model's own size, whatever the table says
    saved = create_model("mae_vit_tiny", img_size=32).save_pretrained(tmp_path / "ours")
    assert "name" not in MaskedAutoencoderViT.from_pretrained(saved).pretrained_cfg  # a fresh model's defaults
