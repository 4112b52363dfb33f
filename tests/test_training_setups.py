"""The model in every single-process training setup: gradient checkpointing, torch.compile, autocast, determinism.

Distributed data parallel and FSDP2 are in ``test_distributed.py``; docs/training.md tells the findings.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import TINY
from torch import nn

import masked_autoencoder.loss as loss_module
from masked_autoencoder import MAEConfig, MAEEncoder, MaskedAutoencoderViT, normalized_pixels, patchify
from masked_autoencoder.masking import num_kept

# The training step, random masking and inference run on inductor, the backend users deploy (generated C++,
# compiled with gcc). Tests about tracing alone use aot_eager: fullgraph=True is decided by dynamo, the same for
# every backend, and inductor's cold C++ build costs ~1.5 s per kernel on 2 cores (docs/training.md).
DEPLOYED = "inductor"
TRACE_ONLY = "aot_eager"
LENGTH = TINY.grid_size[0] * TINY.grid_size[1]
REMOVED_PER_ROW = LENGTH - num_kept(LENGTH, TINY.mask_ratio)
# Inductor's import of torch.utils.mkldnn uses torch.jit.script_method, which torch itself deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
EXACT = {"rtol": 0.0, "atol": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _inductor_cache_in_a_temporary_folder(tmp_path_factory):
    """Inductor caches its generated kernels under /tmp by default: keep them in the test's own folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


COMPILED = {"rtol": 1e-5, "atol": 1e-5}  # compiled kernels fuse and reorder float sums


def _model(config: MAEConfig = TINY, seed: int = 0, **overrides: object) -> MaskedAutoencoderViT:
    torch.manual_seed(seed)
    return MaskedAutoencoderViT(config, **overrides).train()


def _noise(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, LENGTH, generator=torch.Generator().manual_seed(2))


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], **tolerance: float) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=lambda m, name=name: f"{name}: {m}", **tolerance)


# --- gradient checkpointing --------------------------------------------------------------------------------------


def _mae_step(
    model: MaskedAutoencoderViT, images: torch.Tensor, checkpointing: bool, autocast: torch.dtype | None = None
) -> tuple[torch.Tensor, dict]:
    model.set_grad_checkpointing(checkpointing)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        loss = model(images, noise=_noise()).loss
    loss.backward()
    return loss.detach(), _grads(model)


def _features_step(encoder: MAEEncoder, images: torch.Tensor, checkpointing: bool) -> tuple[torch.Tensor, dict]:
    encoder.set_grad_checkpointing(checkpointing)
    encoder.zero_grad(set_to_none=True)
    features = encoder.forward_features(images)
    # A fixed random projection, so that every token and channel gets its own gradient.
    weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(3))
    (features * weights).sum().backward()
    return features.detach(), _grads(encoder)


def test_grad_checkpointing_gives_the_same_loss_and_gradients(images):
    model = _model()
    loss, grads = _mae_step(model, images, checkpointing=False)
    loss_ckpt, grads_ckpt = _mae_step(model, images, checkpointing=True)
    # Recomputation runs the same kernels on the same shapes: bitwise equal on CPU.
    torch.testing.assert_close(loss_ckpt, loss, **EXACT)
    _assert_same(grads_ckpt, grads, **EXACT)


def test_grad_checkpointing_gives_the_same_encoder_features_and_gradients(images):
    torch.manual_seed(0)
    encoder = MAEEncoder(TINY).train()
    features, grads = _features_step(encoder, images, checkpointing=False)
    features_ckpt, grads_ckpt = _features_step(encoder, images, checkpointing=True)
    torch.testing.assert_close(features_ckpt, features, **EXACT)
    _assert_same(grads_ckpt, grads, **EXACT)


def test_grad_checkpointing_replays_drop_path_randomness():
    # Stochastic depth draws random numbers inside the blocks: the recomputation must draw the same ones.
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    encoder = MAEEncoder(TINY, drop_path_rate=0.5).train()
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(5)
        results.append(_features_step(encoder, images, checkpointing))
    torch.testing.assert_close(results[1][0], results[0][0], **EXACT)
    _assert_same(results[1][1], results[0][1], **EXACT)


