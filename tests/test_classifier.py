"""MAEViTClassifier: the official fine-tuning model, its keys, pooling, init, resolution change and loading."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from hub_cache import (
    assert_same_tensors,
    encoder_part,
    pickled,
    place,
    timm_files,
    tiny_encoder,
    tiny_model,
    transformers_files,
)

from masked_autoencoder import (
    MAEEncoder,
    MAEViTClassifier,
    MaskedAutoencoderViT,
    create_classifier,
    resize_pos_embed,
    sincos_pos_embed_2d,
    vit_base_patch16,
    vit_huge_patch14,
    vit_large_patch16,
)

BLOCK_KEYS = {
    f"blocks.{i}.{m}.{p}"
    for i in range(2)
    for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for p in ("weight", "bias")
}
EMBEDDING_KEYS = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
HEAD = {"head.weight", "head.bias"}
FC_NORM = {"fc_norm.weight", "fc_norm.bias"}
NORM = {"norm.weight", "norm.bias"}


def classifier(global_pool: bool = True, num_classes: int = 10, seed: int = 0, **kwargs) -> MAEViTClassifier:
    torch.manual_seed(seed)
    model = MAEViTClassifier(TINY, num_classes=num_classes, global_pool=global_pool, **kwargs)
    # Non-trivial norms and head, so that a mix-up of norms or pools shows in the outputs.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("norm", "fc_norm", "head")):
                param.normal_()
    return model.eval()


def images(height: int = 32, width: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))


def official_file(tmp_path, model: MAEViTClassifier, name: str = "mae_finetuned_vit_base.pth"):
    """An official fine-tuned checkpoint of ``model``: ``{'model': state_dict}``, no config."""
    (tmp_path / name).write_bytes(pickled({"model": model.state_dict()}))
    return tmp_path / name


# --- the model -----------------------------------------------------------------------------------------------


def test_keys_are_those_of_official_fine_tuned_checkpoints():
    assert set(classifier(global_pool=True).state_dict()) == EMBEDDING_KEYS | BLOCK_KEYS | FC_NORM | HEAD
    assert set(classifier(global_pool=False).state_dict()) == EMBEDDING_KEYS | BLOCK_KEYS | NORM | HEAD


def test_position_table_is_a_trainable_parameter_starting_as_sin_cos():
    model = MAEViTClassifier(TINY)
    assert "pos_embed" in dict(model.named_parameters())
    assert torch.equal(model.pos_embed[0], sincos_pos_embed_2d(32, 4, cls_token=True))
    model(images()).sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0


def test_new_head_is_trunc_normal_with_std_2e_5_and_zero_bias():
    torch.manual_seed(0)
    model = MAEViTClassifier(TINY, num_classes=1000)  # 32 000 weights
    weight = model.head.weight.detach()
    assert weight.std().item() == pytest.approx(2e-5, rel=0.05)
    assert torch.equal(model.head.bias, torch.zeros(1000))
    assert torch.equal(model.fc_norm.weight, torch.ones(32)) and torch.equal(model.fc_norm.bias, torch.zeros(32))


def test_global_pool_averages_the_patch_tokens_before_any_norm_then_applies_fc_norm():
    model, imgs = classifier(global_pool=True), images()
    # By hand: patch projection, positions, class token, the blocks; then the official pool.
    patches = F.conv2d(imgs, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=8)
    tokens = patches.flatten(2).transpose(1, 2) + model.pos_embed[:, 1:]
    tokens = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1), tokens], dim=1)
    for block in model.blocks:
        tokens = block(tokens)
    pooled = F.layer_norm(tokens[:, 1:].mean(dim=1), (32,), model.fc_norm.weight, model.fc_norm.bias, eps=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(imgs), pooled @ model.head.weight.T + model.head.bias)
        torch.testing.assert_close(model.forward_head(model.forward_features(imgs), pre_logits=True), pooled)
        # Averaging normed tokens instead (what the pretrained norm would do) is a different model.
        normed = F.layer_norm(tokens[:, 1:], (32,), model.fc_norm.weight, model.fc_norm.bias, eps=1e-6).mean(dim=1)
        assert not torch.allclose(model(imgs), model.head(normed), atol=1e-3)
    assert model.norm is None and not any(key.startswith("norm.") for key in model.state_dict())


def test_class_token_mode_classifies_the_class_token_after_the_final_norm():
    model, imgs = classifier(global_pool=False), images()
    with torch.no_grad():
        tokens = model.run_blocks(torch.cat(model.embed(imgs)[::-1], dim=1))
        expected = model.head(F.layer_norm(tokens[:, 0], (32,), model.norm.weight, model.norm.bias, eps=1e-6))
        torch.testing.assert_close(model(imgs), expected)
        assert model.fc_norm is None and not any(key.startswith("fc_norm") for key in model.state_dict())


def test_drop_path_is_active_only_in_training():
    model = classifier(drop_path_rate=0.5)
    reference = classifier(drop_path_rate=0.0)
    imgs = images()
    assert [block.drop_path.drop_prob for block in model.blocks] == [0.0, 0.5]  # rises linearly from 0
    with torch.no_grad():
        torch.testing.assert_close(model(imgs), reference(imgs), rtol=0, atol=0)
        model.train()
        runs = [model(imgs) for _ in range(6)]
    assert any(not torch.equal(run, runs[0]) for run in runs[1:])


def test_another_image_size_interpolates_the_learned_table():
    model = classifier()
    with torch.no_grad():
        model.pos_embed.normal_()  # a learned table: not sin-cos
        wide = MAEViTClassifier(TINY.replace(img_size=(48, 64)), num_classes=10).eval()
        wide.load_state_dict(model.state_dict() | {"pos_embed": resize_pos_embed(model.pos_embed, (6, 8))})
        torch.testing.assert_close(model(images(48, 64)), wide(images(48, 64)), rtol=0, atol=0)


def test_no_weight_decay_names_the_official_tokens():
    assert classifier().no_weight_decay() == {"pos_embed", "cls_token"}


@pytest.mark.parametrize(("value", "message"), [(-3, "got -3"), (2.0, "got 2.0"), (True, "got True")])
def test_num_classes_must_be_an_int_of_zero_or_more(value, message):
    with pytest.raises(ValueError, match=rf"num_classes must be an int >= 0 \(0: no head\), {message}"):
        MAEViTClassifier(TINY, num_classes=value)


def test_no_classes_builds_a_model_without_a_head_that_returns_pooled_features():
    model = classifier(num_classes=0)
    assert isinstance(model.head, torch.nn.Identity) and model(images()).shape == (2, TINY.embed_dim)


@pytest.mark.parametrize(("value", "pool"), [(True, "avg"), ("avg", "avg"), (False, "token"), ("token", "token")])
def test_global_pool_takes_a_bool_or_timm_s_pool_names(value, pool):
    model = MAEViTClassifier(TINY, global_pool=value)
    avg = pool == "avg"
    assert (model.pool, model.global_pool, model.fc_norm is not None, model.norm is None) == (pool, avg, avg, avg)


@pytest.mark.parametrize("value", ["max", None, 1])
def test_global_pool_must_be_a_bool_or_a_pool_name(value):
    with pytest.raises(ValueError, match=rf"global_pool must be a bool or one of \('token', 'avg'\), got {value!r}"):
        MAEViTClassifier(TINY, global_pool=value)


def test_fc_norm_chooses_the_norm_after_the_pool_independently_of_the_pooling():
    model = MAEViTClassifier(TINY, global_pool="token", fc_norm=True)
    assert model.fc_norm is not None and model.norm is None and model.pool == "token"
    with pytest.raises(ValueError, match="fc_norm must be None or a bool, got 'yes'"):
        MAEViTClassifier(TINY, fc_norm="yes")


# --- factories -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "width", "depth", "patch", "drop_path"),
    [
        (vit_base_patch16, 768, 12, 16, 0.1),
        (vit_large_patch16, 1024, 24, 16, 0.2),
        (vit_huge_patch14, 1280, 32, 14, 0.3),
    ],
)
def test_factories_build_the_paper_models_with_its_drop_path(factory, width, depth, patch, drop_path):
    with torch.device("meta"):
        model = factory()
    assert (model.config.embed_dim, model.config.depth, model.config.patch_size) == (width, depth, patch)
    assert model.head.weight.shape == (1000, width) and model.global_pool
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(drop_path)


def test_factory_keywords_and_overrides():
    model = vit_base_patch16(num_classes=5, global_pool=False, drop_path_rate=0.0, embed_dim=32, depth=2, num_heads=4)
    assert model.head.weight.shape == (5, 32) and not model.global_pool and len(model.blocks) == 2
    assert create_classifier("mae_vit_tiny", depth=1).blocks[0].drop_path.drop_prob == 0.0


def test_factory_refuses_weights_of_another_width(tmp_path):
    folder = tiny_model().save_pretrained(tmp_path / "tiny")
    with pytest.raises(ValueError, match=r"pretrained must be weights of mae_vit_base_patch16.*'embed_dim': 32"):
        vit_base_patch16(pretrained=folder)


def test_interpolate_sincos_needs_pretrained_weights():
    with pytest.raises(ValueError, match="interpolate_sincos must be False without pretrained weights"):
        create_classifier("mae_vit_tiny", interpolate_sincos=True, depth=1)


# --- loading -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("global_pool", [True, False])
def test_official_fine_tuned_checkpoint_loads_strictly_with_its_head_and_pool(tmp_path, global_pool):
    model = classifier(global_pool=global_pool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = MAEViTClassifier.from_pretrained(official_file(tmp_path, model), num_heads=4)
    assert (loaded.num_classes, loaded.global_pool) == (10, global_pool)
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    assert isinstance(loaded.pos_embed, torch.nn.Parameter) and loaded.pos_embed.requires_grad
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images()), model(images()))


def _assert_fresh(head: torch.nn.Linear) -> None:
    assert head.weight.std().item() == pytest.approx(2e-5, rel=0.5) and not head.bias.any()


@pytest.mark.parametrize("family", ["ours", "official", "transformers", "timm"])
def test_pre_training_weights_load_with_only_head_and_fc_norm_fresh(tmp_path, family, caplog):
    mae = tiny_model()
    files = {
        "ours": lambda: mae.save_pretrained(tmp_path / "ours"),
        "official": lambda: official_file(tmp_path, mae, "mae_pretrain_vit_base_full.pth"),
        "transformers": lambda: place(transformers_files(mae), tmp_path, "path")[0],
        "timm": lambda: place(timm_files(tiny_encoder()), tmp_path, "path")[0],
    }
    with warnings.catch_warnings(), caplog.at_level("INFO"):
        warnings.simplefilter("error")  # nothing missing but the new head: no warning
        loaded = MAEViTClassifier.from_pretrained(files[family](), num_classes=7, num_heads=4, drop_path_rate=0.1)
    assert "freshly initialised by design: [fc_norm.bias, fc_norm.weight, head.bias, head.weight]" in caplog.text
    expected = {k: v for k, v in encoder_part(mae.state_dict()).items() if k not in NORM}
    assert_same_tensors({k: v for k, v in loaded.state_dict().items() if k in expected}, expected)
    assert loaded.num_classes == 7 and loaded.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    _assert_fresh(loaded.head)
    assert torch.equal(loaded.fc_norm.weight, torch.ones(32)) and not loaded.fc_norm.bias.any()


def test_class_token_classifier_keeps_the_pretrained_norm(tmp_path):
    mae = tiny_model()
    loaded = MAEViTClassifier.from_pretrained(mae.save_pretrained(tmp_path / "ours"), global_pool=False)
    assert_same_tensors(
        {k: v for k, v in loaded.state_dict().items() if k not in HEAD},
        {k: v for k, v in encoder_part(mae.state_dict()).items()},
    )


def test_only_head_and_fc_norm_may_be_missing(tmp_path):
    state = {k: v for k, v in encoder_part(tiny_model().state_dict()).items() if k != "patch_embed.proj.bias"}
    (tmp_path / "mae_pretrain_vit_base.pth").write_bytes(pickled({"model": state}))
    with pytest.raises(ValueError, match=r"missing \[patch_embed\], unexpected \[\]"):
        MAEViTClassifier.from_pretrained(tmp_path / "mae_pretrain_vit_base.pth", num_heads=4)


def test_a_head_for_another_number_of_classes_is_replaced(tmp_path):
    model = classifier(num_classes=10)
    loaded = MAEViTClassifier.from_pretrained(official_file(tmp_path, model), num_heads=4, num_classes=3)
    assert loaded.head.weight.shape == (3, 32)
    _assert_fresh(loaded.head)
    kept = model.state_dict().keys() - HEAD
    assert_same_tensors({k: loaded.state_dict()[k] for k in kept}, {k: model.state_dict()[k] for k in kept})


def test_load_pretrained_refuses_a_checkpoint_of_another_width_and_changes_nothing(tmp_path):
    model = MAEViTClassifier(TINY.replace(embed_dim=64), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folder = tiny_model().save_pretrained(tmp_path / "tiny")
    with pytest.raises(
        ValueError, match=r"records other settings than the model's: embed_dim: checkpoint 32, model 64\. "
    ):
        model.load_pretrained(folder)
    assert_same_tensors(model.state_dict(), before)


def test_sincos_table_for_another_size_is_regenerated_exactly_by_default(tmp_path):
    folder = tiny_model().save_pretrained(tmp_path / "tiny")  # a 32 px checkpoint, as a 224 px one
    loaded = MAEViTClassifier.from_pretrained(folder, img_size=64)  # into a 64 px model, as 448 px
    assert torch.equal(loaded.pos_embed[0], sincos_pos_embed_2d(32, 8, cls_token=True))
    assert loaded(images(64, 64)).shape == (2, 1000)


def test_interpolate_sincos_resizes_the_table_as_the_official_code(tmp_path):
    mae = tiny_model()
    loaded = MAEViTClassifier.from_pretrained(
        mae.save_pretrained(tmp_path / "tiny"), img_size=64, interpolate_sincos=True
    )
    assert torch.equal(loaded.pos_embed, resize_pos_embed(mae.pos_embed, 8))
    assert not torch.allclose(loaded.pos_embed[0], sincos_pos_embed_2d(32, 8, cls_token=True), atol=1e-2)


def test_learned_table_of_a_fine_tuned_checkpoint_is_interpolated(tmp_path):
    model = classifier()
    with torch.no_grad():
        model.pos_embed.add_(0.001 * torch.randn_like(model.pos_embed))  # fine-tuned: close to sin-cos, learned
    loaded = MAEViTClassifier.from_pretrained(official_file(tmp_path, model), num_heads=4, img_size=64)
    assert torch.equal(loaded.pos_embed, resize_pos_embed(model.pos_embed.detach(), 8))
    assert_same_tensors(loaded.head.state_dict(), model.head.state_dict())


def test_fine_tuned_classifier_is_still_refused_by_the_mae_models(tmp_path):
    path = official_file(tmp_path, classifier())
    for model_class in (MAEEncoder, MaskedAutoencoderViT):
        with pytest.raises(ValueError, match="holds a fine-tuned classifier.*load it with MAEViTClassifier"):
            model_class.from_pretrained(path, num_heads=4, decoder_num_heads=2)


def test_interpolate_sincos_is_refused_for_models_with_fixed_tables(tmp_path):
    folder = tiny_model().save_pretrained(tmp_path / "tiny")
    with pytest.raises(ValueError, match="interpolate_sincos must be False for a model with fixed sin-cos tables"):
        MAEEncoder(TINY).load_pretrained(folder, interpolate_sincos=True)


def test_save_pretrained_round_trip_keeps_head_and_pool(tmp_path):
    model = classifier(global_pool=False, num_classes=4)
    loaded = MAEViTClassifier.from_pretrained(model.save_pretrained(tmp_path / "cls"))
    assert (loaded.num_classes, loaded.global_pool) == (4, False)
    assert_same_tensors(loaded.state_dict(), model.state_dict())


@pytest.mark.parametrize(("built", "reset"), [(True, "token"), (False, "avg"), (True, "avg")])
@pytest.mark.parametrize("num_classes", [3, 0])
def test_after_reset_classifier_every_state_says_the_new_pool_and_save_reload_reproduces_the_model(
    tmp_path, built, reset, num_classes
):
    model = classifier(global_pool=built)
    model.reset_classifier(num_classes, reset)
    # Only the pooling changes: the norms stay as built (timm's rule).
    assert (model.pool, model.global_pool) == (reset, reset == "avg")
    assert (model.fc_norm is not None, model.norm is None) == (built, built)
    assert model.checkpoint_options == {"num_classes": num_classes, "global_pool": reset, "fc_norm": built}
    loaded = MAEViTClassifier.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert (loaded.pool, loaded.num_classes, loaded.fc_norm is not None, loaded.norm is None) == (
        reset,
        num_classes,
        built,
        built,
    )
    assert set(loaded.state_dict()) == set(model.state_dict())
    imgs = images()
    torch.testing.assert_close(loaded(imgs), model.eval()(imgs), rtol=0, atol=0)


def test_the_loading_rules_follow_the_model_s_norms_not_its_construction_argument():
    model = classifier(global_pool=True)
    model.reset_classifier(10, "token")
    rules = model.checkpoint_rules
    assert "norm." in rules.unused and rules.fresh == ("head.", "fc_norm.")
    token = classifier(global_pool=False)
    assert "norm." not in token.checkpoint_rules.unused and token.checkpoint_rules.fresh == ("head.",)


# --- from_model: an in-memory model converted with exactly the rules of save_pretrained + from_pretrained ---------


def _both_routes(cls, source, tmp_path, **kwargs):
    """``cls.from_model(source, **kwargs)`` and ``cls.from_pretrained(source.save_pretrained(...), **kwargs)``, from
    the same random state (a fresh head draws from it)."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        in_memory = cls.from_model(source, **kwargs)
    folder = source.save_pretrained(tmp_path / "saved")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        on_disk = cls.from_pretrained(folder, **kwargs)
    return in_memory, on_disk


