"""SimpleFeaturePyramid: ViTDet's maps at strides 4 to 64, a backbone for torchvision's detectors as they are."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from einops import rearrange
from torch.export import Dim
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT, SimpleFeaturePyramid

NAMES_AND_STRIDES = [("0", 4), ("1", 8), ("2", 16), ("3", 32), ("pool", 64)]  # torchvision's FPN names, in order
OUT = 16


def _encoder(patch: int = 16, kind: type = MAEEncoder) -> torch.nn.Module:
    torch.manual_seed(0)
    config = TINY.replace(patch_size=patch, img_size=4 * patch)
    return kind(config, num_classes=3) if kind is MAEViTClassifier else kind(config)


def _pyramid(patch: int = 16, out_channels: int = OUT) -> SimpleFeaturePyramid:
    return SimpleFeaturePyramid(_encoder(patch), out_channels).eval()


def _last_block_map(encoder: torch.nn.Module, imgs: torch.Tensor) -> torch.Tensor:
    """The last block's output, read by a hook, as a map (B, D, H/P, W/P): no final norm."""
    seen = []
    handle = encoder.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(out))
    encoder.forward_features(imgs)
    handle.remove()
    height, width = (side // patch for side, patch in zip(imgs.shape[-2:], encoder.config.patch_hw, strict=True))
    return rearrange(seen[0][:, 1:], "b (h w) d -> b d h w", h=height, w=width)


# Sides divisible by the patch and by 64: every level is exactly H/stride x W/stride.
@pytest.mark.parametrize(
    ("patch", "size"), [(16, (128, 192)), (14, (448, 896)), (8, (128, 64)), (4, (64, 128)), (32, (128, 64))]
)
def test_maps_are_named_as_torchvisions_fpn_in_order_at_strides_4_to_64(patch, size):
    pyramid = _pyramid(patch)
    with torch.no_grad():
        maps = pyramid(torch.randn(2, 3, *size))
    assert list(maps) == [name for name, _ in NAMES_AND_STRIDES]
    for name, stride in NAMES_AND_STRIDES:
        assert maps[name].shape == (2, OUT, size[0] // stride, size[1] // stride), name


def test_sides_not_divisible_by_64_round_as_the_pools_do():
    with torch.no_grad():
        maps = _pyramid()(torch.randn(1, 3, 80, 112))  # a 5 x 7 map at stride 16
    shapes = {name: tuple(m.shape[-2:]) for name, m in maps.items()}
    assert shapes == {"0": (20, 28), "1": (10, 14), "2": (5, 7), "3": (2, 3), "pool": (1, 2)}


def test_out_channels_attribute_defaults_to_256():
    pyramid = SimpleFeaturePyramid(_encoder())
    assert pyramid.out_channels == 256
    with torch.no_grad():
        assert {m.shape[1] for m in pyramid(torch.randn(1, 3, 64, 64)).values()} == {256}


def test_stride_16_32_and_64_maps_come_from_the_last_block_without_the_final_norm():
    pyramid = _pyramid()
    imgs = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        maps = pyramid(imgs)
        last = _last_block_map(pyramid.encoder, imgs)
        torch.testing.assert_close(maps["2"], pyramid.simfp_4(last))
        torch.testing.assert_close(maps["3"], pyramid.simfp_5[1:](F.max_pool2d(last, 2)))
    torch.testing.assert_close(maps["pool"], maps["3"][..., ::2, ::2])  # max-pool of kernel 1, stride 2: a subsample


def test_another_patch_is_resized_bilinearly_to_the_stride_16_grid():
    pyramid = _pyramid(14)
    imgs = torch.randn(1, 3, 224, 112)  # a 16 x 8 grid of patches of 14 -> 14 x 7 at stride 16
    with torch.no_grad():
        resized = F.interpolate(_last_block_map(pyramid.encoder, imgs), size=(14, 7), mode="bilinear")
        torch.testing.assert_close(pyramid(imgs)["2"], pyramid.simfp_4(resized))


@pytest.mark.parametrize(
    ("patch", "kernels"), [(8, {"simfp_4": 2, "simfp_5": 4}), (4, {"simfp_3": 2, "simfp_4": 4, "simfp_5": 8})]
)
def test_a_power_of_two_patch_starts_from_its_own_stride_without_resampling(patch, kernels):
    pyramid = _pyramid(patch)
    imgs = torch.randn(2, 3, 64, 96)
    at_patch = {8: "simfp_3", 4: "simfp_2"}[patch]  # the branch whose stride is the patch's: no rescaling layer
    with torch.no_grad():
        branches = ["simfp_2", "simfp_3", "simfp_4", "simfp_5"]  # strides 4 to 32
        maps = dict(zip(branches, pyramid(imgs).values(), strict=False))  # each branch's map ("pool" left out)
        last = _last_block_map(pyramid.encoder, imgs)
        torch.testing.assert_close(maps[at_patch], pyramid.get_submodule(at_patch)(last))
        for name, kernel in kernels.items():
            torch.testing.assert_close(maps[name], pyramid.get_submodule(name)[1:](F.max_pool2d(last, kernel)))
    if patch == 8:  # stride 4: one transposed conv, halving the channels
        assert isinstance(pyramid.simfp_2[0], torch.nn.ConvTranspose2d)
        assert pyramid.simfp_2[0].out_channels == TINY.embed_dim // 2


def test_vitdet_branches_halve_the_channels_and_use_channel_layer_norm():
    pyramid = _pyramid()
    dim = TINY.embed_dim
    assert [pyramid.simfp_2[i].out_channels for i in (0, 3)] == [dim // 2, dim // 4]
    assert pyramid.simfp_3[0].out_channels == dim // 2
    maps = torch.randn(2, OUT, 3, 5)
    norm = pyramid.simfp_4[0].norm
    expected = F.layer_norm(maps.movedim(1, -1), (OUT,), norm.weight, norm.bias, eps=1e-6).movedim(-1, 1)
    torch.testing.assert_close(norm(maps), expected)
    assert all(conv.bias is None for branch in (pyramid.simfp_2, pyramid.simfp_5) for conv in branch[-2:])


def test_state_dict_is_the_encoders_keys_under_encoder_and_vitdets_pyramid_keys():
    pyramid = _pyramid()
    keys = pyramid.state_dict().keys()
    assert {key for key in keys if key.startswith("encoder.")} == {f"encoder.{key}" for key in _encoder().state_dict()}
    assert {key.split(".")[0] for key in keys} == {"encoder", "simfp_2", "simfp_3", "simfp_4", "simfp_5"}
    assert {"simfp_2.4.weight", "simfp_2.4.norm.weight", "simfp_5.2.norm.bias"} <= set(keys)  # detectron2's


@pytest.mark.parametrize("kind", [MaskedAutoencoderViT, MAEViTClassifier])
def test_every_form_of_the_trunk_is_an_encoder(kind):
    with torch.no_grad():
        maps = SimpleFeaturePyramid(_encoder(kind=kind), OUT).eval()(torch.randn(1, 3, 64, 64))
    assert maps["0"].shape == (1, OUT, 16, 16)


def _targets(with_masks: bool) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[8.0, 8.0, 40.0, 48.0], [30.0, 10.0, 60.0, 30.0]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 2])}
    if with_masks:
        masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
        masks[0, 8:48, 8:40] = masks[1, 10:30, 30:60] = 1
        target["masks"] = masks
    return [target, target]


