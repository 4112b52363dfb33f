import re

import pytest
import torch
from conftest import TINY

from masked_autoencoder import (
    BlockMasking,
    GridMasking,
    MAEOutput,
    MaskedAutoencoderViT,
    RandomMasking,
    mae_loss,
    patchify,
)


def _official_keys(depth: int, decoder_depth: int) -> set[str]:
    block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    per_block = [f"{m}.{p}" for m in block for p in ("weight", "bias")]
    keys = {"cls_token", "pos_embed", "mask_token", "decoder_pos_embed"}
    linear_like = ("patch_embed.proj", "norm", "decoder_embed", "decoder_norm", "decoder_pred")
    keys |= {f"{m}.{p}" for m in linear_like for p in ("weight", "bias")}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in per_block}
    keys |= {f"decoder_blocks.{i}.{k}" for i in range(decoder_depth) for k in per_block}
    return keys


def test_state_dict_keys_are_the_official_checkpoint_keys(tiny_model, tiny_config):
    assert set(tiny_model.state_dict()) == _official_keys(tiny_config.depth, tiny_config.decoder_depth)


def test_forward_returns_loss_pred_mask_ids_restore_and_latent(tiny_model, images):
    out = tiny_model(images)
    assert isinstance(out, MAEOutput)
    assert out.loss.shape == ()
    assert out.pred.shape == (2, 16, 8 * 8 * 3)
    assert out.mask.shape == (2, 16) and out.mask.sum().item() == 2 * 12
    assert out.ids_restore.shape == (2, 16)
    assert out.latent.shape == (2, 1 + 4, 32)


def test_forward_is_the_composition_of_the_public_pieces(tiny_model, images):
    noise = torch.rand(2, 16)
    out = tiny_model(images, noise=noise)
    latent, mask, ids_restore = tiny_model.forward_encoder(images, noise=noise)
    pred = tiny_model.forward_decoder(latent, ids_restore)
    loss = mae_loss(pred, patchify(images, 8), mask)
    assert torch.equal(out.latent, latent) and torch.equal(out.pred, pred)
    assert torch.equal(out.loss, loss) and torch.equal(out.loss, tiny_model.forward_loss(images, pred, mask))


def test_norm_pix_loss_changes_only_the_target(tiny_model, images):
    raw = tiny_model
    normed = MaskedAutoencoderViT(raw.config.replace(norm_pix_loss=True))
    normed.load_state_dict(raw.state_dict())
    noise = torch.rand(2, 16)
    out_raw, out_norm = raw(images, noise=noise), normed(images, noise=noise)
    assert torch.equal(out_raw.pred, out_norm.pred)
    expected = mae_loss(out_raw.pred, patchify(images, 8), out_raw.mask, norm_pix_loss=True)
    assert torch.equal(out_norm.loss, expected)


def test_same_generator_seed_gives_same_masks_loss_and_gradients(tiny_model, images):
    def run(seed):
        tiny_model.zero_grad()
        out = tiny_model(images, generator=torch.Generator().manual_seed(seed))
        out.loss.backward()
        return out, [p.grad.clone() for p in tiny_model.parameters()]

    (first, grads1), (second, grads2) = run(3), run(3)
    assert torch.equal(first.mask, second.mask) and torch.equal(first.loss, second.loss)
    assert all(torch.equal(a, b) for a, b in zip(grads1, grads2, strict=True))


def test_gradients_reach_every_trainable_parameter_and_position_tables_are_fixed(tiny_model, images):
    tiny_model(images).loss.backward()
    assert all(p.grad is not None for p in tiny_model.parameters())
    buffers = dict(tiny_model.named_buffers())
    assert set(buffers) == {"pos_embed", "decoder_pos_embed"}


def test_mask_ratio_zero_gives_zero_loss_and_all_tokens(tiny_model, images):
    out = tiny_model(images, mask_ratio=0.0)
    assert out.latent.shape[1] == 17 and out.loss.item() == 0.0


def test_caller_mask_drives_the_model(tiny_model, images):
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, ::2] = True
    out = tiny_model(images, mask=mask)
    assert torch.equal(out.mask, mask.float())
    assert out.latent.shape == (2, 1 + 8, 32)


