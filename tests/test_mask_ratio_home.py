"""The mask ratio has one home, the masking strategy: a model's config mirrors it, saves it and reloads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

from masked_autoencoder import (
    BlockMasking,
    GridMasking,
    MAEEncoder,
    MaskedAutoencoderViT,
    RandomMasking,
    mae_loss,
    mae_vit_tiny,
)
from masked_autoencoder.masking import num_kept

LENGTH = TINY.grid_size[0] * TINY.grid_size[1]


def _removed_share(model: MAEEncoder, imgs: torch.Tensor) -> float:
    _, mask, _ = model.forward_encoder(imgs)
    return float(mask.mean())


@pytest.mark.parametrize(
    ("masking", "ratio"), [(BlockMasking(0.9, min_block=2), 0.9), (GridMasking(2), 0.75), (RandomMasking(0.6), 0.6)]
)
@pytest.mark.parametrize("cls", [MaskedAutoencoderViT, MAEEncoder])
def test_a_model_reports_saves_and_reloads_its_strategy_s_ratio(tmp_path, images, cls, masking, ratio):
    model = cls(TINY, masking=masking)
    assert model.config.mask_ratio == ratio
    removed = 1 - num_kept(LENGTH, ratio) / LENGTH
    assert _removed_share(model, images) == pytest.approx(removed)
    reloaded = cls.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    # The strategy's kind is not saved: the reloaded model masks at random, with the same share.
    assert isinstance(reloaded.masking, RandomMasking) and reloaded.config.mask_ratio == ratio
    assert _removed_share(reloaded, images) == pytest.approx(removed)


def test_setting_a_strategy_later_updates_the_config_and_a_disagreeing_config_is_refused():
    model = MaskedAutoencoderViT(TINY)
    model.masking = GridMasking(4)
    assert model.config.mask_ratio == pytest.approx(15 / 16)
    with pytest.raises(ValueError, match=r"config.mask_ratio must be 0.9375, the strategy's: set model.masking"):
        model.config = TINY
    with pytest.raises(ValueError, match="masking must be a MaskingStrategy, got NoneType"):
        model.masking = None


def test_a_strategy_s_ratio_is_read_only():
    with pytest.raises(AttributeError):
        RandomMasking(0.5).mask_ratio = 0.9  # type: ignore[misc]


@pytest.mark.parametrize("build", [lambda **kw: MaskedAutoencoderViT(TINY, **kw), mae_vit_tiny])
def test_a_mask_ratio_keyword_must_agree_with_the_strategy(build):
    with pytest.raises(ValueError, match=r"mask_ratio must be 0.9, the ratio of masking=BlockMasking\(.*got 0.6"):
        build(masking=BlockMasking(0.9), mask_ratio=0.6)
    assert build(masking=BlockMasking(0.9), mask_ratio=0.9).config.mask_ratio == 0.9


def test_from_pretrained_with_a_strategy_records_its_ratio(tmp_path):
    folder = MaskedAutoencoderViT(TINY).save_pretrained(tmp_path / "saved")
    loaded = MaskedAutoencoderViT.from_pretrained(folder, masking=BlockMasking(0.5, min_block=2))
    assert loaded.config.mask_ratio == 0.5
    with pytest.raises(ValueError, match="mask_ratio must be 0.5, the ratio of masking="):
        MaskedAutoencoderViT.from_pretrained(folder, masking=BlockMasking(0.5, min_block=2), mask_ratio=0.8)


# --- small edges -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_ratio", [0.95, torch.tensor([0.5, 0.95])])
def test_a_ratio_that_keeps_no_patch_is_refused_naming_the_ratio(images, mask_ratio):
    model = MaskedAutoencoderViT(TINY)  # 16 patches: 0.95 keeps int(0.8) = 0
    with pytest.raises(
        ValueError, match=rf"mask_ratio must be (a ratio|ratios in \[0, 1\)) that keeps? at least one of the {LENGTH}"
    ):
        model(images, mask_ratio=mask_ratio)


def test_a_mask_that_removes_every_patch_or_has_no_row_is_refused(images):
    model = MaskedAutoencoderViT(TINY)
    with pytest.raises(ValueError, match="mask must be a mask that keeps at least one patch, got a mask removing all"):
        model(images, mask=torch.ones(2, LENGTH, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must be a mask of at least one row .*shape \(0, 16\)"):
        model(images[:0], mask=torch.zeros(0, LENGTH, dtype=torch.bool))


@pytest.mark.parametrize("ratio", [np.float32(0.5), np.float64(0.5), np.float16(0.5)])
def test_numpy_scalar_ratios_are_numbers(images, ratio):
    generator = torch.Generator().manual_seed(0)
    out = MaskedAutoencoderViT(TINY)(images, mask_ratio=ratio, generator=generator)
    assert float(out.mask.mean()) == 0.5
    assert (
        RandomMasking(ratio).mask_ratio == 0.5 and MaskedAutoencoderViT(TINY, mask_ratio=ratio).config.mask_ratio == 0.5
    )


def test_norm_pix_loss_on_one_value_per_patch_is_finite():
    config = TINY.replace(img_size=4, patch_size=1, in_chans=1, norm_pix_loss=True)  # a patch is one value
    model = MaskedAutoencoderViT(config)
    out = model(torch.randn(2, 1, 4, 4))
    assert torch.isfinite(out.loss)
    pred, target = torch.randn(2, 16, 1), torch.randn(2, 16, 1)
    # A patch of one value has zero variance: normalised, it is 0, and the loss is the prediction's square.
    torch.testing.assert_close(mae_loss(pred, target, torch.ones(2, 16), norm_pix_loss=True), pred.pow(2).mean())
