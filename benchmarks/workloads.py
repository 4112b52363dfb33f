"""What the benchmarks run: device and precision, our models and their inputs, the sides compared, a training step."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from timing import interleaved
from torch import nn

from masked_autoencoder import MAEConfig, MAEEncoder, create_model
from masked_autoencoder.precision import autocast_dtype

PRECISIONS = ("fp32", "bf16")
# How each side of the pre-training step comparison is built (see pretraining_side).
PRETRAINING_SIDES = ("ours", "ours-checkpointing", "transformers-sdpa", "transformers-eager")
# The paper's pre-training AdamW settings; the learning rate does not change the cost of a step.
_ADAMW = {"lr": 1.5e-4, "betas": (0.9, 0.95), "weight_decay": 0.05}

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(module, imgs (B, C, H, W), noise (B, L)) -> the scalar loss of one step."""


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work before a clock is read: nothing on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 runs fast here (CUDA with bf16, AMX or AVX512-BF16), as the library decides for autocast."""
    return autocast_dtype(device) is torch.bfloat16


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_ours(
    name: str, device: torch.device, *, encoder_only: bool = False, seed: int = 0, **overrides: object
) -> MAEEncoder:
    """Our MaskedAutoencoderViT (or its MAEEncoder) from a fixed seed, on ``device``, in training mode."""
    torch.manual_seed(seed)
    return create_model(name, encoder_only=encoder_only, **overrides).to(device).train()


def batch_inputs(
    config: MAEConfig, batch: int, device: torch.device, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) and masking noise (B, L) from a fixed generator: the same for every side."""
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.randn(batch, config.in_chans, *config.image_hw, generator=generator)
    grid_h, grid_w = config.grid_size
    return imgs.to(device), torch.rand(batch, grid_h * grid_w, generator=generator).to(device)


def output_loss(module: nn.Module, imgs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The loss of a module that returns an :class:`MAEOutput` (ours, the mask-token baseline)."""
    return module(imgs, noise=noise).loss


def transformers_loss(module: nn.Module, imgs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The loss of `transformers`' ViTMAEForPreTraining, which takes the same noise."""
    return module(pixel_values=imgs, noise=noise).loss


def features_loss(module: nn.Module, imgs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A fine-tuning-like loss on every patch of an encoder (no masking: ``noise`` is unused)."""
    return module(imgs).pow(2).mean()


def pretraining_side(side: str, ours: nn.Module) -> tuple[nn.Module, LossFn]:
    """The module that one side of :data:`PRETRAINING_SIDES` trains, with the weights of ``ours``, and its loss."""
    if side == "ours":
        return ours, output_loss
    if side == "ours-checkpointing":
        checkpointed = copy.deepcopy(ours)
        checkpointed.set_grad_checkpointing(True)
        return checkpointed, output_loss
    from twins import pretraining  # imports transformers (seconds): only for the sides that need it

    return pretraining(ours, attn_implementation=side.removeprefix("transformers-")), transformers_loss


def make_optimizer(module: nn.Module) -> torch.optim.AdamW:
    """The same AdamW for every side: torch's fused kernel (ViT-B on 1 CPU thread: 0.14 s a step, foreach 0.49 s)."""
    return torch.optim.AdamW(module.parameters(), **_ADAMW, fused=True)


def training_step(
    module: nn.Module,
    loss_fn: LossFn,
    inputs: tuple[torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    precision: str = "fp32",
    *,
    set_to_none: bool = True,
) -> Callable[[], torch.Tensor]:
    """One pre-training step as a closure: zero_grad, forward, backward, AdamW step.

    ``set_to_none=False`` keeps the gradient buffers allocated through the step (memory measurements:
    freeing them at the start would hide activation memory behind the gradients' released pages).
    """
    imgs, noise = inputs

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=set_to_none)
        with precision_context(imgs.device, precision):
            loss = loss_fn(module, imgs, noise)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def time_sides(
    modules: dict[str, nn.Module],
    case: Callable[[str, nn.Module], Callable[[], object]],
    backend: str | Callable[..., object] | None,
    *,
    repeats: int,
    warmup: int,
    device: torch.device,
) -> dict[str, object]:
    """Interleaved timings of ``case(name, module)`` for each side, eager (``backend`` None) or compiled.

    Compiled: each module goes through ``torch.compile(backend=backend)`` from a fresh dynamo state
    (earlier graphs count against no recompilation limit); compilation happens in the first call,
    and a side that fails there is dropped, its error recorded under ``errors``.
    """
    if backend is not None:
        torch._dynamo.reset()
        modules = {name: torch.compile(module, backend=backend) for name, module in modules.items()}
    cases = {name: case(name, module) for name, module in modules.items()}
    errors: dict[str, str] = {}
    results = interleaved(cases, repeats=repeats, warmup=warmup, sync=synchronizer(device), errors=errors)
    return {"compiled": backend, "results": results, "errors": errors}
