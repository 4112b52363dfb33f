import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masked_autoencoder import RandomMasking


def _official_random_masking(x, mask_ratio, noise):
    """The official algorithm, step by step (repeat-gather, ones-then-unshuffle mask)."""
    n, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, dim))
    mask = torch.ones([n, length])
    mask[:, :len_keep] = 0
    return kept, torch.gather(mask, dim=1, index=ids_restore), ids_restore


@pytest.mark.parametrize("mask_ratio", [0.0, 0.5, 0.75, 0.9])
def test_noise_reproduces_the_official_masking_exactly(mask_ratio):
    tokens, noise = torch.randn(3, 49, 8), torch.rand(3, 49)
    out = RandomMasking(mask_ratio)(tokens, noise=noise)
    kept, mask, ids_restore = _official_random_masking(tokens, mask_ratio, noise)
    assert torch.equal(out.kept, kept)
    assert torch.equal(out.mask, mask)
    assert torch.equal(out.ids_restore, ids_restore)


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(1, 64), mask_ratio=st.floats(0.0, 0.99), seed=st.integers(0, 99))
def test_masking_invariants(batch, length, mask_ratio, seed):
    tokens = torch.randn(batch, length, 3)
    out = RandomMasking(mask_ratio)(tokens, generator=torch.Generator().manual_seed(seed))
    keep = int(length * (1 - mask_ratio))
    assert out.kept.shape == (batch, keep, 3)
    assert out.ids_keep.shape == (batch, keep)
    assert torch.equal(out.mask.sum(dim=1), torch.full((batch,), float(length - keep)))
    # ids_restore undoes the shuffle: the kept ids sit at restored positions < K.
    assert torch.equal(torch.gather(out.ids_restore, 1, out.ids_keep), torch.arange(keep).expand(batch, -1))
    assert torch.equal(out.ids_restore.sort(dim=1).values, torch.arange(length).expand(batch, -1))
    assert torch.equal(out.kept, tokens[torch.arange(batch)[:, None], out.ids_keep])
    assert not out.mask.gather(1, out.ids_keep).any()


def test_generator_makes_masks_reproducible_without_touching_global_rng():
    tokens = torch.randn(2, 16, 4)
    masking = RandomMasking()
    state = torch.get_rng_state()
    first = masking(tokens, generator=torch.Generator().manual_seed(7))
    second = masking(tokens, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.ids_restore, second.ids_restore)
    assert not torch.equal(first.ids_restore, masking(tokens, generator=torch.Generator().manual_seed(8)).ids_restore)


def test_mask_ratio_argument_overrides_the_default():
    out = RandomMasking(0.75)(torch.randn(1, 16, 2), mask_ratio=0.5)
    assert out.kept.shape[1] == 8


def test_caller_mask_keeps_unmasked_patches_in_image_order():
    tokens = torch.randn(2, 6, 4)
    mask = torch.tensor([[True, False, True, False, False, True], [False, True, True, True, False, False]])
    out = RandomMasking()(tokens, mask=mask)
    assert torch.equal(out.ids_keep, torch.tensor([[1, 3, 4], [0, 4, 5]]))
    assert torch.equal(out.kept, tokens[torch.arange(2)[:, None], out.ids_keep])
    assert torch.equal(out.mask, mask.float())
    assert torch.equal(torch.gather(out.ids_restore, 1, out.ids_keep), torch.arange(3).expand(2, -1))


def test_mask_dtype_follows_the_tokens():
    assert RandomMasking()(torch.randn(1, 8, 2, dtype=torch.float64)).mask.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\), got 1.0"),
        ({"noise": torch.rand(2, 15)}, r"noise must be a \(2, 16\) tensor of a floating-point dtype on cpu"),
        (
            {"noise": torch.randint(0, 9, (2, 16))},
            r"noise must be .*, got a tensor of shape \(2, 16\), dtype torch.int64",
        ),
        ({"noise": torch.rand(2, 16, device="meta")}, "noise must be .* on cpu, got .* on meta"),
        ({"noise": [0.1] * 16}, "noise must be .*, got a list"),
        ({"mask": torch.ones(2, 16)}, r"mask must be a \(2, 16\) tensor of dtype torch.bool"),
        ({"mask": torch.ones(2, 8, dtype=torch.bool)}, r"mask must be a \(2, 16\) tensor"),
        (
            {"mask": torch.arange(32).reshape(2, 16) < 9},
            r"mask must be the same number of removed patches in every row",
        ),
        ({"mask": torch.ones(2, 16, dtype=torch.bool), "noise": torch.rand(2, 16)}, "noise must be None when a mask"),
        ({"mask": torch.ones(2, 16, dtype=torch.bool), "mask_ratio": 0.5}, "mask_ratio must be None when a mask"),
        ({"noise": torch.rand(2, 16), "generator": torch.Generator()}, "generator must be None when noise is given"),
    ],
)
def test_bad_masking_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomMasking()(torch.randn(2, 16, 4), **kwargs)


def test_bad_tokens_and_ratio_raise_value_error():
    with pytest.raises(ValueError, match=r"tokens must be \(B, L, D\), got a tensor of shape \(16, 4\)"):
        RandomMasking()(torch.randn(16, 4))
    with pytest.raises(ValueError, match=r"mask_ratio must be a number in \[0, 1\), got 1.5"):
        RandomMasking(1.5)
