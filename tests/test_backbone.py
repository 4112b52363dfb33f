"""The encoder as a backbone: forward_intermediates (timm's semantics), forward_pooled, encoder_only factories."""

import pytest
import torch

from masked_autoencoder import MAEEncoder, MAEViTClassifier, mae_vit_tiny


@pytest.fixture
def encoder(tiny_config):
    torch.manual_seed(0)
    return MAEEncoder(tiny_config, depth=4).eval()


def _block_outputs(encoder, imgs):
    patches, cls = encoder.embed(imgs)
    tokens, outputs = torch.cat([cls, patches], dim=1), []
    for block in encoder.blocks:
        tokens = block(tokens)
        outputs.append(tokens)
    return outputs


@pytest.mark.parametrize(("indices", "expected"), [(None, [0, 1, 2, 3]), (2, [2, 3]), ([0, -1], [0, 3]), ((1,), [1])])
def test_intermediates_take_the_blocks_timm_would(encoder, indices, expected):
    imgs = torch.randn(2, 3, 32, 48)
    blocks = _block_outputs(encoder, imgs)
    final, maps = encoder.forward_intermediates(imgs, indices)
    assert torch.equal(final, encoder.forward_features(imgs))
    assert len(maps) == len(expected)
    for feature_map, index in zip(maps, expected, strict=True):
        assert feature_map.shape == (2, 32, 4, 6)  # (B, D, H/P, W/P)
        assert torch.equal(feature_map, blocks[index][:, 1:].transpose(1, 2).reshape(2, 32, 4, 6))


def test_intermediates_in_nlc_with_prefix_tokens_and_norm(encoder):
    imgs = torch.randn(2, 3, 32, 32)
    blocks = _block_outputs(encoder, imgs)
    outputs = encoder.forward_intermediates(
        imgs, [1], norm=True, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
    )
    ((patches, cls),) = outputs
    normed = encoder.norm(blocks[1])
    assert torch.equal(patches, normed[:, 1:]) and torch.equal(cls, normed[:, :1])


def test_stop_early_runs_only_the_blocks_needed(encoder):
    calls = []
    for block in encoder.blocks:
        block.register_forward_pre_hook(lambda module, args: calls.append(module))
    final, _ = encoder.forward_intermediates(torch.randn(1, 3, 32, 32), [1], stop_early=True)
    assert len(calls) == 2 and final.shape == (1, 17, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"indices": 5}, r"indices must be a count of last blocks in \[1, 4\], got 5"),
        ({"indices": 0}, r"indices must be a count of last blocks in \[1, 4\], got 0"),
        ({"indices": [0, 4]}, r"indices must be block indices in \[-4, 3\], got \[0, 4\]"),
        ({"indices": []}, "indices must be at least one block index"),
        ({"output_fmt": "NHWC"}, "output_fmt must be one of"),
    ],
)
def test_bad_intermediate_arguments_raise_value_error(encoder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        encoder.forward_intermediates(torch.randn(1, 3, 32, 32), **kwargs)


def test_pooled_features_are_the_class_token_or_the_normed_mean_patch(encoder):
    imgs = torch.randn(2, 3, 32, 32)
    last = _block_outputs(encoder, imgs)[-1]
    assert torch.equal(encoder.forward_pooled(imgs), encoder.norm(last)[:, 0])
    torch.testing.assert_close(encoder.forward_pooled(imgs, "avg"), encoder.norm(last[:, 1:].mean(dim=1)))
    with pytest.raises(ValueError, match="pool must be one of"):
        encoder.forward_pooled(imgs, "max")


def test_encoder_only_factory_builds_the_encoder_alone():
    encoder = mae_vit_tiny(encoder_only=True, depth=2)
    assert type(encoder) is MAEEncoder and not any(k.startswith("decoder") for k in encoder.state_dict())
    assert encoder(torch.randn(1, 3, 448, 448)).shape == (1, 1 + 28 * 28, 192)


def test_drop_path_rate_is_validated(tiny_config):
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\), got 1.0"):
        MAEEncoder(tiny_config, drop_path_rate=1.0)


def test_compiled_classifier_trains_and_infers_without_graph_breaks(tiny_config):
    torch.manual_seed(0)
    model = MAEViTClassifier(tiny_config, num_classes=5, drop_path_rate=0.1)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    imgs, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(compiled(imgs), labels)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(imgs), model(imgs), rtol=1e-5, atol=1e-5)
