"""Video MAEs: clips (B, C, T, H, W) in tubelets, space-time and tube masking, the backbone API, and volumes."""

import math
from unittest import mock

import pytest
import torch
from conftest import TINY

from masked_autoencoder import (
    BlockMasking,
    GridMasking,
    MAEConfig,
    MAEEncoder,
    MAEViTClassifier,
    MaskedAutoencoderViT,
    RandomMasking,
    TubeMasking,
    create_model,
    list_models,
    patchify,
    reconstruct,
)
from masked_autoencoder.loss import channel_normalized_pixels
from masked_autoencoder.pos_embed import sincos_pos_embed_3d, sincos_pos_embed_flat

CLIPS = TINY.replace(num_frames=4, tubelet_size=2)  # a (2, 4, 4) grid of 2 x 8 x 8 tubelets: L = 32


def clips(batch: int = 2, config: MAEConfig = CLIPS, frames: int | None = None, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, config.in_chans, frames or config.num_frames, *config.image_hw)
    return torch.randn(shape, generator=generator)


def seeded(model_class: type, config: MAEConfig = CLIPS, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return model_class(config, **options).eval()


def test_a_video_config_has_a_tubelet_grid_90_percent_masking_and_no_image_table():
    assert (CLIPS.is_video, TINY.is_video) == (True, False)
    assert (CLIPS.tubelet, CLIPS.token_grid, CLIPS.patch_dim) == ((2, 8, 8), (2, 4, 4), 2 * 8 * 8 * 3)
    assert (CLIPS.token_patch, TINY.token_patch) == ((2, 8, 8), (8, 8))  # what patchify takes: tubelet, patch
    assert (CLIPS.mask_ratio, TINY.mask_ratio) == (0.9, 0.75)  # the space-time MAE's and VideoMAE's
    assert TINY.replace(num_frames=4, tubelet_size=2, mask_ratio=0.5).mask_ratio == 0.5
    assert MAEConfig.from_dict(CLIPS.to_dict()) == CLIPS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_frames": 5, "tubelet_size": 2}, r"num_frames must be a multiple of tubelet_size=2, got 5"),
        ({"num_frames": 0}, r"num_frames must be a positive int, got 0"),
        ({"video_pos_embed": "flat"}, r"video_pos_embed must be one of \('separable',\) \(images"),
        ({"num_frames": 2, "video_pos_embed": "1d"}, r"video_pos_embed must be one of \('separable', 'flat'\)"),
        ({"num_frames": 2, "embed_dim": 40, "num_heads": 4}, r"embed_dim must be a multiple of 16 \(separable"),
    ],
)
def test_bad_video_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**fields)


def test_a_video_mae_predicts_every_tubelet_and_scores_the_removed_ones():
    model = seeded(MaskedAutoencoderViT)
    out = model(clips())
    assert out.pred.shape == (2, 32, CLIPS.patch_dim)
    assert out.mask.shape == (2, 32) and out.mask.sum(1).tolist() == [29, 29]  # int(32 * 0.1) = 3 kept
    assert out.latent.shape == (2, 3, 32)  # no class token
    target = patchify(clips(), (2, 8, 8))
    expected = ((out.pred - target) ** 2).mean(-1).mul(out.mask).sum() / out.mask.sum()
    torch.testing.assert_close(out.loss, expected)
    assert "cls_token" not in model.state_dict() and "pos_embed" not in model.state_dict()  # the tables are not saved


def test_the_position_tables_are_the_chosen_kind_for_the_clips_grid():
    for kind, table in (
        ("separable", sincos_pos_embed_3d(32, (2, 4, 4))),
        ("flat", sincos_pos_embed_flat(32, 32)),
    ):
        model = seeded(MAEEncoder, CLIPS.replace(video_pos_embed=kind))
        torch.testing.assert_close(model.pos_embed[0], table, rtol=0, atol=0)
        longer = model.position_table((4, 2, 6))  # other frame counts and sizes: computed, not interpolated
        expected = sincos_pos_embed_3d(32, (4, 2, 6)) if kind == "separable" else sincos_pos_embed_flat(32, 48)
        torch.testing.assert_close(longer[0], expected, rtol=0, atol=0)


def test_clips_of_other_lengths_and_sizes_run_with_their_own_tables():
    model = seeded(MaskedAutoencoderViT)
    longer = clips(batch=1, frames=8)
    out = model(longer)
    assert out.pred.shape == (1, 4 * 4 * 4, CLIPS.patch_dim)
    features = model.forward_intermediates(torch.randn(1, 3, 6, 16, 24), indices=1, intermediates_only=True)
    assert features[0].shape == (1, 32, 3, 2, 3)


