import dataclasses

import pytest
import torch

from masked_autoencoder import GridMasking, MaskedAutoencoderViT, normalized_pixels, patchify, reconstruct, unpatchify


def test_visible_patches_are_pasted_back_and_removed_ones_filled(tiny_model, images):
    noise = torch.rand(2, 16)
    out = reconstruct(tiny_model, images, noise=noise, fill=0.5)
    expected = tiny_model(images, noise=noise)
    removed = expected.mask.bool()
    patches = patchify(images, 8)
    assert torch.equal(patchify(out.pasted, 8)[~removed], patches[~removed])
    assert torch.equal(patchify(out.pasted, 8)[removed], expected.pred[removed])
    assert torch.equal(patchify(out.masked, 8)[removed], torch.full_like(patches[removed], 0.5))
    assert torch.equal(out.reconstruction, unpatchify(expected.pred, 8, 4))
    assert torch.equal(out.mask[:, 0], unpatchify(expected.mask[..., None].expand(-1, -1, 64), 8, 4)[:, 0])
    assert out.mask.shape == (2, 1, 32, 32)


def test_normalized_predictions_use_the_visible_patches_statistics(tiny_config, images):
    model = MaskedAutoencoderViT(tiny_config, norm_pix_loss=True).eval()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 4:] = True
    patches = patchify(images, 8)
    perfect = normalized_pixels(patches)
    forward = model.forward  # a perfect predictor, through the public forward only
    model.forward = lambda imgs, **kwargs: dataclasses.replace(forward(imgs, **kwargs), pred=perfect)
    out = reconstruct(model, images, mask=mask)
    visible = patches[:, :4]
    mean = visible.mean(dim=-1).mean(dim=1)[:, None, None]
    std = (visible.var(dim=-1) + 1e-6).sqrt().mean(dim=1)[:, None, None]
    torch.testing.assert_close(patchify(out.reconstruction, 8), perfect * std + mean)
    assert torch.equal(patchify(out.pasted, 8)[:, :4], visible)


def test_reconstruct_runs_without_gradients(tiny_model, images):
    assert not reconstruct(tiny_model, images).pasted.requires_grad


def test_reconstruct_validates_images(tiny_model):
    with pytest.raises(ValueError, match="imgs must be"):
        reconstruct(tiny_model, torch.randn(1, 3, 30, 32))


def test_reconstruct_takes_back_a_models_float_mask(tiny_model, images):
    out = tiny_model(images)
    again = reconstruct(tiny_model, images, mask=out.mask)
    assert torch.equal(again.reconstruction, unpatchify(tiny_model(images, mask=out.mask.bool()).pred, 8, 4))
    assert torch.equal(patchify(again.mask.expand(-1, 3, -1, -1), 8)[..., 0], out.mask)


def test_reconstruct_takes_a_masking_strategy_for_the_call(tiny_model, images):
    generator = torch.Generator().manual_seed(3)
    out = reconstruct(tiny_model, images, masking=GridMasking(), generator=generator)
    per_patch = patchify(out.mask.expand(-1, 3, -1, -1), 8)[..., 0].reshape(2, 2, 2, 2, 2)  # (B, h/2, 2, w/2, 2)
    # One kept patch in every 2 x 2 square, at the same offset in all of them.
    assert torch.equal((1 - per_patch).sum(dim=(2, 4)), torch.ones(2, 2, 2))
