"""fast_linear / FastLinear: F.linear's values and gradients, on oneDNN exactly where it should be, else F.linear."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import masked_autoencoder.fast_linear as fast_linear_module
from masked_autoencoder import MaskedAutoencoderViT
from masked_autoencoder.fast_linear import FastLinear, fast_linear, runs_on_onednn
from masked_autoencoder.layers import Block

WIDTH = 512  # a 512 x 512 weight: the smallest layer that runs on oneDNN
ONEDNN = pytest.mark.skipif(fast_linear_module._ONEDNN_LINEAR is None, reason="this torch build has no oneDNN")


@pytest.fixture
def onednn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """The input shapes of every oneDNN product, recorded by a spy around the real op."""
    calls: list[tuple[int, ...]] = []
    real = fast_linear_module._ONEDNN_LINEAR

    def spy(x: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(fast_linear_module, "_ONEDNN_LINEAR", spy)
    yield calls


def _layer(bias: bool = True, requires_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(WIDTH, WIDTH, generator=generator) / WIDTH**0.5).requires_grad_(requires_grad)
    b = torch.randn(WIDTH, generator=generator).requires_grad_(requires_grad) if bias else None
    return weight, b


def _grads(output: torch.Tensor, tensors: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    wanted = [t for t in tensors if t is not None and t.requires_grad]
    grads = iter(torch.autograd.grad(output.pow(2).sum(), wanted))
    return [next(grads) if t is not None and t.requires_grad else None for t in tensors]


INPUTS: dict[str, Callable[[], torch.Tensor]] = {
    "tokens": lambda: torch.randn(2, 5, WIDTH),
    "rows": lambda: torch.randn(7, WIDTH),
    "vector": lambda: torch.randn(WIDTH),
    "transposed": lambda: torch.randn(WIDTH, 6).t(),
    "strided": lambda: torch.randn(2, 8, WIDTH)[:, ::2],
    "empty": lambda: torch.randn(0, WIDTH),
}


@ONEDNN
@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_f_linear(name, bias, onednn_calls):
    torch.manual_seed(0)
    x = INPUTS[name]().requires_grad_(True)
    weight, b = _layer(bias)
    assert runs_on_onednn(x, weight, b)
    got, expected = fast_linear(x, weight, b), F.linear(x, weight, b)
    assert onednn_calls == [tuple(x.shape)]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(_grads(got, [x, weight, b]), _grads(expected, [x, weight, b]), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)


@ONEDNN
@pytest.mark.parametrize("frozen", ["x", "weight", "all"])
def test_gradients_only_for_what_requires_them(frozen, onednn_calls):
    x = torch.randn(3, WIDTH, requires_grad=frozen not in ("x", "all"))
    weight, b = _layer(requires_grad=frozen != "all")
    out = fast_linear(x, weight, b)
    assert len(onednn_calls) == 1
    if frozen == "all":
        assert out.grad_fn is None
        return
    got, expected = _grads(out, [x, weight, b]), _grads(F.linear(x, weight, b), [x, weight, b])
    for ours, theirs in zip(got, expected, strict=True):
        assert (ours is None) == (theirs is None)


@ONEDNN
def test_keeps_for_backward_what_f_linear_keeps():
    x, (weight, b) = torch.randn(4, WIDTH, requires_grad=True) * 1.0, _layer()

    def saved_bytes(run: Callable[[], torch.Tensor]) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run()
        return sum(storages.values())

    assert saved_bytes(lambda: fast_linear(x, weight, b)) == saved_bytes(lambda: F.linear(x, weight, b))


@ONEDNN
def test_second_order_gradients_equal_f_linear():
    x, (weight, b) = torch.randn(3, WIDTH, requires_grad=True), _layer()

    def gradient_penalty(linear: Callable[..., torch.Tensor]) -> torch.Tensor:
        (grad_x,) = torch.autograd.grad(linear(x, weight, b).pow(2).sum(), [x], create_graph=True)
        return torch.autograd.grad(grad_x.pow(2).sum(), [weight])[0]

    torch.testing.assert_close(gradient_penalty(fast_linear), gradient_penalty(F.linear), rtol=1e-4, atol=1e-3)


def _bf16_autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


@ONEDNN
@pytest.mark.parametrize(
    "case",
    [
        "small weight",
        "float64",
        "bf16 autocast",
        "oneDNN disabled",
        "torch.func",
        "jit trace",
        "FlopCounterMode",
        "tensor subclass",
    ],
)
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_everything_else_runs_f_linear(case, onednn_calls, monkeypatch):
    x, (weight, b) = torch.randn(3, WIDTH), _layer(requires_grad=False)
    if case == "small weight":
        weight, b = weight[: WIDTH // 2], b[: WIDTH // 2]
    elif case == "float64":
        x, weight, b = x.double(), weight.double(), b.double()
    elif case == "oneDNN disabled":
        monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # the user's switch, restored after the test
    elif case == "tensor subclass":

        class Marked(torch.Tensor):
            pass

        x = x.as_subclass(Marked)

    def run() -> torch.Tensor:
        if case == "bf16 autocast":
            with _bf16_autocast():
                return fast_linear(x, weight, b)
        if case == "FlopCounterMode":
            with FlopCounterMode(display=False) as counter:
                out = fast_linear(x, weight, b)
            assert counter.get_total_flops() == 2 * x.shape[0] * weight.numel()  # counted: F.linear's addmm
            return out
        if case == "torch.func":
            return torch.func.grad(lambda w: fast_linear(x, w, b).pow(2).sum())(weight)
        if case == "jit trace":
            traced = torch.jit.trace(lambda x: fast_linear(x, weight, b), (x,), check_trace=False)
            assert "aten::linear" in str(traced.graph)
            return traced(x)
        return fast_linear(x, weight, b)

    with torch.no_grad() if case != "torch.func" else torch.enable_grad():
        got = run()
    expected = torch.func.grad(lambda w: F.linear(x, w, b).pow(2).sum())(weight) if case == "torch.func" else None
    assert onednn_calls == []
    if expected is not None:
        torch.testing.assert_close(got, expected)


@ONEDNN
def test_under_torch_compile_it_is_one_custom_op_with_f_linear_gradients(onednn_calls):
    layer, x = FastLinear(WIDTH, WIDTH), torch.randn(3, WIDTH, requires_grad=True)
    graphs = []

    def record(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        graphs.append(graph.code)
        return graph.forward

    torch._dynamo.reset()
    torch.compile(layer, backend=record)(x)
    assert "torch.ops.masked_autoencoder.onednn_linear" in graphs[0] and "_nn.linear" not in graphs[0]
    # Through AOTAutograd (what inductor gets): the same values and gradients as F.linear.
    got = torch.compile(layer, backend="aot_eager")(x)
    expected = F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(_grads(got, [x, layer.weight]), _grads(expected, [x, layer.weight]), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    assert onednn_calls


@ONEDNN
def test_torch_export_gets_the_standard_linear():
    exported = torch.export.export(FastLinear(WIDTH, WIDTH), (torch.randn(3, WIDTH),))
    code = exported.graph_module.code
    assert "aten.linear" in code and "onednn" not in code


def test_without_onednn_in_the_build_it_is_f_linear(monkeypatch):
    monkeypatch.setattr(fast_linear_module, "_ONEDNN_LINEAR", None)
    x, (weight, b) = torch.randn(3, WIDTH), _layer()
    assert not runs_on_onednn(x, weight, b)
    torch.testing.assert_close(fast_linear(x, weight, b), F.linear(x, weight, b), rtol=0, atol=0)


def test_fast_linear_is_an_nn_linear_with_its_keys_init_and_hooks():
    torch.manual_seed(0)
    ours = FastLinear(WIDTH, 3)
    torch.manual_seed(0)
    plain = nn.Linear(WIDTH, 3)
    assert isinstance(ours, nn.Linear) and ours.state_dict().keys() == plain.state_dict().keys()
    torch.testing.assert_close(ours.weight, plain.weight, rtol=0, atol=0)
    calls = []
    ours.register_forward_hook(lambda *args: calls.append("hook"))
    x = torch.randn(2, WIDTH)
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-5)
    assert calls == ["hook"]


@ONEDNN
def test_a_model_whose_layers_all_run_on_onednn_trains_like_f_linear(monkeypatch, tiny_config, images, onednn_calls):
    """The tiny model's layers are below the size limit: lower it to 0 and every linear goes through oneDNN."""
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(tiny_config)
    noise = torch.rand(len(images), math.prod(tiny_config.grid_size), generator=torch.Generator().manual_seed(2))

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = model(images, noise=noise).loss
        loss.backward()
        return loss.detach(), [p.grad for p in model.parameters() if p.requires_grad]

    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    expected_loss, expected_grads = loss_and_grads()
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    monkeypatch.setattr(fast_linear_module, "_MIN_ONEDNN_WEIGHTS", 0)
    loss, grads = loss_and_grads()
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert len(onednn_calls) == linears
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@ONEDNN
def test_a_compiled_block_runs_its_four_products_on_onednn_without_graph_breaks():
    explained = torch._dynamo.explain(Block(WIDTH, 8, 4.0, 1e-6))(torch.randn(2, 5, WIDTH, requires_grad=True))
    targets = [node.target for node in explained.graphs[0].graph.nodes]
    assert explained.graph_break_count == 0
    assert targets.count(torch.ops.masked_autoencoder.onednn_linear.default) == 4  # qkv, proj, fc1, fc2