# The detectors' defaults (anchors, RoI poolers, heads); only image size and sampling counts are made small to be fast.
RCNN_SMALL = {"box_detections_per_img": 5, "box_batch_size_per_image": 16, "rpn_post_nms_top_n_test": 10}
DETECTORS = {
    "FasterRCNN": lambda backbone: FasterRCNN(backbone, num_classes=3, min_size=64, max_size=64, **RCNN_SMALL),
    "MaskRCNN": lambda backbone: MaskRCNN(backbone, num_classes=3, min_size=64, max_size=64, **RCNN_SMALL),
    "RetinaNet": lambda backbone: RetinaNet(backbone, num_classes=3, min_size=64, max_size=64, detections_per_img=5),
}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_torchvision_detector_with_its_defaults_trains_and_detects(name):
    pyramid = SimpleFeaturePyramid(_encoder(), out_channels=32)
    detector = DETECTORS[name](pyramid).train()
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    imgs = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    totals = []
    for _ in range(3):
        loss = sum(detector(imgs, _targets(name == "MaskRCNN")).values())
        optimizer.zero_grad()
        loss.backward()
        assert pyramid.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
        assert pyramid.encoder.norm.weight.grad is None  # ViTDet reads the last block as it leaves it
        optimizer.step()
        totals.append(loss.item())
    assert all(math.isfinite(total) for total in totals) and totals[-1] < totals[0]
    with torch.no_grad():
        detections = detector.eval()(imgs)
    expected = {"boxes", "labels", "scores"} | ({"masks"} if name == "MaskRCNN" else set())
    assert len(detections) == 2 and all(set(found) == expected for found in detections)
    assert detections[0]["boxes"].shape[1] == 4


