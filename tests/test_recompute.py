"""recomputed_in_backward, and the Mlp option built on it: the GELU's output recomputed in backward, not kept."""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from torch import nn
from torch.utils.checkpoint import checkpoint

from masked_autoencoder import MaskedAutoencoderViT
from masked_autoencoder.layers import Mlp
from masked_autoencoder.recompute import recomputed_in_backward

EXACT = {"rtol": 0.0, "atol": 0.0}


def _mlp(recompute: bool = False) -> tuple[Mlp, torch.Tensor]:
    """A small Mlp (recomputing only if told: the default is tested as it is) and an input that needs grad."""
    torch.manual_seed(0)
    mlp = Mlp(8, 32)
    if recompute:
        mlp.recompute_activation = True
    return mlp, torch.randn(2, 3, 8, requires_grad=True)


def _written_out(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    return mlp.fc2(mlp.act(mlp.fc1(x)))


def _grads(mlp: nn.Module, x: torch.Tensor, output: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(output.pow(2).sum(), [x, *mlp.parameters()]))


def _assert_all_equal(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours, theirs, **EXACT)


def _activation_outlives_forward(mlp: Mlp, x: torch.Tensor) -> bool:
    """Whether the GELU's output is still alive (kept by autograd) after the forward pass."""
    refs = []
    handle = mlp.act.register_forward_hook(lambda module, args, out: refs.append(weakref.ref(out)))
    out = mlp(x)
    handle.remove()
    gc.collect()
    alive = refs[0]() is not None
    del out
    return alive


def test_mlp_keeps_the_activation_for_backward_unless_told_to_recompute():
    mlp, x = _mlp()
    assert _activation_outlives_forward(mlp, x)
    mlp.recompute_activation = True
    assert not _activation_outlives_forward(mlp, x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_recomputation_gives_the_values_and_gradients_without_it(approximate):
    mlp, x = _mlp(recompute=True)
    mlp.act = nn.GELU(approximate=approximate)
    got = mlp(x)
    got_grads = _grads(mlp, x, got)
    mlp.recompute_activation = False
    expected = mlp(x)
    torch.testing.assert_close(got, expected, **EXACT)
    _assert_all_equal(got_grads, _grads(mlp, x, expected))


@pytest.mark.parametrize("recompute", [True, False])
def test_autograd_saves_the_activation_only_without_recomputation(recompute):
    mlp, x = _mlp(recompute)
    activations, saved = [], []
    mlp.act.register_forward_hook(lambda module, args, out: activations.append(out.untyped_storage().data_ptr()))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = mlp(x)
    assert (activations[0] in saved) is not recompute
    del out


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("change", ["hook_fc2", "hook_act", "replace_fc2"])
def test_mlp_runs_replaced_or_hooked_layers_as_written(change, recompute):
    mlp, x = _mlp(recompute)
    calls = []
    if change == "hook_fc2":
        mlp.fc2.register_forward_hook(lambda *args: calls.append("fc2"))
    elif change == "hook_act":
        # A hook that changes the output: with recomputation, backward must see the changed output too.
        mlp.act.register_forward_hook(lambda module, args, out: calls.append("act") or out * 2)
    else:

        class Doubled(nn.Linear):  # as a LoRA or quantised replacement would: its own forward
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                calls.append("replaced")
                return 2 * super().forward(x)

        replaced = Doubled(32, 8)
        replaced.load_state_dict(mlp.fc2.state_dict())
        mlp.fc2 = replaced
    expected = _written_out(mlp, x)
    expected_grads = _grads(mlp, x, expected)
    calls.clear()
    got = mlp(x)
    assert len(calls) == 1
    torch.testing.assert_close(got, expected, **EXACT)
    _assert_all_equal(_grads(mlp, x, got), expected_grads)


def test_recomputation_under_gradient_checkpointing_and_bf16_autocast_gives_the_same_gradients():
    mlp, x = _mlp(recompute=True)
    expected = _grads(mlp, x, x + _written_out(mlp, x))
    got = _grads(mlp, x, checkpoint(lambda t: t + mlp(t), x, use_reentrant=False))
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = mlp(x), _written_out(mlp, x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, **EXACT)
    for ours, theirs in zip(_grads(mlp, x, got.float()), _grads(mlp, x, expected.float()), strict=True):
        assert ours.dtype == x.dtype
        torch.testing.assert_close(ours, theirs, **EXACT)


def test_recomputed_views_keep_their_shape_strides_and_offset():
    base = torch.randn(4, 6, requires_grad=True)
    hidden = base * 1.0
    activated = F.gelu(hidden)
    with recomputed_in_backward(activated, lambda: F.gelu(hidden)):
        out = (activated[1:, ::2] * torch.arange(3.0)).sum() + (activated.t() @ torch.ones(4)).sum()
    again = F.gelu(base * 1.0)
    expected = (again[1:, ::2] * torch.arange(3.0)).sum() + (again.t() @ torch.ones(4)).sum()
    torch.testing.assert_close(torch.autograd.grad(out, base)[0], torch.autograd.grad(expected, base)[0])


def test_without_autograd_the_recomputing_mlp_is_the_written_out_layers():
    mlp, x = _mlp(recompute=True)
    with torch.no_grad():
        out = mlp(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, _written_out(mlp, x).detach(), **EXACT)


def test_under_torch_compile_the_mlp_leaves_recomputation_to_the_compiler():
    mlp, x = _mlp(recompute=True)
    graphs = []

    def record(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(graph.code)
        return graph.forward

    torch._dynamo.reset()
    compiled = torch.compile(mlp, backend=record)(x)
    torch.testing.assert_close(compiled, _written_out(mlp, x), **EXACT)
    assert len(graphs) == 1 and "gelu" in graphs[0]


# --- the whole model: off by default, set_activation_recompute, gradient checkpointing ----------------------------


def _model() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).train()


def _mlps(model: nn.Module) -> list[Mlp]:
    return [module for module in model.modules() if isinstance(module, Mlp)]


def _loss(model: MaskedAutoencoderViT, images: torch.Tensor) -> torch.Tensor:
    noise = torch.rand(
        images.shape[0], TINY.grid_size[0] * TINY.grid_size[1], generator=torch.Generator().manual_seed(2)
    )
    return model(images, noise=noise).loss


def _step(model: MaskedAutoencoderViT, images: torch.Tensor) -> list[torch.Tensor]:
    """The loss and every parameter's gradient of one training step."""
    loss = _loss(model, images)
    return [loss.detach(), *torch.autograd.grad(loss, list(model.parameters()))]


class _CountingSaveOnCpu(torch.autograd.graph.save_on_cpu):
    """``save_on_cpu`` that also records the storage of every tensor it packs."""

    def __init__(self) -> None:
        super().__init__()
        self.packed: list[int] = []
        pack = self.pack_hook
        self.pack_hook = lambda tensor: self.packed.append(tensor.untyped_storage().data_ptr()) or pack(tensor)


def test_default_model_runs_every_mlp_hook_once_per_training_step(images):
    model = _model()
    calls: dict[str, int] = {}
    for name, module in model.named_modules():
        if name.endswith(("mlp.act", "mlp.fc2")):
            calls[name] = 0
            module.register_forward_hook(lambda *args, name=name: calls.__setitem__(name, calls[name] + 1))
    _loss(model, images).backward()
    assert len(calls) == 2 * len(_mlps(model)) and set(calls.values()) == {1}


def test_default_model_lets_save_on_cpu_pack_every_mlp_activation(images):
    def packed_by_save_on_cpu(model: MaskedAutoencoderViT) -> tuple[list[int], list[int]]:
        """What save_on_cpu packs in a forward pass, and the storages of the GELUs' outputs."""
        activations: list[int] = []
        for mlp in _mlps(model):
            mlp.act.register_forward_hook(
                lambda module, args, out: activations.append(out.untyped_storage().data_ptr())
            )
        offload = _CountingSaveOnCpu()
        with offload:
            _loss(model, images)
        return offload.packed, activations

    plain = _model()
    for mlp in _mlps(plain):
        mlp.recompute_activation = False
    packed, activations = packed_by_save_on_cpu(_model())
    assert len(packed) == len(packed_by_save_on_cpu(plain)[0])
    assert set(activations) <= set(packed)


def test_activation_recompute_gives_the_same_loss_and_gradients(images):
    model = _model()
    expected = _step(model, images)
    model.set_activation_recompute(True)
    assert all(mlp.recompute_activation for mlp in _mlps(model))
    _assert_all_equal(_step(model, images), expected)
    model.set_activation_recompute(False)
    assert not any(mlp.recompute_activation for mlp in _mlps(model))


def test_grad_checkpointing_turns_activation_recompute_off_and_refuses_it(images):
    model = _model()
    expected = _step(model, images)
    model.set_activation_recompute(True)
    model.set_grad_checkpointing(True)
    assert not any(mlp.recompute_activation for mlp in _mlps(model))
    message = (
        r"enable must be False while gradient checkpointing is on \(it already recomputes whole blocks\), got True"
    )
    with pytest.raises(ValueError, match=message):
        model.set_activation_recompute(True)
    _assert_all_equal(_step(model, images), expected)
    model.set_grad_checkpointing(False)
    model.set_activation_recompute(True)
    _assert_all_equal(_step(model, images), expected)