def _trained_classifier() -> MAEViTClassifier:
    model = MAEViTClassifier(TINY, num_classes=4, global_pool=False)
    torch.nn.init.normal_(model.head.weight)  # a head that differs from any fresh one
    model.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0}
    return model


@pytest.mark.parametrize(
    ("cls", "source", "kwargs"),
    [
        (MAEViTClassifier, tiny_model, {"num_classes": 10}),
        (MAEViTClassifier, tiny_model, {"num_classes": 3, "img_size": 48, "drop_path_rate": 0.1}),
        (MAEViTClassifier, tiny_model, {"global_pool": False, "interpolate_sincos": True, "img_size": 64}),
        (MAEViTClassifier, tiny_encoder, {}),
        (MAEViTClassifier, _trained_classifier, {}),
        (MAEViTClassifier, _trained_classifier, {"num_classes": 7}),
        (MAEEncoder, tiny_model, {"img_size": 48}),
        (MaskedAutoencoderViT, tiny_encoder, {"strict": False}),
    ],
)
def test_from_model_equals_save_pretrained_then_from_pretrained_bit_for_bit(tmp_path, cls, source, kwargs):
    in_memory, on_disk = _both_routes(cls, source(), tmp_path, **kwargs)
    assert type(in_memory) is type(on_disk) is cls
    assert in_memory.config == on_disk.config
    assert in_memory.checkpoint_options == on_disk.checkpoint_options
    assert dict(in_memory.pretrained_cfg) == dict(on_disk.pretrained_cfg)
    assert not in_memory.training and not on_disk.training
    assert_same_tensors(in_memory.state_dict(), on_disk.state_dict())