def test_a_patch_of_14_detects_with_images_padded_to_multiples_of_224():
    detector = FasterRCNN(SimpleFeaturePyramid(_encoder(14), 32), 3, min_size=64, max_size=64, size_divisible=224)
    with torch.no_grad():
        detections = detector.eval()([torch.rand(3, 64, 64)])
    assert set(detections[0]) == {"boxes", "labels", "scores"}


def test_one_exported_program_serves_every_batch_and_image_size():
    pyramid = _pyramid()
    # Sizes of 1 are specialised when traced: the sample and the range keep every map (down to stride 64) 2 or more.
    rows, columns = Dim("rows", min=6, max=64), Dim("columns", min=6, max=64)
    dynamic = {"imgs": {0: Dim("batch", min=1, max=8), 2: 16 * rows, 3: 16 * columns}}
    program = torch.export.export(pyramid, (torch.randn(2, 3, 128, 192),), dynamic_shapes=dynamic)
    for shape in [(1, 3, 96, 112), (3, 3, 144, 96)]:
        imgs = torch.randn(*shape)
        got, expected = program.module()(imgs), pyramid(imgs)
        assert list(got) == list(expected)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("encoder", [torch.nn.Linear(2, 2), None, TINY])
def test_encoder_must_be_an_mae_encoder(encoder):
    with pytest.raises(ValueError, match=r"^encoder must be an MAE encoder: a VisionTransformer \(MAEEncoder, "):
        SimpleFeaturePyramid(encoder)


@pytest.mark.parametrize("out_channels", [0, -1, 2.5, True, "256"])
def test_out_channels_must_be_a_positive_int(out_channels):
    with pytest.raises(ValueError, match=rf"^out_channels must be a positive int, got {out_channels!r}$"):
        SimpleFeaturePyramid(_encoder(), out_channels)


def test_image_sides_must_be_divisible_by_the_patch():
    expected = (
        "imgs must be height and width divisible by the patch size (16, 16), got a tensor of shape (1, 3, 64, 72)"
    )
    with pytest.raises(ValueError) as error:
        _pyramid()(torch.randn(1, 3, 64, 72))
    assert str(error.value).startswith(expected)


@pytest.mark.parametrize(
    ("patch", "size", "minimum"), [(16, (16, 64), 32), (8, (64, 24), 32), (4, (28, 64), 32), (14, (14, 28), 17)]
)
def test_images_too_small_for_a_stride_32_map_are_refused(patch, size, minimum):
    expected = (
        f"imgs must be at least {minimum} pixels high and wide (the stride-32 and 64 maps would be empty), "
        f"got images of {size[0]} x {size[1]} pixels"
    )
    with pytest.raises(ValueError) as error:
        _pyramid(patch)(torch.randn(1, 3, *size))
    assert str(error.value) == expected
