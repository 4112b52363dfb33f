"""VideoMAE's checkpoints (`transformers`' VideoMAEForPreTraining files) load with every key, and predict as it does."""

import json
import logging

import pytest
import torch
from conftest import TINY
from hub_cache import add_to_cache, pickled, read_folder, tiny_model, videomae_files, write_folder
from safetensors.torch import load
from transformers import VideoMAEConfig, VideoMAEForPreTraining

from masked_autoencoder import MAEEncoder, MaskedAutoencoderViT
from masked_autoencoder.hub.known_weights import known_by_repo_id

CLIPS = TINY.replace(num_frames=4, tubelet_size=2)
ATOL = 1e-5


def theirs(**changes: object) -> VideoMAEForPreTraining:
    """A `transformers` VideoMAE of CLIPS' geometry with random weights, biases included (they start at zero)."""
    fields = dict(
        image_size=32,
        patch_size=8,
        num_channels=3,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
        use_mean_pooling=False,  # as the published pre-training checkpoints: the encoder ends with a norm
        norm_pix_loss=False,
    )
    torch.manual_seed(0)
    model = VideoMAEForPreTraining(VideoMAEConfig(**(fields | changes))).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("bias", "q_bias", "v_bias")):
                parameter.normal_(0, 0.1)
    return model


def saved(model: VideoMAEForPreTraining, folder) -> dict[str, bytes]:
    """What ``save_pretrained`` writes today (``model.safetensors``, ``q_bias`` / ``v_bias`` keys, ``qv_bias``)."""
    model.save_pretrained(folder)
    return read_folder(folder)


def inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips as VideoMAE takes them, (B, T, C, H, W), and a tube mask (B, L) of 24 removed tubelets in 32."""
    generator = torch.Generator().manual_seed(1)
    video = torch.randn(batch, 4, 3, 32, 32, generator=generator)
    removed = torch.rand(batch, 2, 16, generator=generator).argsort(-1).argsort(-1) < 12  # 12 a slot, tubes
    return video, removed.flatten(1)


def predictions(ours: MaskedAutoencoderViT, reference: VideoMAEForPreTraining) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' predictions for the removed tubelets, in image order: theirs, ours (B, removed, t*P*P*C)."""
    video, mask = inputs()
    with torch.no_grad():
        logits = reference(video, bool_masked_pos=mask).logits
        pred = ours(video.transpose(1, 2), mask=mask).pred
    return logits, pred[mask].reshape(logits.shape)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_the_loss_is_videomaes_on_either_target(tmp_path, norm_pix_loss):
    reference = theirs(norm_pix_loss=norm_pix_loss)
    ours = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "copy", saved(reference, tmp_path / "s")))
    assert (ours.config.loss_target, ours.config.norm_pix_loss) == ("videomae", norm_pix_loss)
    reference.decoder.norm.eps = ours.config.layer_norm_eps
    video, mask = inputs()
    with torch.no_grad():
        expected = reference(video, bool_masked_pos=mask).loss
        loss = ours(video.transpose(1, 2), mask=mask).loss
    torch.testing.assert_close(loss, expected, rtol=0, atol=ATOL)


def test_transformers_files_load_every_key_and_predict_as_transformers(tmp_path, caplog):
    reference = theirs()
    with caplog.at_level(logging.INFO, logger="masked_autoencoder"):
        ours = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "copy", saved(reference, tmp_path / "s")))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing missing, unexpected or new
    assert "new" not in caplog.text and "fresh" not in caplog.text
    config = ours.config
    assert (config.num_frames, config.tubelet_size, config.video_pos_embed, config.mask_ratio) == (4, 2, "flat", 0.9)
    assert ours.cls_token is None and ours.num_prefix_tokens == 0
    # transformers' decoder norm takes torch's default eps (1e-5), not the config's: the same for this comparison.
    reference.decoder.norm.eps = config.layer_norm_eps
    logits, pred = predictions(ours, reference)
    torch.testing.assert_close(pred, logits, rtol=0, atol=ATOL)


