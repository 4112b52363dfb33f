"""UperNet: mmseg's UPerHead on four maps, and on an MAE encoder's four blocks through BEiT's neck."""

import re

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from masked_autoencoder import MAEEncoder, UperNet, UperNetHead

CLASSES = 5


def _encoder(depth: int = 4, patch: int = 16) -> MAEEncoder:
    torch.manual_seed(0)
    return MAEEncoder(TINY.replace(depth=depth, patch_size=patch, img_size=4 * patch))


def _upernet(**kwargs: object) -> UperNet:
    return UperNet(_encoder(), CLASSES, channels=16, **kwargs)


def test_logits_are_per_pixel_at_the_input_size_and_backward_reaches_the_encoder():
    model = _upernet().train()
    imgs = torch.randn(2, 3, 64, 96)
    logits = model(imgs)
    assert logits.shape == (2, CLASSES, 64, 96)
    F.cross_entropy(logits, torch.randint(0, CLASSES, (2, 64, 96))).backward()
    encoder = model.encoder
    assert all(block.attn.qkv.weight.grad.abs().sum() > 0 for block in encoder.blocks)
    assert encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0


# A power of two goes to strides 4 to 32 (16: BEiT's neck); any other patch to P/4, P/2, P, 2P by BEiT's layers.
@pytest.mark.parametrize(("patch", "strides"), [(16, [4, 8, 16, 32]), (8, [4, 8, 16, 32]), (4, [4, 8, 16, 32])])
def test_the_neck_brings_four_blocks_of_a_power_of_two_patch_to_strides_4_to_32(patch, strides):
    model = UperNet(_encoder(patch=patch), CLASSES, channels=16).eval()
    seen = []
    model.decode_head.register_forward_pre_hook(lambda module, args: seen.append([m.shape for m in args[0]]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 64)).shape == (1, CLASSES, 128, 64)
    assert seen == [[(1, TINY.embed_dim, 128 // s, 64 // s) for s in strides]]


def test_a_patch_of_14_goes_to_strides_p_over_4_to_2p_by_beits_layers():
    model = UperNet(_encoder(patch=14), CLASSES, channels=16).eval()
    seen = []
    model.decode_head.register_forward_pre_hook(lambda module, args: seen.append([m.shape for m in args[0]]))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 112, 56)).shape == (2, CLASSES, 112, 56)  # an 8 x 4 grid of patches
    assert seen == [[(2, TINY.embed_dim, 32 // 2**i, 16 // 2**i) for i in range(4)]]  # strides 3.5, 7, 14, 28


def test_the_neck_reads_the_chosen_blocks_without_the_final_norm():
    model = _upernet(indices=[0, 1, 2, 3]).eval()
    imgs = torch.randn(1, 3, 64, 64)
    outputs = []
    for block in model.encoder.blocks:
        block.register_forward_hook(lambda module, args, out: outputs.append(out))
    seen = []
    model.decode_head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(imgs)
    third = outputs[2][:, 1:].transpose(1, 2).reshape(1, TINY.embed_dim, 4, 4)  # block 2: stride 16, unchanged
    torch.testing.assert_close(seen[0][2], third)


def test_default_indices_are_evenly_spaced_and_given_ones_are_sorted():
    assert UperNet(_encoder(depth=12), CLASSES, channels=8).indices == [2, 5, 8, 11]  # mmseg's ViT-B UperNet
    assert UperNet(_encoder(depth=8), CLASSES, channels=8).indices == [1, 3, 5, 7]
    assert _upernet(indices=[-1, 2, 0, 1]).indices == [0, 1, 2, 3]


def test_state_dict_keys_are_the_encoders_the_necks_and_mmsegs_head_keys():
    keys = _upernet().state_dict().keys()
    assert {key for key in keys if key.startswith("encoder.")} == {f"encoder.{key}" for key in _encoder().state_dict()}
    assert {key.split(".")[0] for key in keys} == {"encoder", "neck", "decode_head"}
    expected = {"psp_modules", "bottleneck", "lateral_convs", "fpn_convs", "fpn_bottleneck", "conv_seg"}
    assert {key.split(".")[1] for key in keys if key.startswith("decode_head.")} == expected
    assert {"decode_head.psp_modules.3.1.conv.weight", "decode_head.fpn_bottleneck.bn.running_var"} <= set(keys)


def test_head_on_maps_of_different_widths_returns_logits_at_the_finest_map_or_at_size():
    head = UperNetHead([8, 16, 24, 32], CLASSES, channels=16).eval()
    maps = [torch.randn(2, chans, 32 // 2**i, 48 // 2**i) for i, chans in enumerate([8, 16, 24, 32])]
    with torch.no_grad():
        assert head(maps).shape == (2, CLASSES, 32, 48)
        assert head(maps, size=(128, 192)).shape == (2, CLASSES, 128, 192)


def test_head_pools_the_coarsest_map_at_each_scale():
    head = UperNetHead([4, 4], CLASSES, channels=8, pool_scales=(1, 3))
    assert [module[0].output_size for module in head.psp_modules] == [1, 3]
    assert head.bottleneck.conv.in_channels == 4 + 2 * 8  # the map and one pooled map per scale
    assert head.fpn_bottleneck.conv.in_channels == 2 * 8  # every level, concatenated


def test_classifier_starts_as_mmseg_initialises_it():
    conv_seg = UperNetHead([4, 4], 150, channels=512).conv_seg
    assert conv_seg.bias.abs().sum() == 0
    assert 0.008 < conv_seg.weight.std() < 0.012  # normal, std 0.01


@pytest.mark.parametrize("num_classes", [0, -3, 1.5, None])
def test_num_classes_must_be_a_positive_int(num_classes):
    for build in (lambda: UperNetHead([4, 4], num_classes), lambda: UperNet(_encoder(), num_classes)):
        with pytest.raises(ValueError, match=rf"^num_classes must be a positive int, got {num_classes!r}$"):
            build()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"in_channels": []}, "in_channels"),
        ({"in_channels": [4, 0]}, "in_channels"),
        ({"channels": 0}, "channels"),
        ({"pool_scales": (1, 0)}, "pool_scales"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_head_arguments_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        UperNetHead(**{"in_channels": [4, 4], "num_classes": CLASSES, **kwargs})


def test_head_needs_one_map_per_input_width():
    head = UperNetHead([4, 8], CLASSES, channels=8)
    for maps in ([torch.randn(1, 4, 8, 8)], [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)]):
        with pytest.raises(
            ValueError, match=r"^maps must be 2 maps \(B, C, h, w\), finest first, of \[4, 8\] channels"
        ):
            head(maps)


@pytest.mark.parametrize("encoder", [torch.nn.Conv2d(3, 8, 1), None])
def test_encoder_must_be_an_mae_encoder(encoder):
    with pytest.raises(ValueError, match=r"^encoder must be an MAE encoder: a VisionTransformer"):
        UperNet(encoder, CLASSES)


def test_encoder_needs_four_blocks():
    with pytest.raises(
        ValueError, match=r"^encoder must be an encoder of at least 4 blocks, got an encoder of 2 blocks$"
    ):
        UperNet(_encoder(depth=2), CLASSES)


@pytest.mark.parametrize("indices", [[0, 1, 2], [0, 1, 1, 3], [0, 1, 2, 4], [0, 1, 2, 3.0]])
def test_indices_must_be_four_distinct_blocks(indices):
    message = rf"^indices must be four distinct block indices in \[-4, 3\], got {re.escape(str(indices))}$"
    with pytest.raises(ValueError, match=message):
        _upernet(indices=indices)


@pytest.mark.parametrize(
    ("patch", "size", "message"),
    [
        (16, (64, 72), r"^imgs must be height and width divisible by the patch size \(16, 16\)"),
        (16, (16, 64), r"^imgs must be at least 2 patches a side, got a grid of 1 x 4 patches$"),
        (4, (64, 28), r"^imgs must be at least 8 patches a side, got a grid of 16 x 7 patches$"),  # 32 pixels
        (14, (14, 28), r"^imgs must be at least 2 patches a side, got a grid of 1 x 2 patches$"),
    ],
)
def test_images_are_checked(patch, size, message):
    with pytest.raises(ValueError, match=message):
        UperNet(_encoder(patch=patch), CLASSES, channels=16)(torch.randn(2, 3, *size))
