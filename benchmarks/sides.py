"""What the benchmarks compare: our model and its inputs, `transformers` twins with its weights, a step, FLOPs.

A twin is loaded by ``from_pretrained`` from our weights written in `transformers`' published file
layout (``to_transformers_state_dict``): `transformers` 5 renames its modules in memory, but reads
that layout, and must find every weight it needs there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from harness import interleaved
from safetensors.torch import save_file
from torch import nn
from torch.utils import flop_counter

from masked_autoencoder import MaskedAutoencoderViT, create_model
from masked_autoencoder.hub.transformers_format import config_to_transformers, to_transformers_state_dict

# The paper's pre-training AdamW; the learning rate does not change the cost of a step.
_ADAMW = {"lr": 1.5e-4, "betas": (0.9, 0.95), "weight_decay": 0.05}
_aten = torch.ops.aten

Loss = Callable[[nn.Module], torch.Tensor]
"""module -> the scalar loss of one step on fixed inputs."""


def build_ours(name: str, device: torch.device, **overrides: object) -> MaskedAutoencoderViT:
    """Our MaskedAutoencoderViT from a fixed seed, on ``device``, in training mode."""
    torch.manual_seed(0)
    return create_model(name, **overrides).to(device).train()


def make_inputs(model: MaskedAutoencoderViT, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) and masking noise (B, L) from a fixed generator, on the model's device."""
    config, device = model.config, model.cls_token.device
    generator = torch.Generator().manual_seed(1)
    imgs = torch.randn(batch, config.in_chans, *config.image_hw, generator=generator)
    noise = torch.rand(batch, config.grid_size[0] * config.grid_size[1], generator=generator)
    return imgs.to(device), noise.to(device)


def ours_loss(imgs: torch.Tensor, noise: torch.Tensor) -> Loss:
    """Our MAE's loss (or the mask-token baseline's) on these images and this masking noise."""
    return lambda module: module(imgs, noise=noise).loss


def transformers_loss(imgs: torch.Tensor, noise: torch.Tensor) -> Loss:
    """ViTMAEForPreTraining's loss: it takes the same noise and masks the same patches."""
    return lambda module: module(pixel_values=imgs, noise=noise).loss


def write_transformers_files(model: MaskedAutoencoderViT, folder: Path) -> Path:
    """Write our weights and config as `transformers`' ViTMAE files (model.safetensors, config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    save_file(to_transformers_state_dict(state), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config_to_transformers(model.config)))
    return folder


def load_twin(class_name: str, folder: Path, device: torch.device, **kwargs: object) -> nn.Module:
    """``transformers.<class_name>.from_pretrained(folder)``, checked to miss no weight (encoders skip the decoder)."""
    import transformers  # seconds to import, and memory that only its own side should count

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model, info = getattr(transformers, class_name).from_pretrained(folder, output_loading_info=True, **kwargs)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"{class_name} did not load our weights: {info}")
    return model.to(device)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast, or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def train_step(
    module: nn.Module, loss: Loss, dtype: str = "fp32", *, compile: bool = False, set_to_none: bool = True
) -> Callable[[], torch.Tensor]:
    """One pre-training step as a closure: zero_grad, forward (in ``dtype``), backward, fused AdamW step."""
    optimizer = torch.optim.AdamW(module.parameters(), **_ADAMW, fused=True)
    run = torch.compile(module) if compile else module
    device = next(module.parameters()).device

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=set_to_none)
        with autocast(device, dtype):
            value = loss(run)
        value.backward()
        optimizer.step()
        return value.detach()

    return step


def _sdpa_cpu(query: torch.Size, key: torch.Size, value: torch.Size, *args: object, **kwargs: object) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(
    grad: torch.Size, query: torch.Size, key: torch.Size, value: torch.Size, *args: object, **kwargs: object
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad, query, key, value)


# FlopCounterMode registers formulas for SDPA's CUDA kernels only: the CPU kernels get torch's own formulas.
_CPU_SDPA = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}


def count_flops(run: Callable[[], object]) -> int:
    """Call ``run`` once and count its FLOPs: matmuls, convolutions and attention, not element-wise work."""
    missing = {op: formula for op, formula in _CPU_SDPA.items() if op not in flop_counter.flop_registry}
    with flop_counter.FlopCounterMode(display=False, custom_mapping=missing) as counter:
        run()
    return counter.get_total_flops()


def forward_backward_flops(module: nn.Module, loss: Loss) -> int:
    """The FLOPs of one eager fp32 forward and backward (it leaves gradients, which the next step zeroes)."""
    return count_flops(lambda: loss(module).backward())


def matmul_peak(device: torch.device, dtype: str, size: int, rounds: int = 5) -> float:
    """FLOP/s of the fastest of ``rounds`` square matmuls of ``size`` in ``dtype``: what this machine attains."""
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=torch_dtype) for _ in range(2))
    return 2 * size**3 / min(interleaved({"mm": lambda: a @ b}, rounds=rounds, device=device)["mm"])