def _count_block_calls(model: MaskedAutoencoderViT) -> dict[str, int]:
    """Hook every encoder and decoder block; the dict counts calls made in forward and in backward."""
    calls = {"forward": 0, "backward": 0, "in_backward": False}

    def count(*_: object) -> None:
        calls["backward" if calls["in_backward"] else "forward"] += 1

    for block in [*model.blocks, *model.decoder_blocks]:
        # A pre-hook: the recomputation stops as soon as it has rebuilt the saved tensors, before forward hooks run.
        block.register_forward_pre_hook(count)
    return calls


@pytest.mark.parametrize("checkpointing", [False, True])
def test_grad_checkpointing_recomputes_every_block_in_backward(images, checkpointing):
    model = _model()
    model.set_grad_checkpointing(checkpointing)
    calls = _count_block_calls(model)
    loss = model(images, noise=_noise()).loss
    calls["in_backward"] = True
    loss.backward()
    num_blocks = len(model.blocks) + len(model.decoder_blocks)
    assert calls["forward"] == num_blocks
    assert calls["backward"] == (num_blocks if checkpointing else 0)


def test_grad_checkpointing_stores_fewer_activations(images):
    model = _model()

    def saved_bytes(checkpointing: bool) -> int:
        model.set_grad_checkpointing(checkpointing)
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(images, noise=_noise()).loss.backward()
        parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        return sum(size for pointer, size in storages.items() if pointer not in parameters)

    # A block keeps one tensor instead of about ten; in this tiny model the embedding and loss keep the rest.
    assert saved_bytes(True) < 0.6 * saved_bytes(False)


def test_grad_checkpointing_is_not_used_without_grad(images):
    model = _model().eval()
    calls = _count_block_calls(model)
    with torch.no_grad():
        expected = model(images, noise=_noise())
        model.set_grad_checkpointing(True)
        actual = model(images, noise=_noise())
    assert calls["forward"] == 2 * (len(model.blocks) + len(model.decoder_blocks))
    torch.testing.assert_close(actual.pred, expected.pred, **EXACT)


# --- torch.compile ------------------------------------------------------------------------------------------------


def _compile(module: nn.Module | object, backend: str) -> object:
    torch._dynamo.reset()  # each test counts on a fresh cache: no recompile limit carried over from another test
    return torch.compile(module, fullgraph=True, dynamic=False, backend=backend)


