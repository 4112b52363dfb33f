"""recomputed_in_backward, and the Mlp that uses it: the GELU's output is not kept for backward but recomputed."""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from masked_autoencoder.layers import Mlp
from masked_autoencoder.recompute import recomputed_in_backward


def _mlp() -> tuple[Mlp, torch.Tensor]:
    torch.manual_seed(0)
    return Mlp(8, 32), torch.randn(2, 3, 8, requires_grad=True)


def _written_out(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    return mlp.fc2(mlp.act(mlp.fc1(x)))


def _grads(mlp: nn.Module, x: torch.Tensor, output: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(output.pow(2).sum(), [x, *mlp.parameters()]))


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


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_mlp_values_and_gradients_equal_the_written_out_layers(approximate):
    mlp, x = _mlp()
    mlp.act = nn.GELU(approximate=approximate)
    got, expected = mlp(x), _written_out(mlp, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for ours, theirs in zip(_grads(mlp, x, got), _grads(mlp, x, expected), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_mlp_keeps_no_activation_for_backward_unless_told_not_to_recompute():
    mlp, x = _mlp()
    assert not _activation_outlives_forward(mlp, x)
    mlp.recompute_activation = False
    assert _activation_outlives_forward(mlp, x)


@pytest.mark.parametrize("recompute", [True, False])
def test_autograd_saves_the_activation_only_without_recomputation(recompute):
    mlp, x = _mlp()
    mlp.recompute_activation = recompute
    activations, saved = [], []
    mlp.act.register_forward_hook(lambda module, args, out: activations.append(out.untyped_storage().data_ptr()))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = mlp(x)
    assert (activations[0] in saved) is not recompute
    del out


@pytest.mark.parametrize("change", ["hook_fc2", "hook_act", "replace_fc2"])
def test_mlp_runs_replaced_or_hooked_layers_as_written(change):
    mlp, x = _mlp()
    calls = []
    if change == "hook_fc2":
        mlp.fc2.register_forward_hook(lambda *args: calls.append("fc2"))
    elif change == "hook_act":
        # A hook that changes the output: the recomputation in backward runs it again.
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
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for ours, theirs in zip(_grads(mlp, x, got), expected_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_under_gradient_checkpointing_and_bf16_autocast_gradients_are_unchanged():
    mlp, x = _mlp()
    expected = _grads(mlp, x, x + _written_out(mlp, x))
    got = _grads(mlp, x, checkpoint(lambda t: t + mlp(t), x, use_reentrant=False))
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = mlp(x), _written_out(mlp, x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for ours, theirs in zip(_grads(mlp, x, got.float()), _grads(mlp, x, expected.float()), strict=True):
        assert ours.dtype == x.dtype
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_recomputed_views_keep_their_shape_strides_and_offset():
    base = torch.randn(4, 6, requires_grad=True)
    hidden = base * 1.0
    activated = F.gelu(hidden)
    with recomputed_in_backward(activated, lambda: F.gelu(hidden)):
        out = (activated[1:, ::2] * torch.arange(3.0)).sum() + (activated.t() @ torch.ones(4)).sum()
    again = F.gelu(base * 1.0)
    expected = (again[1:, ::2] * torch.arange(3.0)).sum() + (again.t() @ torch.ones(4)).sum()
    torch.testing.assert_close(torch.autograd.grad(out, base)[0], torch.autograd.grad(expected, base)[0])


def test_without_autograd_the_mlp_is_the_written_out_layers():
    mlp, x = _mlp()
    with torch.no_grad():
        out = mlp(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, _written_out(mlp, x).detach(), rtol=0, atol=0)


def test_under_torch_compile_the_mlp_leaves_recomputation_to_the_compiler():
    mlp, x = _mlp()
    graphs = []

    def record(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(graph.code)
        return graph.forward

    torch._dynamo.reset()
    compiled = torch.compile(mlp, backend=record)(x)
    torch.testing.assert_close(compiled, _written_out(mlp, x), rtol=0, atol=0)
    assert len(graphs) == 1 and "gelu" in graphs[0]
