"""The ViT trunk shared by every model: one check of the images at each public entry point, before any work."""

import pytest
import torch
from conftest import TINY

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT

MODELS = {
    "encoder": lambda: MAEEncoder(TINY),
    "mae": lambda: MaskedAutoencoderViT(TINY),
    "classifier": lambda: MAEViTClassifier(TINY, num_classes=3),
    "token_classifier": lambda: MAEViTClassifier(TINY, num_classes=3, global_pool=False),
}
ENTRY_POINTS = {
    "forward": lambda model, imgs: model(imgs),
    "forward_features": lambda model, imgs: model.forward_features(imgs),
    "forward_pooled": lambda model, imgs: model.forward_pooled(imgs, "avg"),
    "forward_intermediates": lambda model, imgs: model.forward_intermediates(imgs, 1),
    "embed": lambda model, imgs: model.embed(imgs),
    "forward_encoder": lambda model, imgs: model.forward_encoder(imgs),
    "forward_loss": lambda model, imgs: model.forward_loss(imgs, torch.zeros(2, 16, 192), torch.ones(2, 16)),
}
BAD_IMAGES = {
    "channels": (
        torch.randn(2, 4, 32, 32),
        r"imgs must be 3 channels \(dim 1\), got a tensor of shape \(2, 4, 32, 32\)",
    ),
    "integers": (
        torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        "imgs must be a floating-point tensor, got .*torch.uint8",
    ),
    "size": (torch.randn(2, 3, 30, 32), r"imgs must be height and width divisible by the patch size \(8, 8\)"),
    "rank": (torch.randn(3, 32, 32), r"imgs must be a 4-D tensor \(B, C, H, W\)"),
}


ENTRY_POINTS_OF = [(kind, entry) for kind in MODELS for entry in ENTRY_POINTS if hasattr(MODELS[kind](), entry)]


def test_every_model_has_the_backbone_entry_points():
    assert all((kind, "forward_intermediates") in ENTRY_POINTS_OF for kind in MODELS)
    assert len(ENTRY_POINTS_OF) == 6 + 7 + 5 + 5


@pytest.mark.parametrize("bad", list(BAD_IMAGES))
@pytest.mark.parametrize(("kind", "entry"), ENTRY_POINTS_OF)
def test_every_entry_point_rejects_bad_images_before_embedding_them(kind, entry, bad):
    model = MODELS[kind]()
    embedded = []
    model.patch_embed.register_forward_pre_hook(lambda *args: embedded.append(True))
    imgs, message = BAD_IMAGES[bad]
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry](model, imgs)
    assert not embedded


@pytest.mark.parametrize("kind", list(MODELS))
def test_models_built_on_meta_run_forward_and_backward_with_gradients(kind):
    with torch.device("meta"):
        model = MODELS[kind]()
    out = model(torch.randn(2, 3, 32, 32, device="meta"))
    (out.sum() if isinstance(out, torch.Tensor) else out.loss).backward()
    assert all(p.grad is not None and p.grad.is_meta for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", list(MODELS))
def test_forward_pooled_and_intermediates_use_the_models_own_final_norm(kind):
    torch.manual_seed(0)
    model, imgs = MODELS[kind]().eval(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        last, outputs = model.forward_intermediates(imgs, 1, output_fmt="NLC", return_prefix_tokens=True)
        tokens = model.run_blocks(torch.cat(model.embed(imgs)[::-1], dim=1))
        final = tokens if model.norm is None else model.norm(tokens)
        torch.testing.assert_close(last, final)
        torch.testing.assert_close(model.forward_features(imgs), final)
        torch.testing.assert_close(model.forward_pooled(imgs, "token"), final[:, 0])
        torch.testing.assert_close(outputs[0][0], tokens[:, 1:])
    assert (model.norm is None) == (isinstance(model, MAEViTClassifier) and model.global_pool)