def test_the_backbone_api_lays_features_out_over_time_and_space():
    encoder = seeded(MAEEncoder)
    video = clips()
    final, maps = encoder.forward_intermediates(video, indices=[0, 1])
    assert final.shape == (2, 32, 32) and [m.shape for m in maps] == [(2, 32, 2, 4, 4)] * 2
    torch.testing.assert_close(final, encoder.forward_features(video))
    patches = encoder.embed(video)[0]  # no class token: the patch tokens are everything
    torch.testing.assert_close(encoder.transform(patches), final)
    pooled = encoder.norm(encoder.run_blocks(patches).mean(1))
    torch.testing.assert_close(encoder.forward_pooled(video, "avg"), pooled)
    with pytest.raises(ValueError, match=r"pool must be one of \('avg',\), got 'token'"):
        encoder.forward_pooled(video, "token")


def test_a_video_classifier_pools_the_average_and_keeps_the_fixed_table():
    classifier = seeded(MAEViTClassifier, num_classes=5)
    assert classifier(clips()).shape == (2, 5)
    assert not isinstance(classifier.pos_embed, torch.nn.Parameter)
    with pytest.raises(ValueError, match=r"global_pool must be 'avg' for clips"):
        MAEViTClassifier(CLIPS, global_pool="token")


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (torch.zeros(2, 3, 32, 32), r"imgs must be a 5-D tensor of clips \(B, C, T, H, W\)"),
        (torch.zeros(2, 3, 5, 32, 32), r"imgs must be frames, height and width divisible by the tubelet \(2, 8, 8\)"),
        (torch.zeros(2, 1, 4, 32, 32), r"imgs must be 3 channels"),
    ],
)
def test_bad_clips_are_refused_before_any_computation(video, message):
    with pytest.raises(ValueError, match=message):
        seeded(MaskedAutoencoderViT)(video)


def test_a_ratio_that_keeps_no_tubelet_is_refused():
    with pytest.raises(ValueError, match=r"mask_ratio must be a ratio that keeps at least one of the 32 patches"):
        seeded(MaskedAutoencoderViT)(clips(), mask_ratio=0.99)


def test_tube_masking_removes_the_same_patches_in_every_time_slot_with_videomaes_count():
    out = seeded(MaskedAutoencoderViT)(clips(), masking=TubeMasking(0.75))
    per_slot = out.mask.view(2, 2, 16)
    assert torch.equal(per_slot[:, 0], per_slot[:, 1])
    assert per_slot[:, 0].sum(1).tolist() == [12, 12]  # int(0.75 * 16) removed per slot
    assert TubeMasking().mask_ratio == 0.9
    # VideoMAE-Base: 14 x 14 patches a frame, 90%: int(176.4) = 176 removed, 20 kept in each of 8 slots.
    assert TubeMasking().kept_count(8 * 196, 0.9, (8, 14, 14)) == 8 * 20


def test_tube_masking_takes_a_ratio_per_clip():
    out = seeded(MaskedAutoencoderViT)(clips(), masking=TubeMasking(), mask_ratio=torch.tensor([0.5, 0.75]))
    assert out.mask.sum(1).tolist() == [16.0, 24.0]
    per_slot = out.mask.view(2, 2, 16)
    assert torch.equal(per_slot[:, 0], per_slot[:, 1])


def test_random_space_time_masking_draws_over_every_tubelet():
    generator = torch.Generator().manual_seed(0)
    out = RandomMasking(0.5)(torch.zeros(64, 32, 4), grid=(2, 4, 4), generator=generator)
    assert out.mask.sum(1).eq(16).all()
    assert not torch.equal(out.mask.view(64, 2, 16)[:, 0], out.mask.view(64, 2, 16)[:, 1])  # slots differ


@pytest.mark.parametrize("strategy", [BlockMasking(0.5, min_block=2), GridMasking()])
def test_two_dimensional_strategies_refuse_a_clips_grid(strategy):
    with pytest.raises(ValueError, match=r"grid must be an image's \(h, w\) grid"):
        strategy(torch.zeros(1, 32, 4), grid=(2, 4, 4))


def test_windowed_attention_is_refused_for_clips():
    with pytest.raises(ValueError, match=r"window_size must be None for clips"):
        MAEEncoder(CLIPS, window_size=2)