def test_from_model_refuses_what_from_pretrained_refuses_with_the_same_message(tmp_path):
    mae = tiny_model()
    folder = mae.save_pretrained(tmp_path / "saved")
    encoder = tiny_encoder()
    encoder_folder = encoder.save_pretrained(tmp_path / "encoder")
    cases = [
        (MAEViTClassifier, mae, folder, {"embed_dim": 64}),
        (MaskedAutoencoderViT, encoder, encoder_folder, {}),  # encoder-only weights, strict
        (MaskedAutoencoderViT, _trained_classifier(), None, {}),  # a fine-tuned classifier is no MAE
        (MaskedAutoencoderViT, mae, folder, {"interpolate_sincos": True}),
    ]
    for cls, source, saved, kwargs in cases:
        saved = source.save_pretrained(tmp_path / "other") if saved is None else saved
        with pytest.raises(ValueError) as on_disk:
            cls.from_pretrained(saved, **kwargs)
        with pytest.raises(ValueError) as in_memory:
            cls.from_model(source, **kwargs)
        expected = str(on_disk.value).replace(str(saved), f"the in-memory {type(source).__name__}")
        assert str(in_memory.value) == expected


def test_from_model_copies_the_weights_and_takes_a_model_of_this_library_only():
    mae = tiny_model()
    before = {key: tensor.clone() for key, tensor in mae.state_dict().items()}
    classifier = MAEViTClassifier.from_model(mae, num_classes=2)
    with torch.no_grad():
        for parameter in classifier.parameters():
            parameter.add_(1.0)
    assert_same_tensors(mae.state_dict(), before)
    with pytest.raises(ValueError, match=r"^model must be a model of this library .*, got Linear$"):
        MAEViTClassifier.from_model(torch.nn.Linear(2, 2))
