import pytest
import torch

from masked_autoencoder import mae_loss, normalized_pixels


def _per_patch_reference(pred, target, mask):
    total, count = 0.0, 0.0
    for b in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            error = sum((p - t) ** 2 for p, t in zip(pred[b, i].tolist(), target[b, i].tolist(), strict=True))
            total += mask[b, i].item() * error / pred.shape[2]
            count += mask[b, i].item()
    return total / count


def test_loss_is_mean_squared_error_over_removed_patches_only():
    pred, target = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 1, 1, 0]])
    expected = _per_patch_reference(pred, target, mask)
    assert mae_loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    # Kept patches do not count: changing their prediction leaves the loss unchanged.
    assert torch.equal(mae_loss(pred + (1 - mask)[..., None] * 5, target, mask), mae_loss(pred, target, mask))


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_a_boolean_mask_gives_the_loss_of_the_float_mask(norm_pix_loss):
    pred, target = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])
    expected = mae_loss(pred, target, mask.float(), norm_pix_loss=norm_pix_loss)
    assert torch.equal(mae_loss(pred, target, mask, norm_pix_loss=norm_pix_loss), expected)


def test_normalized_pixel_target_uses_each_patch_mean_and_unbiased_variance():
    target = torch.randn(2, 3, 8) * 3 + 1
    n = target.shape[-1]
    mean = target.sum(-1, keepdim=True) / n
    unbiased_var = ((target - mean) ** 2).sum(-1, keepdim=True) / (n - 1)
    expected = (target - mean) / torch.sqrt(unbiased_var + 1e-6)
    torch.testing.assert_close(normalized_pixels(target), expected)
    pred, mask = torch.randn(2, 3, 8), torch.ones(2, 3)
    torch.testing.assert_close(mae_loss(pred, target, mask, norm_pix_loss=True), ((pred - expected) ** 2).mean())


def test_loss_is_float32_under_bf16_autocast_and_for_bf16_inputs():
    pred, target, mask = torch.randn(2, 4, 6), torch.randn(2, 4, 6), torch.ones(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mae_loss(pred.bfloat16(), target, mask, norm_pix_loss=True)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, mae_loss(pred.bfloat16().float(), target, mask, norm_pix_loss=True))


def test_float64_inputs_keep_float64():
    pred = torch.randn(1, 2, 3, dtype=torch.float64)
    assert mae_loss(pred, pred * 2, torch.ones(1, 2)).dtype == torch.float64


def test_constant_patches_give_finite_normalized_targets_in_fp16_inputs():
    target = torch.full((1, 2, 16), 0.5, dtype=torch.float16)
    loss = mae_loss(torch.zeros_like(target), target, torch.ones(1, 2), norm_pix_loss=True)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_mask_with_no_removed_patch_gives_zero_not_nan():
    pred = torch.randn(1, 4, 3)
    assert mae_loss(pred, pred + 1, torch.zeros(1, 4)).item() == 0.0


@pytest.mark.parametrize(
    ("pred", "target", "mask", "message"),
    [
        (torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2), r"pred must be a 3-D tensor \(B, L, N\)"),
        (torch.zeros(2, 4, 3), torch.zeros(2, 4, 6), torch.ones(2, 4), r"target must be the shape of pred \(2, 4, 3\)"),
        (torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.ones(2, 5), r"mask must be a tensor of shape \(2, 4\)"),
    ],
)
def test_bad_loss_inputs_raise_value_error(pred, target, mask, message):
    with pytest.raises(ValueError, match=message):
        mae_loss(pred, target, mask)


def test_images_first_points_to_the_argument_order_and_forward_loss():
    imgs, pred, mask = torch.zeros(2, 3, 32, 32), torch.zeros(2, 16, 192), torch.ones(2, 16)
    expected = (
        r"^pred must be a 3-D tensor \(B, L, N\): the call is mae_loss\(pred, patchify\(imgs, patch_size\), mask\); "
        r"a model's forward_loss\(imgs, pred, mask\) takes the images first, got a tensor of shape \(2, 3, 32, 32\)"
    )
    with pytest.raises(ValueError, match=expected):
        mae_loss(imgs, pred, mask)
