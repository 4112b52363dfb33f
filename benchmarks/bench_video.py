"""One video MAE pre-training step (forward, backward, fused AdamW): ours against `transformers`' VideoMAE.

    python benchmarks/bench_video.py                    # VideoMAE-Base: 16 frames of 224 px, batch 2, fp32
    python benchmarks/bench_video.py --quick            # a tiny model, seconds

Sides: ours (``videomae_vit_base_patch16``) and VideoMAEForPreTraining with ``attn_implementation`` sdpa,
on the same weights (theirs drawn by `transformers`, saved, and read by our ``from_pretrained``), the same
clips and the same tube mask (90%), fused AdamW. First the largest difference of the two sides' predictions
for the removed tubelets, without gradients; then the steps, interleaved, after one untimed round; then
each side's memory in a fresh process of its own (``harness.step_memory``). The losses differ by design
(VideoMAE's target undoes ImageNet's normalisation; see docs/video.md): the predictions are compared.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence

import harness
import sides
import torch
from torch import nn

from masked_autoencoder import MAEConfig, MaskedAutoencoderViT, TubeMasking, model_config

SIDES = ("ours", "transformers-sdpa")
REFERENCE = "transformers-sdpa"
# The tiny image architecture made a video one: 192 wide, the separable table.
QUICK = harness.QUICK_MODEL | {"img_size": 32, "frames": 4}


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=6)
    harness.add_model_flags(parsed, "videomae_vit_base_patch16", batch=2)
    parsed.add_argument("--frames", type=int, default=16, help="frames per clip")
    parsed.add_argument("--tubelet-size", type=int, default=2, help="frames per tubelet")
    harness.add_side_flag(parsed, SIDES)
    return parsed


def _config(args: argparse.Namespace) -> MAEConfig:
    """The benchmark's model config: the architecture, the model flags, and the clips' frames and tubelet."""
    return model_config(
        args.model, **harness.model_overrides(args), num_frames=args.frames, tubelet_size=args.tubelet_size
    )


def build_theirs(args: argparse.Namespace, device: torch.device) -> nn.Module:
    """VideoMAEForPreTraining of the benchmark's geometry from a fixed seed (sdpa), in training mode."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining  # only the sides that use it pay the import

    config = _config(args)
    theirs = VideoMAEConfig(
        image_size=config.image_hw[0],
        patch_size=config.patch_hw[0],
        num_channels=config.in_chans,
        num_frames=config.num_frames,
        tubelet_size=config.tubelet_size,
        hidden_size=config.embed_dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        intermediate_size=int(config.embed_dim * config.mlp_ratio),
        decoder_hidden_size=config.decoder_embed_dim,
        decoder_num_hidden_layers=config.decoder_depth,
        decoder_num_attention_heads=config.decoder_num_heads,
        decoder_intermediate_size=int(config.decoder_embed_dim * config.mlp_ratio),
        use_mean_pooling=False,
        norm_pix_loss=config.norm_pix_loss,
        layer_norm_eps=config.layer_norm_eps,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return VideoMAEForPreTraining(theirs).to(device).train()


def inputs(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (B, C, T, H, W) and a 90% tube mask (B, L) from fixed generators."""
    config = _config(args)
    generator = torch.Generator().manual_seed(1)
    clips = torch.randn(args.batch, config.in_chans, config.num_frames, *config.image_hw, generator=generator)
    tokens = torch.zeros(args.batch, torch.Size(config.token_grid).numel(), 1)
    mask = TubeMasking()(tokens, grid=config.token_grid, generator=generator).mask.bool()
    return clips.to(device), mask.to(device)


def losses(clips: torch.Tensor, mask: torch.Tensor) -> dict[str, sides.Loss]:
    """Each side's loss on the same clips and mask (VideoMAE takes frames first: (B, T, C, H, W))."""
    return {
        "ours": lambda module: module(clips, mask=mask).loss,
        REFERENCE: lambda module: module(clips.transpose(1, 2), bool_masked_pos=mask).loss,
    }


def prediction_gap(ours: MaskedAutoencoderViT, theirs: nn.Module, clips: torch.Tensor, mask: torch.Tensor) -> float:
    """The largest difference of the two sides' predictions for the removed tubelets (fp32, no gradients)."""
    with torch.no_grad():
        logits = theirs(clips.transpose(1, 2), bool_masked_pos=mask).logits
        pred = ours(clips, mask=mask).pred[mask].reshape(logits.shape)
    return (pred - logits).abs().max().item()


def measure(side: str, args: argparse.Namespace) -> dict[str, float]:
    """In this process: build one side, a warm-up step (counting what it saves), then one measured step."""
    device = torch.device(args.device)
    clips, mask = inputs(args, device)
    if side == "ours":
        torch.manual_seed(0)
        model: nn.Module = MaskedAutoencoderViT(_config(args)).to(device).train()
    else:
        model = build_theirs(args, device)
    step = sides.train_step(model, losses(clips, mask)[side], set_to_none=False)
    return harness.step_memory(step, list(model.parameters()), device)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    theirs = build_theirs(args, device)
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        ours = MaskedAutoencoderViT.from_pretrained(folder, map_location=device).train()
    theirs.decoder.norm.eps = ours.config.layer_norm_eps  # transformers' decoder norm ignores the config's eps
    clips, mask = inputs(args, device)
    gap = prediction_gap(ours.eval(), theirs.eval(), clips, mask)
    steps = {
        name: sides.train_step(model.train(), loss)
        for (name, loss), model in zip(losses(clips, mask).items(), (ours, theirs), strict=True)
    }
    times = harness.interleaved(steps, rounds=args.rounds, device=device)
    memory = harness.in_fresh_processes(__file__, args, SIDES, workers=1)  # one at a time: both are large
    return {"prediction_gap": gap, "times": times, "memory": memory}


def tables(args: argparse.Namespace, results: dict) -> str:
    config = _config(args)
    intro = (
        f"{args.model}, {config.num_frames} frames of {args.img_size} px in tubelets of {config.tubelet_size} "
        f"({torch.Size(config.token_grid).numel()} tokens), batch {args.batch}, 90% tube masking, fp32, "
        f"{args.device}; largest prediction difference {results['prediction_gap']:.1e}."
    )
    return intro + "\n\n" + harness.time_and_memory_tables(results, REFERENCE)


def main(argv: Sequence[str] | None = None) -> dict | None:
    return harness.run_script("video", build_parser(), argv, QUICK, run, tables, measure)


if __name__ == "__main__":
    main()
