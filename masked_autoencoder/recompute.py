"""Autograd functions that keep less for backward by recomputing cheap element-wise results there instead."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer on ``tensor`` runs in: autocast's if it is on for the device, else the tensor's."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


class _GeluLinear(torch.autograd.Function):
    """linear(gelu(hidden)) that saves ``hidden`` alone and recomputes the GELU in backward.

    Autograd would save both ``hidden`` (for the GELU's backward) and its output (for the linear's
    weight gradient): two tensors of the MLP's hidden width, 4x the block's. Recomputing the GELU,
    one element-wise pass, saves a quarter of a Transformer block's activations.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        dtype = _compute_dtype(hidden)  # under autocast: the dtype F.linear would cast to, kept for backward
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(hidden, weight)
        with torch.autocast(hidden.device.type, enabled=False):
            return F.linear(F.gelu(hidden), weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight = ctx.saved_tensors
        grad_rows = grad_output.reshape(-1, grad_output.shape[-1])  # (tokens, out)
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_activated = grad_output.matmul(weight)  # (..., hidden)
            grad_hidden = torch.ops.aten.gelu_backward(grad_activated, hidden)
        if ctx.needs_input_grad[1]:
            activated = F.gelu(hidden).reshape(-1, hidden.shape[-1])  # (tokens, hidden): the recomputation
            grad_weight = grad_rows.t().mm(activated)  # (out, hidden), contiguous: fast to accumulate into .grad
        if ctx.needs_input_grad[2]:  # False without a bias
            grad_bias = grad_rows.sum(0)
        return grad_hidden, grad_weight, grad_bias


def gelu_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(F.gelu(hidden), weight, bias)`` keeping only ``hidden`` for backward. (..., H) -> (..., O).

    Same values and gradients as the two calls (exact GELU); under autocast the linear runs in
    autocast's dtype, as ``F.linear`` does. Without autograd it is simply the two calls, and under
    ``torch.compile`` too: the compiler's partitioner chooses what to recompute itself, and this
    Function would hide the GELU from its fusions.
    """
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if recompute and not torch.compiler.is_compiling():
        return _GeluLinear.apply(hidden, weight, bias)
    return F.linear(F.gelu(hidden), weight, bias)