def test_model_built_for_one_size_runs_on_another_exactly_like_a_model_built_for_it(tiny_model, tiny_config):
    wide = MaskedAutoencoderViT(tiny_config.replace(img_size=(32, 48)))
    weights = {k: v for k, v in tiny_model.state_dict().items() if "pos_embed" not in k}
    wide.load_state_dict(weights, strict=False)
    imgs, noise = torch.randn(2, 3, 32, 48), torch.rand(2, 24)
    expected, out = wide.eval()(imgs, noise=noise), tiny_model(imgs, noise=noise)
    assert out.pred.shape == (2, 24, 192)
    assert torch.equal(out.pred, expected.pred) and torch.equal(out.loss, expected.loss)


@pytest.mark.parametrize("in_chans", [1, 4, 13])
def test_any_channel_count_works(tiny_config, in_chans):
    model = MaskedAutoencoderViT(tiny_config, in_chans=in_chans)
    out = model(torch.randn(2, in_chans, 32, 32))
    assert out.pred.shape == (2, 16, 64 * in_chans)
    assert torch.isfinite(out.loss)


def test_non_square_patches_work(tiny_config):
    model = MaskedAutoencoderViT(tiny_config, img_size=(32, 48), patch_size=(8, 4))
    assert model(torch.randn(1, 3, 32, 48)).pred.shape == (1, 4 * 12, 8 * 4 * 3)


