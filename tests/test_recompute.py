"""gelu_linear: the values and gradients of F.linear(F.gelu(.)), saving only its input; how Mlp uses it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from masked_autoencoder.layers import Mlp
from masked_autoencoder.recompute import gelu_linear


def _inputs(shape: tuple[int, ...], bias: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch.manual_seed(0)
    hidden = torch.randn(*shape, 12, requires_grad=True)
    weight = torch.randn(5, 12, requires_grad=True)
    return hidden, weight, torch.randn(5, requires_grad=True) if bias else None


def _grads(output: torch.Tensor, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    wanted = [t for t in tensors if t is not None and t.requires_grad]
    grads = iter(torch.autograd.grad(output.pow(2).sum(), wanted))
    return [next(grads) if t is not None and t.requires_grad else None for t in tensors]


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_the_two_calls(shape, bias):
    hidden, weight, b = _inputs(shape, bias)
    got, expected = gelu_linear(hidden, weight, b), F.linear(F.gelu(hidden), weight, b)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for ours, theirs in zip(_grads(got, hidden, weight, b), _grads(expected, hidden, weight, b), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("frozen", ["hidden", "weight"])
def test_gradients_only_for_what_requires_them(frozen):
    hidden, weight, bias = _inputs((2, 3))
    {"hidden": hidden, "weight": weight}[frozen].requires_grad_(False)
    got = _grads(gelu_linear(hidden, weight, bias), hidden, weight, bias)
    expected = _grads(F.linear(F.gelu(hidden), weight, bias), hidden, weight, bias)
    for ours, theirs in zip(got, expected, strict=True):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def _saved_storages(run) -> set[int]:
    saved: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return saved


def test_keeps_only_its_input_and_the_weight_for_backward():
    hidden, weight, bias = _inputs((2, 3))
    hidden = hidden * 1.0  # a non-leaf, as fc1's output is
    pointers = {t.untyped_storage().data_ptr() for t in (hidden, weight)}
    assert _saved_storages(lambda: gelu_linear(hidden, weight, bias)) == pointers
    assert len(_saved_storages(lambda: F.linear(F.gelu(hidden), weight, bias)) - pointers) == 1  # the GELU's output


def test_without_autograd_it_is_the_two_calls():
    hidden, weight, bias = _inputs((2, 3))
    with torch.no_grad():
        out = gelu_linear(hidden, weight, bias)
    assert out.grad_fn is None
    torch.testing.assert_close(out, F.linear(F.gelu(hidden), weight, bias).detach(), rtol=0, atol=0)


def test_under_bf16_autocast_it_runs_the_linear_in_bf16_with_float32_weight_gradients():
    hidden, weight, bias = _inputs((2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gelu_linear(hidden.bfloat16(), weight, bias)
        expected = F.linear(F.gelu(hidden.bfloat16()), weight, bias)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    ours, theirs = _grads(got.float(), weight, bias), _grads(expected.float(), weight, bias)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


def _mlp() -> tuple[Mlp, torch.Tensor]:
    torch.manual_seed(0)
    return Mlp(8, 32), torch.randn(2, 3, 8, requires_grad=True)


def test_mlp_recomputes_the_gelu_in_training():
    mlp, x = _mlp()
    written_out = _saved_storages(lambda: mlp.fc2(mlp.act(mlp.fc1(x))))
    assert len(_saved_storages(lambda: mlp(x))) == len(written_out) - 1  # all but the GELU's output


@pytest.mark.parametrize("change", ["hook_fc2", "hook_act", "replace_fc2", "tanh_gelu"])
def test_mlp_runs_replaced_or_hooked_layers_as_written(change):
    mlp, x = _mlp()
    calls = []
    if change == "hook_fc2":
        mlp.fc2.register_forward_hook(lambda *args: calls.append("fc2"))
    elif change == "hook_act":
        mlp.act.register_forward_pre_hook(lambda *args: calls.append("act"))
    elif change == "replace_fc2":

        class Doubled(nn.Linear):  # as a LoRA or quantised replacement would: its own forward
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                calls.append("replaced")
                return 2 * super().forward(x)

        replaced = Doubled(32, 8)
        replaced.load_state_dict(mlp.fc2.state_dict())
        mlp.fc2 = replaced
    else:
        mlp.act = nn.GELU(approximate="tanh")
    expected = mlp.fc2(mlp.act(mlp.fc1(x)))
    calls.clear()
    torch.testing.assert_close(mlp(x), expected, rtol=0, atol=0)
    assert len(calls) == (0 if change == "tanh_gelu" else 1)


def test_under_torch_compile_the_mlp_leaves_recomputation_to_the_compiler():
    mlp, x = _mlp()
    graphs = []

    def record(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(graph.code)
        return graph.forward

    torch._dynamo.reset()
    compiled = torch.compile(mlp, backend=record)(x)
    torch.testing.assert_close(compiled, mlp.fc2(mlp.act(mlp.fc1(x))), rtol=0, atol=0)
    assert "gelu" in graphs[0] and "autograd_function_apply" not in graphs[0]
