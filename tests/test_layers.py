import math

import pytest
import torch
from torch import nn

from masked_autoencoder import mae_vit_base
from masked_autoencoder.layers import Attention, Block


def test_attention_equals_softmax_attention_written_out():
    torch.manual_seed(0)
    attention, x = Attention(dim=16, num_heads=4), torch.randn(2, 5, 16)
    q, k, v = attention.qkv(x).split(16, dim=-1)
    heads = [slice(h * 4, (h + 1) * 4) for h in range(4)]
    outputs = [torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, dim=-1) @ v[..., s] for s in heads]
    torch.testing.assert_close(attention(x), attention.proj(torch.cat(outputs, dim=-1)))


def test_block_is_pre_norm_with_residuals_and_exact_gelu():
    torch.manual_seed(0)
    block, x = Block(dim=16, num_heads=2, mlp_ratio=4.0, eps=1e-6), torch.randn(2, 5, 16)
    assert block.mlp.fc1.out_features == 64
    assert block.norm1.eps == 1e-6 and block.norm2.eps == 1e-6
    h = x + block.attn(block.norm1(x))
    hidden = block.mlp.fc1(block.norm2(h))
    exact_gelu = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    torch.testing.assert_close(block(x), h + block.mlp.fc2(exact_gelu))


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return mae_vit_base(depth=1, decoder_depth=1)


def _xavier_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def test_linear_layers_are_xavier_uniform_with_zero_bias(base_model):
    linears = [m for m in base_model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 10  # qkv, proj, fc1, fc2 in each of 2 blocks + decoder_embed + decoder_pred
    for layer in linears:
        bound = _xavier_bound(layer.in_features, layer.out_features)
        weight = layer.weight.detach()
        assert weight.abs().max() <= bound
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert not layer.bias.any()


def test_patch_projection_is_xavier_on_its_flattened_view(base_model):
    weight = base_model.patch_embed.proj.weight.detach()
    bound = _xavier_bound(3 * 16 * 16, 768)
    assert weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_tokens_are_normal_std_002_and_layer_norms_are_identity(base_model):
    for token in (base_model.cls_token, base_model.mask_token):
        assert token.std().item() == pytest.approx(0.02, rel=0.15)
        assert abs(token.mean().item()) < 0.005
    norms = [m for m in base_model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 2
    for norm in norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert not norm.bias.any()
        assert norm.eps == 1e-6