@pytest.mark.parametrize(
    ("imgs", "kwargs", "message"),
    [
        (torch.randn(3, 32, 32), {}, r"imgs must be a 4-D tensor \(B, C, H, W\), got a tensor of shape \(3, 32, 32\)"),
        (torch.randn(2, 1, 32, 32), {}, r"imgs must be 3 channels \(dim 1\), got a tensor of shape \(2, 1, 32, 32\)"),
        (torch.randn(2, 3, 30, 32), {}, r"imgs must be height and width divisible by the patch size \(8, 8\)"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {}, "imgs must be a floating-point tensor"),
        (torch.randn(2, 3, 32, 32), {"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\)"),
        (torch.randn(2, 3, 32, 32), {"noise": torch.rand(2, 17)}, r"noise must be a \(2, 16\) tensor"),
        (torch.randn(2, 3, 32, 32), {"mask": torch.ones(2, 16, dtype=torch.int32)}, "mask must be .* dtype torch.bool"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(tiny_model, imgs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(imgs, **kwargs)


def test_bad_decoder_input_raises_value_error(tiny_model, images):
    latent, _, ids_restore = tiny_model.forward_encoder(images)
    with pytest.raises(ValueError, match=re.escape("latent must be a (B, 1 + K, 32) tensor")):
        tiny_model.forward_decoder(latent[..., :8], ids_restore)
    with pytest.raises(ValueError, match="ids_restore must be a .* int64 tensor"):
        tiny_model.forward_decoder(latent, ids_restore.float())
    with pytest.raises(ValueError, match=r"grid_size must be a grid of h \* w = L = 16 patches, got \(4, 5\)"):
        tiny_model.forward_decoder(latent, ids_restore, (4, 5))


def test_config_and_keyword_overrides_combine(tiny_config):
    model = MaskedAutoencoderViT(tiny_config, norm_pix_loss=True)
    assert model.config == tiny_config.replace(norm_pix_loss=True)
    with pytest.raises(ValueError, match="config must be an MAEConfig or None, got dict"):
        MaskedAutoencoderViT({"depth": 2})


@pytest.mark.parametrize("strategy", [BlockMasking(0.5), GridMasking()])
def test_masking_strategy_at_construction_and_per_call(tiny_config, images, strategy):
    torch.manual_seed(0)
    built = MaskedAutoencoderViT(tiny_config, masking=strategy)
    torch.manual_seed(0)
    default = MaskedAutoencoderViT(tiny_config)
    seed = torch.Generator().manual_seed(4)
    out = built(images, generator=seed)
    again = default(images, masking=strategy, generator=torch.Generator().manual_seed(4))
    expected = strategy(torch.zeros(2, 16, 1), grid=(4, 4), generator=torch.Generator().manual_seed(4)).mask
    assert torch.equal(out.mask, expected) and torch.equal(again.mask, expected)
    torch.testing.assert_close(out.loss, again.loss)
    assert out.latent.shape == (2, 1 + int(16 - expected[0].sum()), tiny_config.embed_dim)
    assert isinstance(default.masking, RandomMasking) and built.masking is strategy


def test_masking_must_be_a_strategy(tiny_config, tiny_model, images):
    with pytest.raises(ValueError, match="masking must be None or a MaskingStrategy .*, got float"):
        MaskedAutoencoderViT(tiny_config, masking=0.5)
    with pytest.raises(ValueError, match="masking must be None or a MaskingStrategy .*, got str"):
        tiny_model(images, masking="block")


def test_a_ratio_per_image_gives_each_image_what_it_gets_alone(tiny_model, images):
    imgs = torch.cat([images, images.flip(0), images[:1]])  # 5 images
    noise, ratios = (
        torch.rand(5, 16, generator=torch.Generator().manual_seed(2)),
        torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9]),
    )
    out = tiny_model(imgs, mask_ratio=ratios, noise=noise)
    kept = [16, 12, 8, 4, 1]
    assert out.mask.sum(dim=1).tolist() == [16 - k for k in kept] and out.latent.shape == (5, 1 + 16, 32)
    for b, k in enumerate(kept):
        alone = tiny_model(imgs[b : b + 1], mask_ratio=float(ratios[b]), noise=noise[b : b + 1])
        torch.testing.assert_close(out.latent[b, : 1 + k], alone.latent[0], rtol=1e-5, atol=1e-5)
        assert not out.latent[b, 1 + k :].any()  # the padding leaves as zeros
        torch.testing.assert_close(out.pred[b], alone.pred[0], rtol=1e-5, atol=1e-5)
        own = mae_loss(out.pred[b : b + 1], patchify(imgs[b : b + 1], 8), out.mask[b : b + 1])
        torch.testing.assert_close(own, alone.loss, rtol=1e-5, atol=1e-6)


def test_a_ratio_per_image_trains_and_the_decoder_takes_the_mask(tiny_model, images):
    ratios = torch.tensor([0.25, 0.75])
    out = tiny_model.train()(images, mask_ratio=ratios, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(out.loss, list(tiny_model.parameters()))
    tiny_model.set_grad_checkpointing()
    again = tiny_model(images, mask_ratio=ratios, generator=torch.Generator().manual_seed(0))
    for plain, checkpointed in zip(grads, torch.autograd.grad(again.loss, list(tiny_model.parameters())), strict=True):
        torch.testing.assert_close(plain, checkpointed)
    tiny_model.set_grad_checkpointing(False)
    with torch.no_grad():
        latent, mask, ids_restore = tiny_model.eval().forward_encoder(images, ratios, noise=torch.rand(2, 16))
        pred = tiny_model.forward_decoder(latent, ids_restore, mask=mask)
        alone = tiny_model.forward_decoder(latent[1:, : 1 + 4], ids_restore[1:])
    torch.testing.assert_close(pred[1:], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"mask must be None or a tensor of the shape of ids_restore \(2, 16\)"):
        tiny_model.forward_decoder(latent, ids_restore, mask=mask[:, :4])


def test_the_official_methods_patchify_unpatchify_and_random_masking_exist_with_their_meaning(tiny_model, images):
    patches = tiny_model.patchify(images)
    torch.testing.assert_close(patches, patchify(images, TINY.patch_size), rtol=0, atol=0)
    torch.testing.assert_close(tiny_model.unpatchify(patches), images, rtol=0, atol=0)
    tokens = torch.randn(2, 16, 8)
    torch.manual_seed(3)
    kept, mask, ids_restore = tiny_model.random_masking(tokens, 0.75)
    torch.manual_seed(3)
    expected = RandomMasking()(tokens, mask_ratio=0.75)
    assert torch.equal(kept, expected.kept) and torch.equal(mask, expected.mask)
    assert torch.equal(ids_restore, expected.ids_restore) and kept.shape == (2, 4, 8)
