"""Every model says what its weights expect as input (``pretrained_cfg``): fresh, assigned, saved and loaded."""

import json
import re

import pytest
import timm.data
import torch
from conftest import TINY
from hub_cache import add_to_cache, tiny_model, transformers_files

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT
from masked_autoencoder.data_config import default_pretrained_cfg
from masked_autoencoder.hub.known_weights import known_by_repo_id

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # written out: the reference values
MODEL_CLASSES = (MaskedAutoencoderViT, MAEEncoder, MAEViTClassifier)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_a_fresh_rgb_model_expects_the_official_recipes_input(model_class):
    cfg = model_class(TINY).pretrained_cfg
    assert {key: cfg[key] for key in IMAGENET} == IMAGENET
    assert (cfg["input_size"], cfg["interpolation"], cfg["crop_pct"]) == ((3, 32, 32), "bicubic", 224 / 256)


def test_the_input_size_is_the_models_own_and_large_inputs_are_not_cropped():
    cfg = MAEEncoder(TINY.replace(img_size=(256, 512), in_chans=2)).pretrained_cfg
    assert cfg["input_size"] == (2, 256, 512)
    assert cfg["crop_pct"] == 1.0  # the official evaluation crops 224 of 256, and nothing above 224
    assert cfg["mean"] == pytest.approx((sum(IMAGENET["mean"]) / 3,) * 2)  # one value a band
    assert len(cfg["std"]) == 2


def test_timm_reads_the_data_config_as_its_own():
    model = MAEEncoder(TINY)
    model.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "crop_pct": 1.0}
    resolved = timm.data.resolve_model_data_config(model)
    expected = {"input_size": (3, 32, 32), "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "crop_pct": 1.0}
    assert {key: resolved[key] for key in expected} == expected


def test_an_assigned_config_is_completed_with_the_defaults_and_is_read_only():
    model = MaskedAutoencoderViT(TINY)
    model.pretrained_cfg = {"mean": [0, 0, 0], "std": [2, 2, 2], "name": "my-data"}
    cfg = model.pretrained_cfg
    assert (cfg["mean"], cfg["std"], cfg["name"], cfg["interpolation"]) == (
        (0.0,) * 3,
        (2.0,) * 3,
        "my-data",
        "bicubic",
    )
    with pytest.raises(TypeError):
        cfg["mean"] = (1.0, 1.0, 1.0)  # a change that would silently not stick
    model.pretrained_cfg = None
    assert dict(model.pretrained_cfg) == default_pretrained_cfg(TINY)


@pytest.mark.parametrize(
    ("cfg", "named", "expected"),
    [
        ({"mean": (0.5, 0.5)}, "pretrained_cfg['mean']", "3 finite numbers"),
        ({"std": (1.0, float("nan"), 1.0)}, "pretrained_cfg['std']", "3 finite numbers"),
        ({"std": (1.0, 0.0, 1.0)}, "pretrained_cfg['std']", "positive"),
        ({"crop_pct": 0}, "pretrained_cfg['crop_pct']", "(0, 1]"),
        ({"interpolation": 3}, "pretrained_cfg['interpolation']", "a str"),
        ([0.5, 0.5, 0.5], "pretrained_cfg", "a dict"),
    ],
)
def test_a_bad_data_config_is_refused_naming_the_key(cfg, named, expected):
    model = MAEEncoder(TINY)
    with pytest.raises(ValueError, match=f"{re.escape(named)}.*{re.escape(expected)}"):
        model.pretrained_cfg = cfg
    assert dict(model.pretrained_cfg) == default_pretrained_cfg(TINY)  # unchanged


@pytest.mark.parametrize("loaded_as", MODEL_CLASSES)
def test_save_pretrained_writes_the_data_config_and_from_pretrained_restores_it(tmp_path, loaded_as):
    model = tiny_model()
    model.pretrained_cfg = {"mean": (10.0, 20.0, 30.0), "std": (1.5, 2.5, 3.5), "crop_pct": 1.0}
    model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())["pretrained_cfg"]
    assert (written["mean"], written["std"], written["crop_pct"]) == ([10.0, 20.0, 30.0], [1.5, 2.5, 3.5], 1.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = loaded_as.from_pretrained(tmp_path, **({"num_classes": 2} if loaded_as is MAEViTClassifier else {}))
    assert dict(loaded.pretrained_cfg) == dict(model.pretrained_cfg)


def test_a_file_saved_without_a_data_config_loads_with_the_defaults(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    del written["pretrained_cfg"]  # as versions before it wrote
    (tmp_path / "config.json").write_text(json.dumps(written))
    assert dict(MaskedAutoencoderViT.from_pretrained(tmp_path).pretrained_cfg) == default_pretrained_cfg(TINY)


def test_published_weights_record_their_name_licence_and_imagenet_statistics(tmp_path):
    add_to_cache(tmp_path, "facebook/vit-mae-base", transformers_files(tiny_model()))
    cfg = MaskedAutoencoderViT.from_pretrained("facebook/vit-mae-base", cache_dir=tmp_path).pretrained_cfg
    known = known_by_repo_id("facebook/vit-mae-base")
    assert (cfg["name"], cfg["url"], cfg["license"]) == (known.name, known.url, known.license)
    assert {key: cfg[key] for key in IMAGENET} == IMAGENET
    assert cfg["input_size"] == (3, 32, 32)  # the model's own size, not the table's 224


def test_rgb_statistics_give_way_to_the_defaults_when_the_weights_are_adapted_to_other_bands(tmp_path):
    add_to_cache(tmp_path, "facebook/vit-mae-base", transformers_files(tiny_model()))
    model = MaskedAutoencoderViT.from_pretrained("facebook/vit-mae-base", cache_dir=tmp_path, in_chans=4)
    defaults = default_pretrained_cfg(TINY.replace(in_chans=4))
    assert {key: model.pretrained_cfg[key] for key in ("mean", "std", "input_size")} == {
        key: defaults[key] for key in ("mean", "std", "input_size")
    }
    assert model.pretrained_cfg["name"] == "facebook/vit-mae-base"


def test_load_pretrained_into_a_model_takes_the_weights_data_config(tmp_path):
    saved = tiny_model()
    saved.pretrained_cfg = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    saved.save_pretrained(tmp_path)
    model = MaskedAutoencoderViT(TINY)
    model.load_pretrained(tmp_path)
    assert dict(model.pretrained_cfg) == dict(saved.pretrained_cfg)
    torch.testing.assert_close(model.state_dict(), saved.state_dict(), rtol=0, atol=0)
