"""param_groups_lrd: layer-wise lr decay with the official fine-tuning semantics."""

import pytest
import torch
from conftest import TINY
from torch import nn

from masked_autoencoder import MAEEncoder, MAEViTClassifier, param_groups_lrd

# Per-block parameters in registration order, and whether each is decayed (1-D ones are not).
_BLOCK = [
    ("norm1.weight", False),
    ("norm1.bias", False),
    ("attn.qkv.weight", True),
    ("attn.qkv.bias", False),
    ("attn.proj.weight", True),
    ("attn.proj.bias", False),
    ("norm2.weight", False),
    ("norm2.bias", False),
    ("mlp.fc1.weight", True),
    ("mlp.fc1.bias", False),
    ("mlp.fc2.weight", True),
    ("mlp.fc2.bias", False),
]


def _classifier() -> MAEViTClassifier:
    torch.manual_seed(0)
    return MAEViTClassifier(TINY, num_classes=3)  # depth 2: num_layers = 3


def _assignment(model: nn.Module, groups: list[dict]) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr_scale, weight_decay) of its group."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}


def test_hand_computed_groups_of_a_depth_2_classifier():
    model = _classifier()
    groups = param_groups_lrd(model, 0.05, model.no_weight_decay(), 0.5)
    # layer_decay 0.5, num_layers 3: layer 0 -> 0.125, blocks.0 -> 0.25, blocks.1 -> 0.5, the rest -> 1.0.
    expected = {
        "cls_token": (0.125, 0.0),  # in no_weight_decay()
        "pos_embed": (0.125, 0.0),  # in no_weight_decay()
        "patch_embed.proj.weight": (0.125, 0.05),
        "patch_embed.proj.bias": (0.125, 0.0),
        "fc_norm.weight": (1.0, 0.0),
        "fc_norm.bias": (1.0, 0.0),
        "head.weight": (1.0, 0.05),
        "head.bias": (1.0, 0.0),
    }
    for block, scale in ((0, 0.25), (1, 0.5)):
        expected |= {f"blocks.{block}.{name}": (scale, 0.05 if decay else 0.0) for name, decay in _BLOCK}
    assert _assignment(model, groups) == expected
    # One group per (layer, decay), in the order their first parameter comes.
    assert [(g["lr_scale"], g["weight_decay"]) for g in groups] == [
        (0.125, 0.0),
        (0.125, 0.05),
        (0.25, 0.0),
        (0.25, 0.05),
        (0.5, 0.0),
        (0.5, 0.05),
        (1.0, 0.0),
        (1.0, 0.05),
    ]
    assert all(set(g) == {"lr_scale", "weight_decay", "params"} for g in groups)


def test_default_empty_list_decays_the_3d_tokens_as_the_official_code():
    model = _classifier()
    got = _assignment(model, param_groups_lrd(model))  # weight_decay 0.05, layer_decay 0.75
    assert got["cls_token"] == got["pos_embed"] == (0.75**3, 0.05)
    assert got["patch_embed.proj.bias"] == (0.75**3, 0.0)
    assert got["blocks.1.mlp.fc1.weight"] == (0.75, 0.05)
    assert got["head.weight"] == (1.0, 0.05)


def test_frozen_parameters_are_left_out():
    model = _classifier()
    model.patch_embed.requires_grad_(False)
    model.blocks[0].requires_grad_(False)
    kept = _assignment(model, param_groups_lrd(model, no_weight_decay_list=model.no_weight_decay(), layer_decay=0.5))
    assert not any(name.startswith(("patch_embed", "blocks.0.")) for name in kept)
    assert len(kept) == sum(p.requires_grad for p in model.parameters()) == 2 + 12 + 4


def test_encoder_groups_put_the_final_norm_on_top_and_have_no_position_parameter():
    encoder = MAEEncoder(TINY)
    got = _assignment(encoder, param_groups_lrd(encoder, layer_decay=0.5))
    assert "pos_embed" not in got  # a fixed buffer in the encoder
    assert got["norm.weight"] == (1.0, 0.0) and got["cls_token"] == (0.125, 0.05)


def test_lr_gives_each_group_its_scaled_learning_rate_for_torch_schedulers():
    model = _classifier()
    groups = param_groups_lrd(model, no_weight_decay_list=model.no_weight_decay(), layer_decay=0.5, lr=1e-3)
    assert [g["lr"] for g in groups] == [g["lr_scale"] * 1e-3 for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=1.0)  # each group's own lr wins over the default
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.5 * g["lr_scale"] * 1e-3 for g in groups]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_decay": 0.0}, r"layer_decay must be a number in \(0, 1\], got 0.0"),
        ({"layer_decay": 1.5}, r"layer_decay must be a number in \(0, 1\], got 1.5"),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0, got -0.1"),
        ({"no_weight_decay_list": "pos_embed"}, "no_weight_decay_list must be an iterable of parameter names"),
        ({"lr": 0}, "lr must be None or a positive number, got 0"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        param_groups_lrd(_classifier(), **kwargs)


def test_a_model_without_blocks_or_with_two_vits_is_refused():
    with pytest.raises(
        ValueError, match=r"model must be a ViT, or a module with one ViT inside \(found \[\]\), got a Linear"
    ):
        param_groups_lrd(nn.Linear(2, 2))
    two = nn.ModuleDict({"a": _classifier(), "b": _classifier()})
    with pytest.raises(ValueError, match=r"one ViT inside \(found \['a', 'b'\]\)"):
        param_groups_lrd(two)


class _Detector(nn.Module):
    """A detector as users build one: a backbone holding the encoder and a neck, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.encoder = _classifier()
        self.backbone.neck = nn.Conv2d(32, 8, 1)
        self.head = nn.Linear(8, 3)


def test_an_encoder_nested_in_a_detector_gets_vitdet_s_decay_and_the_rest_the_full_rate():
    detector = _Detector()
    groups = param_groups_lrd(detector, 0.1, ["pos_embed", "cls_token"], layer_decay=0.7, lr=1e-4)
    scale = {id(p): (g["lr_scale"], g["weight_decay"], g["lr"]) for g in groups for p in g["params"]}
    encoder = detector.backbone.encoder
    depth = len(encoder.blocks)
    for index, block in enumerate(encoder.blocks):  # ViTDet: decay ** (depth - index) for blocks.index
        assert scale[id(block.attn.qkv.weight)] == (0.7 ** (depth - index), 0.1, 1e-4 * 0.7 ** (depth - index))
        assert scale[id(block.attn.qkv.bias)][1] == 0.0  # 1-D: no weight decay
    assert scale[id(encoder.pos_embed)] == (0.7 ** (depth + 1), 0.0, 1e-4 * 0.7 ** (depth + 1))  # listed: no decay
    assert scale[id(encoder.patch_embed.proj.weight)][0] == 0.7 ** (depth + 1)
    for param in (detector.backbone.neck.weight, detector.head.weight):
        assert scale[id(param)] == (1.0, 0.1, 1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(detector.parameters()))