def test_the_encoder_equals_transformers_videomae_model(tmp_path):
    reference = theirs()
    encoder = MAEEncoder.from_pretrained(write_folder(tmp_path / "copy", saved(reference, tmp_path / "s")))
    video, mask = inputs()
    with torch.no_grad():
        hidden = reference.videomae(video, bool_masked_pos=mask).last_hidden_state
        latent, _, _ = encoder.forward_encoder(video.transpose(1, 2), mask=mask)
        every = reference.videomae(video).last_hidden_state
        features = encoder.forward_features(video.transpose(1, 2))
    torch.testing.assert_close(latent, hidden, rtol=0, atol=ATOL)
    torch.testing.assert_close(features, every, rtol=0, atol=ATOL)


def test_the_hubs_older_layout_loads_by_repo_id_as_the_same_weights(tmp_path):
    files = saved(theirs(), tmp_path / "s")
    config = json.loads(files["config.json"])
    config["qkv_bias"] = config.pop("qv_bias")  # the older configs' name
    older = {"config.json": json.dumps(config).encode(), "pytorch_model.bin": pickled(load(files["model.safetensors"]))}
    add_to_cache(tmp_path / "hub", "someone/videomae-tiny", older)
    by_id = MaskedAutoencoderViT.from_pretrained("someone/videomae-tiny", cache_dir=tmp_path / "hub")
    by_path = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "new", files))
    torch.testing.assert_close(by_id.state_dict(), by_path.state_dict(), rtol=0, atol=0)


def test_a_videomae_without_attention_biases_loads_with_zero_biases(tmp_path):
    reference = theirs(qv_bias=False)
    ours = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "copy", saved(reference, tmp_path / "s")))
    assert not ours.blocks[0].attn.qkv.bias.any()
    reference.decoder.norm.eps = ours.config.layer_norm_eps
    logits, pred = predictions(ours, reference)
    torch.testing.assert_close(pred, logits, rtol=0, atol=ATOL)


def test_a_videomae_saved_with_mean_pooling_has_no_final_norm_and_round_trips(tmp_path):
    reference = theirs(use_mean_pooling=True)  # transformers' default: no encoder norm in the file
    ours = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "copy", saved(reference, tmp_path / "s")))
    assert ours.norm is None
    reference.decoder.norm.eps = ours.config.layer_norm_eps
    logits, pred = predictions(ours, reference)
    torch.testing.assert_close(pred, logits, rtol=0, atol=ATOL)
    again = MaskedAutoencoderViT.from_pretrained(ours.save_pretrained(tmp_path / "ours"))
    assert again.norm is None and again.config == ours.config


def test_published_videomae_weights_load_by_repo_id_with_the_official_eps(tmp_path):
    model = tiny_model(CLIPS.replace(video_pos_embed="flat", norm_pix_loss=True, layer_norm_eps=1e-12))
    add_to_cache(tmp_path, "MCG-NJU/videomae-base", videomae_files(model, old_layout=True))
    loaded = MaskedAutoencoderViT.from_pretrained("MCG-NJU/videomae-base", cache_dir=tmp_path)
    assert loaded.config.layer_norm_eps == 1e-6  # the original VideoMAE code's, whatever the Hub config says
    assert loaded.pretrained_cfg["license"] == known_by_repo_id("MCG-NJU/videomae-base").license == "cc-by-nc-4.0"
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "relu"}, r"config hidden_act must be 'gelu'"),
        ({"model_type": "videomae", "decoder_intermediate_size": 48}, r"config decoder_intermediate_size must be"),
    ],
)
def test_videomae_configs_we_cannot_represent_are_refused(tmp_path, change, message):
    files = videomae_files(tiny_model(CLIPS.replace(video_pos_embed="flat")))
    files["config.json"] = json.dumps(json.loads(files["config.json"]) | change).encode()
    with pytest.raises(ValueError, match=message):
        MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "bad", files))