def test_reconstruct_reassembles_clips_and_marks_removed_tubelets():
    model = seeded(MaskedAutoencoderViT)
    video = clips()
    out = reconstruct(model, video, masking=TubeMasking(0.5))
    assert out.pasted.shape == video.shape and out.mask.shape == (2, 1, 4, 32, 32)
    visible = out.mask == 0
    assert torch.equal(out.pasted.masked_select(visible), video.masked_select(visible))
    assert torch.equal(out.mask[:, :, 0], out.mask[:, :, 3])  # one spatial mask for every frame


def test_save_and_from_pretrained_round_trip_a_video_mae(tmp_path):
    model = seeded(MaskedAutoencoderViT, CLIPS.replace(video_pos_embed="flat"))
    model.save_pretrained(tmp_path)
    loaded = MaskedAutoencoderViT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    noise = torch.rand(2, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(clips(), noise=noise).pred, model(clips(), noise=noise).pred, rtol=0, atol=0)


def test_a_registered_video_model_has_videomae_bases_geometry():
    assert "videomae_vit_base_patch16" in list_models()
    with torch.device("meta"):
        model = create_model("videomae_vit_base_patch16")
    config = model.config
    assert (config.embed_dim, config.depth, config.num_heads, config.patch_hw) == (768, 12, 12, (16, 16))
    assert (config.num_frames, config.tubelet_size, config.image_hw, config.mask_ratio) == (16, 2, (224, 224), 0.9)
    assert (config.decoder_embed_dim, config.decoder_depth, config.video_pos_embed) == (384, 4, "flat")
    assert math.prod(config.token_grid) == 1568


def test_a_volume_is_a_clip_with_depth_for_time_and_one_channel():
    volume = TINY.replace(in_chans=1, num_frames=16, tubelet_size=4)  # CT / MRI: (B, 1, D, H, W)
    model = seeded(MaskedAutoencoderViT, volume)
    scans = torch.randn(2, 1, 16, 32, 32)
    out = model(scans)
    assert out.pred.shape == (2, 4 * 4 * 4, 4 * 8 * 8) and out.loss.isfinite()
    encoder = seeded(MAEEncoder, volume)
    assert encoder.forward_intermediates(scans, indices=1, intermediates_only=True)[0].shape == (2, 32, 4, 4, 4)


def test_weights_of_another_tubelet_are_refused_naming_it_even_without_strict(tmp_path):
    seeded(MaskedAutoencoderViT).save_pretrained(tmp_path)
    model = MaskedAutoencoderViT(CLIPS.replace(num_frames=6, tubelet_size=3))
    with pytest.raises(ValueError, match=r"tubelet_size: checkpoint 2, model 3"):
        model.load_pretrained(tmp_path, strict=False)


def test_a_video_mae_becomes_a_video_classifier_in_memory_as_on_disk(tmp_path):
    mae = seeded(MaskedAutoencoderViT)
    in_memory = MAEViTClassifier.from_model(mae, num_classes=4)
    on_disk = MAEViTClassifier.from_pretrained(mae.save_pretrained(tmp_path), num_classes=4)
    assert in_memory.config == on_disk.config and in_memory.config.is_video
    shared = set(in_memory.state_dict()) - {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    for key in shared:
        assert torch.equal(in_memory.state_dict()[key], on_disk.state_dict()[key]), key


def test_videomaes_target_normalises_each_channel_of_a_tubelet_apart():
    target = torch.randn(2, 5, 4 * 3)  # (B, L, P*C), channel last
    normalised = channel_normalized_pixels(target, 3).view(2, 5, 4, 3)
    for channel in range(3):
        values = target.view(2, 5, 4, 3)[..., channel]
        expected = (values - values.mean(-1, keepdim=True)) / (values.std(-1, keepdim=True) + 1e-6)
        torch.testing.assert_close(normalised[..., channel], expected)


def test_a_perfect_videomae_target_prediction_reconstructs_the_clip():
    model = seeded(MaskedAutoencoderViT, CLIPS.replace(loss_target="videomae"))
    model.pretrained_cfg = {"mean": (0.2, 0.4, 0.6), "std": (0.5, 0.25, 2.0)}
    video = clips()
    perfect = patchify(model.in_data_units(video), CLIPS.tubelet)  # the pixels in the data's units
    with mock.patch.object(model, "_decode", return_value=perfect):
        out = reconstruct(model, video)
        assert model(video).loss == 0
    torch.testing.assert_close(out.pasted, video)
    torch.testing.assert_close(model.in_input_space(model.in_data_units(video)), video)
    with pytest.raises(ValueError, match=r"loss_target must be one of \('mae', 'videomae'\), got 'pixels'"):
        CLIPS.replace(loss_target="pixels")