def _sgd_steps(model: nn.Module, forward: object, images: torch.Tensor, steps: int, **kwargs: object) -> list:
    """Run ``steps`` SGD steps; returns per step (loss, pred, grads) and finally the parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        out = forward(images, **kwargs)
        out.loss.backward()
        history.append((out.loss.detach(), out.pred.detach(), _grads(model)))
        optimizer.step()
    return [*history, {name: p.detach().clone() for name, p in model.named_parameters()}]


def test_compiled_training_step_matches_eager_with_the_same_noise(images):
    eager = _model()
    compiled_model = copy.deepcopy(eager)
    compiled = _compile(compiled_model, DEPLOYED)
    expected = _sgd_steps(eager, eager, images, steps=2, noise=_noise())
    # The second step must run the first step's graph on the updated weights: no recompilation.
    with torch._dynamo.config.patch(error_on_recompile=True):
        actual = _sgd_steps(compiled_model, compiled, images, steps=2, noise=_noise())
    for (loss, pred, grads), (loss_e, pred_e, grads_e) in zip(actual[:-1], expected[:-1], strict=True):
        torch.testing.assert_close(loss, loss_e, **COMPILED)
        torch.testing.assert_close(pred, pred_e, **COMPILED)
        _assert_same(grads, grads_e, **COMPILED)
    _assert_same(actual[-1], expected[-1], **COMPILED)


def test_compiled_random_masking_has_no_graph_break_and_removes_the_same_count_per_row(images):
    model = _model()
    compiled = _compile(model, DEPLOYED)
    torch.manual_seed(7)
    first = compiled(images)
    first.loss.backward()
    second = compiled(images)
    for out in (first, second):
        assert out.mask.sum(dim=1).tolist() == [REMOVED_PER_ROW] * images.shape[0]
        assert torch.isfinite(out.loss)
    assert not torch.equal(first.mask, second.mask)  # fresh noise on every call, not a constant baked in
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_compiled_random_masking_equals_eager_with_the_same_seed(images):
    # Through aot_eager the graph calls torch.rand on the global generator. Inductor draws its own random
    # numbers instead (same distribution, other values): there one seed gives other masks than eager.
    model = _model()
    compiled = _compile(model, TRACE_ONLY)
    torch.manual_seed(7)
    actual = compiled(images)
    torch.manual_seed(7)
    expected = model(images)
    torch.testing.assert_close(actual.mask, expected.mask, **EXACT)
    torch.testing.assert_close(actual.loss, expected.loss, **COMPILED)


def test_compiled_inference_matches_eager(images):
    model = _model().eval()
    compiled = _compile(model, DEPLOYED)
    with torch.no_grad():
        actual, expected = compiled(images, noise=_noise()), model(images, noise=_noise())
    for field in dataclasses.fields(expected):
        name = field.name
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), **COMPILED, msg=name)


def test_compiled_encoder_features_match_eager_forward_and_backward(images):
    torch.manual_seed(0)
    encoder = MAEEncoder(TINY).train()
    compiled = _compile(encoder.forward_features, TRACE_ONLY)
    expected = encoder.forward_features(images)
    expected.sum().backward()
    grads = _grads(encoder)
    encoder.zero_grad(set_to_none=True)
    actual = compiled(images)
    actual.sum().backward()
    torch.testing.assert_close(actual, expected, **COMPILED)
    _assert_same(_grads(encoder), grads, **COMPILED)


def test_compiled_model_with_grad_checkpointing_matches_eager(images):
    eager = _model()
    compiled_model = copy.deepcopy(eager)
    compiled_model.set_grad_checkpointing(True)
    compiled = _compile(compiled_model, TRACE_ONLY)
    expected = _sgd_steps(eager, eager, images, steps=1, noise=_noise())
    actual = _sgd_steps(compiled_model, compiled, images, steps=1, noise=_noise())
    torch.testing.assert_close(actual[0][0], expected[0][0], **COMPILED)
    _assert_same(actual[0][2], expected[0][2], **COMPILED)


def test_generator_cannot_be_traced_with_fullgraph_and_noise_drawn_from_it_is_the_equivalent(images):
    # Dynamo (torch 2.13) cannot take a torch.Generator into a graph ("Failed to convert args/kwargs to
    # proxy"). The documented way: draw the noise from the generator outside and pass noise=.
    model = _model()
    compiled = _compile(model, TRACE_ONLY)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="Generator"):
        compiled(images, generator=torch.Generator().manual_seed(4))
    expected = model(images, generator=torch.Generator().manual_seed(4))
    noise = torch.rand(images.shape[0], LENGTH, generator=torch.Generator().manual_seed(4))
    actual = _compile(model, TRACE_ONLY)(images, noise=noise)
    torch.testing.assert_close(actual.mask, expected.mask, **EXACT)
    torch.testing.assert_close(actual.loss, expected.loss, **COMPILED)


# --- mixed precision ----------------------------------------------------------------------------------------------


def test_bf16_autocast_trains_with_a_float32_loss_and_float32_pixel_statistics(images, monkeypatch):
    model = _model(dataclasses.replace(TINY, norm_pix_loss=True))
    seen: list[tuple[torch.dtype, torch.Tensor]] = []

    def recording(target: torch.Tensor, *args: object) -> torch.Tensor:
        result = normalized_pixels(target, *args)
        seen.append((target.dtype, result))
        return result

    monkeypatch.setattr(loss_module, "normalized_pixels", recording)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, noise=_noise())
    out.loss.backward()
    assert out.pred.dtype == torch.bfloat16  # autocast did run the decoder in bf16
    assert out.loss.dtype == torch.float32
    [(target_dtype, target)] = seen
    assert target_dtype == torch.float32
    torch.testing.assert_close(target, normalized_pixels(patchify(images, TINY.patch_size)), **EXACT)
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    with torch.no_grad():
        full_precision = model(images, noise=_noise()).loss
    torch.testing.assert_close(out.loss.detach(), full_precision, rtol=5e-2, atol=0.0)


def test_bf16_autocast_with_grad_checkpointing_gives_the_same_gradients(images):
    # checkpoint replays the autocast state: the recomputed blocks run in bf16 as the first pass did.
    model = _model()
    loss, grads = _mae_step(model, images, checkpointing=False, autocast=torch.bfloat16)
    loss_ckpt, grads_ckpt = _mae_step(model, images, checkpointing=True, autocast=torch.bfloat16)
    torch.testing.assert_close(loss_ckpt, loss, **EXACT)
    _assert_same(grads_ckpt, grads, **EXACT)


def _images_with_constant_patches() -> torch.Tensor:
    """(4, 3, 32, 32): a constant image, a constant patch, a constant 1 x 2 patch block, one random image."""
    imgs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    imgs[0] = 0.5
    imgs[1, :, :8, :8] = -1.0
    imgs[2, :, 8:16, 8:24] = 3.0
    return imgs


def test_fp16_autocast_with_grad_scaler_stays_finite_on_constant_patches():
    model = _model(dataclasses.replace(TINY, norm_pix_loss=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Moderate, not the default 65536: there a larger model's first scaled gradients can overflow fp16, and the
    # scaler skips those steps by design, which would hide a real inf or NaN behind the expected skips.
    init_scale = 2.0**10
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    imgs = _images_with_constant_patches()
    before = copy.deepcopy(model.state_dict())
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(imgs)
        assert out.pred.dtype == torch.float16
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        scaler.scale(out.loss).backward()
        scaler.unscale_(optimizer)
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), name
        scaler.step(optimizer)
        scaler.update()
        assert scaler.get_scale() == init_scale  # no step was skipped for an inf or NaN
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert len(changed) == len(list(model.parameters()))


# --- determinism --------------------------------------------------------------------------------------------------


def _random_run(seed: int, **overrides: object) -> tuple[MaskedAutoencoderViT, object, dict]:
    """Build a model from ``seed`` and run one step with random masking (and drop path, if asked)."""
    model = _model(seed=seed, **overrides)
    torch.manual_seed(seed + 100)
    out = model(torch.randn(2, 3, 32, 32))
    out.loss.backward()
    return model, out, _grads(model)


def _assert_same_run(run: tuple, other: tuple) -> None:
    (model, out, grads), (model_o, out_o, grads_o) = run, other
    _assert_same(model_o.state_dict(), model.state_dict(), **EXACT)
    for field in dataclasses.fields(out):
        torch.testing.assert_close(getattr(out_o, field.name), getattr(out, field.name), **EXACT)
    _assert_same(grads_o, grads, **EXACT)


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.2])
def test_same_seed_gives_identical_models_masks_loss_and_gradients(drop_path_rate):
    first = _random_run(0, drop_path_rate=drop_path_rate)
    _assert_same_run(first, _random_run(0, drop_path_rate=drop_path_rate))
    assert not torch.equal(_random_run(1, drop_path_rate=drop_path_rate)[1].mask, first[1].mask)


def test_runs_are_identical_under_torch_deterministic_algorithms():
    first = _random_run(0)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _assert_same_run(first, _random_run(0))
    finally:
        torch.use_deterministic_algorithms(previous)


def test_same_generator_seed_gives_identical_runs_and_leaves_the_global_rng_alone(images):
    results = []
    for _ in range(2):
        model = _model(seed=0)
        state = torch.get_rng_state()
        out = model(images, generator=torch.Generator().manual_seed(3))
        assert torch.equal(torch.get_rng_state(), state)
        out.loss.backward()
        results.append((model, out, _grads(model)))
    _assert_same_run(results[0], results[1])
