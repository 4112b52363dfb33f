"""Linear probing: the official head on a frozen encoder's class token, the encoder kept in eval mode."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from torch import nn

from masked_autoencoder import LinearProbe, MAEEncoder, MAEViTClassifier, linear_probe_head


def _encoder(drop_path_rate: float = 0.0) -> MAEEncoder:
    torch.manual_seed(0)
    return MAEEncoder(TINY, drop_path_rate=drop_path_rate)


def test_head_is_batchnorm_without_affine_then_a_linear_layer_with_std_0_01():
    torch.manual_seed(0)
    norm, linear = linear_probe_head(64, 1000)
    assert isinstance(norm, nn.BatchNorm1d) and not norm.affine and norm.eps == 1e-6
    assert linear.weight.shape == (1000, 64)
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.05) and not linear.bias.any()


def test_probe_classifies_the_class_token_after_the_final_norm():
    encoder = _encoder()
    probe = LinearProbe(encoder, num_classes=5).eval()
    imgs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        tokens = encoder.run_blocks(torch.cat(encoder.embed(imgs)[::-1], dim=1))
        feature = F.layer_norm(tokens[:, 0], (32,), encoder.norm.weight, encoder.norm.bias, eps=1e-6)
        norm, linear = probe.head
        standardised = (feature - norm.running_mean) / torch.sqrt(norm.running_var + 1e-6)
        torch.testing.assert_close(probe(imgs), linear(standardised))


def test_only_the_head_trains_and_the_encoder_stays_in_eval_mode():
    encoder = _encoder(drop_path_rate=0.5)  # drop path would change the features in training mode
    probe = LinearProbe(encoder, num_classes=5).train()
    assert [name for name, p in probe.named_parameters() if p.requires_grad] == ["head.1.weight", "head.1.bias"]
    assert probe.training and probe.head.training and not any(m.training for m in probe.encoder.modules())
    imgs = torch.randn(4, 3, 32, 32)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    optimizer = torch.optim.SGD(probe.head.parameters(), lr=0.1)
    F.cross_entropy(probe(imgs), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in before.items())
    assert probe.head[0].num_batches_tracked == 1  # the head's BatchNorm did train
    with torch.no_grad():  # no drop path: the same features every time
        assert torch.equal(probe.encoder.forward_pooled(imgs), probe.encoder.forward_pooled(imgs))


def test_a_class_token_classifier_can_be_probed_but_a_global_pool_one_cannot():
    probe = LinearProbe(MAEViTClassifier(TINY, global_pool=False), num_classes=3)
    assert probe(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="encoder must be an MAEEncoder with its final norm .*got MAEViTClassifier"):
        LinearProbe(MAEViTClassifier(TINY), num_classes=3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: linear_probe_head(0, 10), "dim must be a positive int, got 0"),
        (lambda: linear_probe_head(32, 0), "num_classes must be a positive int, got 0"),
        (lambda: LinearProbe(_encoder(), num_classes=-1), "num_classes must be a positive int, got -1"),
        (lambda: LinearProbe(nn.Linear(3, 3), num_classes=3), "encoder must be an MAEEncoder.*got Linear"),
    ],
)
def test_bad_arguments_raise_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()
