"""nn.Linear whose forward product runs on oneDNN's matmul on the CPU in fp32, faster there than F.linear's BLAS.

``F.linear`` on the CPU calls the BLAS sgemm (MKL in the official wheels). oneDNN, which the same
wheels ship, has its own fp32 matmul, 5-45% faster at ViT widths and token counts (D >= 384; more
the smaller the batch and the wider the model: docs/performance.md has the sweep). Only the forward
product moves: the backward's two products stay on BLAS, which is as fast or faster for their
transposed operands. Values are fp32 with fp32 accumulation on both paths (equal up to summation
order, ~1e-6). Everything else (CUDA, other dtypes, autocast, ``torch.export``, tracing, dispatch
modes such as ``FlopCounterMode``, tensor subclasses, small layers, oneDNN switched off with
``torch.backends.mkldnn.enabled = False``) runs ``F.linear`` unchanged. Under ``torch.compile`` the
product is a custom op (``masked_autoencoder::onednn_linear``) that inductor calls as it is; under
``torch.export`` it is ``F.linear``, so that an exported program does not need this library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Below this many weights oneDNN's call overhead (~35 us) outweighs its faster kernel (ViT-Ti widths).
_MIN_ONEDNN_WEIGHTS = 1 << 18
_PLAIN_TENSOR_TYPES = (torch.Tensor, nn.Parameter)


def _find_onednn_linear() -> Callable[..., torch.Tensor] | None:
    """oneDNN's linear ``(X, W, B, attr, scalars, algorithm)`` in this torch build, or None without oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):  # a build without the op registered
        return None


_ONEDNN_LINEAR = _find_onednn_linear()


# torch.compiler.is_exporting arrived in torch 2.6: before it, every compilation counts as a possible export.
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: True)


def runs_on_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether :func:`fast_linear` would run this product on oneDNN (else it calls ``F.linear``)."""
    if _ONEDNN_LINEAR is None or not torch.backends.mkldnn.enabled or torch.jit.is_tracing():
        return False
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if weight.numel() < _MIN_ONEDNN_WEIGHTS or torch.is_autocast_enabled("cpu"):  # autocast: F.linear casts
        return False
    if torch.compiler.is_compiling():  # inductor runs our op as an opaque kernel; an export keeps the standard op
        return not _is_exporting()
    # Tracers, functorch transforms and dispatch modes (FlopCounterMode, FakeTensorMode) get the op they know.
    if torch._C._are_functorch_transforms_active() or torch._C._len_torch_dispatch_stack():
        return False
    return all(type(t) in _PLAIN_TENSOR_TYPES for t in tensors)


@torch.library.custom_op("masked_autoencoder::onednn_linear", mutates_args=())
def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias on oneDNN. x: (..., I), weight: (O, I), bias: (O,) -> (..., O), contiguous."""
    return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")


@_onednn_linear.register_fake
def _onednn_linear_shape(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def linear_grads(
    grad_output: torch.Tensor, weight: torch.Tensor, inputs: Callable[[], torch.Tensor], needs: Sequence[bool]
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients of ``F.linear(x, weight, bias)`` wrt x, weight and bias, each only if ``needs`` says so.

    grad_output: (..., O), weight: (O, I); ``inputs()`` gives x (..., I), called only for the weight
    gradient (a recomputing caller builds it there). Returns (..., I), (O, I) contiguous like ``.grad``, (O,).
    """
    grad_rows = grad_output.reshape(-1, grad_output.shape[-1])  # (tokens, O)
    grad_x = grad_output.matmul(weight) if needs[0] else None
    grad_weight = grad_rows.t().mm(inputs().reshape(-1, weight.shape[1])) if needs[1] else None
    grad_bias = grad_rows.sum(0) if needs[2] else None  # never needed without a bias
    return grad_x, grad_weight, grad_bias


def _keep_for_backward(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])  # x and weight: what F.linear keeps


def _onednn_linear_backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """On BLAS: as fast or faster than oneDNN for the transposed operands of the two backward products."""
    x, weight = ctx.saved_tensors
    return linear_grads(grad_output, weight, lambda: x, ctx.needs_input_grad)


_onednn_linear.register_autograd(_onednn_linear_backward, setup_context=_keep_for_backward)


def fast_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, on oneDNN where :func:`runs_on_onednn`. x: (..., I) -> (..., O).

    Same values (up to fp32 summation order) and gradients; weight: (O, I), bias: (O,) or None.
    """
    if runs_on_onednn(x, weight, bias):
        return _onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters, init, state-dict keys and hooks) computed with :func:`fast_linear`.

    x: (..., in_features) -> (..., out_features).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_linear(x, self.weight, self.bias)
