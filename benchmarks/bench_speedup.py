"""The paper's speed-up (He et al., 2021, Table 2): the encoder on the kept patches only, against mask tokens in it.

    python benchmarks/bench_speedup.py                  # ViT-L/16, 8-block decoder, 224 px, batch 8, fp32
    python benchmarks/bench_speedup.py --device cuda --dtype bf16 --batch 64
    python benchmarks/bench_speedup.py --quick          # a tiny model, seconds

The baseline (:class:`MaskTokensInEncoder`) runs our model's own modules and weights, but its
encoder sees every patch, a removed one as a learned mask token plus its position; the decoder gets
every token; the loss is on the removed patches, as ours. Both sides train with the same images,
noise and AdamW, interleaved after one untimed round. Reported: the paired time ratio baseline /
ours, and the ratio of their FLOPs (one counted forward + backward each), the speed-up's ceiling.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import harness
import sides
import torch
from torch import nn

from masked_autoencoder import MAEOutput, MaskedAutoencoderViT, RandomMasking, mae_loss, patchify

_MASK_TOKEN_STD = 0.02  # as the decoder's mask token


class MaskTokensInEncoder(nn.Module):
    """The paper's baseline around an MAE: its encoder runs on all L patches, the removed ones as mask tokens.

    It uses only the official module names, so it follows the MAE it wraps. imgs: (B, C, H, W),
    noise: (B, L) -> :class:`MAEOutput` with latent (B, 1 + L, D) and the identity as ids_restore.
    """

    def __init__(self, mae: MaskedAutoencoderViT) -> None:
        super().__init__()
        self.mae = mae
        self.masking = RandomMasking(mae.config.mask_ratio)
        self.mask_token = nn.Parameter(torch.randn(1, 1, mae.config.embed_dim) * _MASK_TOKEN_STD)

    def forward(self, imgs: torch.Tensor, *, noise: torch.Tensor) -> MAEOutput:
        mae = self.mae
        positions = mae.pos_embed[:, 1:]
        patches = mae.patch_embed(imgs) + positions  # (B, L, D)
        removed = self.masking(patches, noise=noise).mask  # (B, L), 1 = removed: the MAE's mask for this noise
        tokens = torch.where(removed.bool().unsqueeze(-1), self.mask_token + positions, patches)
        cls = (mae.cls_token + mae.pos_embed[:, :1]).expand(len(imgs), -1, -1)
        latent = torch.cat([cls, tokens], dim=1)
        for block in mae.blocks:
            latent = block(latent)
        latent = mae.norm(latent)
        x = mae.decoder_embed(latent) + mae.decoder_pos_embed  # every token is in image order already
        for block in mae.decoder_blocks:
            x = block(x)
        pred = mae.decoder_pred(mae.decoder_norm(x))[:, 1:]
        loss = mae_loss(pred, patchify(imgs, mae.config.patch_size), removed, norm_pix_loss=mae.config.norm_pix_loss)
        identity = torch.arange(removed.shape[1], device=imgs.device).expand_as(removed)
        return MAEOutput(loss, pred, removed, identity, latent)


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=3)  # ~30 s a round on 2 CPU cores
    harness.add_model_flags(parsed, "mae_vit_large_patch16", batch=8)  # at batch 2, AdamW's fixed cost hid some
    parsed.set_defaults(decoder_depth=8)  # the paper's baseline has 8 decoder blocks
    harness.add_precision_flags(parsed)
    return parsed


def run(args: argparse.Namespace) -> dict:
    mae = sides.build_ours(args.model, torch.device(args.device), **harness.model_overrides(args))
    imgs, noise = sides.make_inputs(mae, args.batch)
    models = {"ours": mae, "baseline": MaskTokensInEncoder(mae).to(imgs.device)}
    loss = sides.ours_loss(imgs, noise)
    flops = {name: sides.forward_backward_flops(model, loss) for name, model in models.items()}
    steps = {name: sides.train_step(model, loss, args.dtype, compile=args.compile) for name, model in models.items()}
    return {"flops": flops, "times": harness.interleaved(steps, rounds=args.rounds, device=imgs.device)}


def tables(args: argparse.Namespace, results: dict) -> str:
    flops, times = results["flops"], results["times"]
    rows = harness.timing_rows(times, ["ours"])
    for row, name in zip(rows, times, strict=True):
        row |= {
            "GFLOP": f"{flops[name] / 1e9:.1f}",
            "GFLOP/s": f"{flops[name] / statistics.median(times[name]) / 1e9:.1f}",
        }
    intro = (
        f"{args.model}, decoder depth {args.decoder_depth}, {args.img_size} px, batch {args.batch}, {args.dtype}, "
        f"{args.device}; FLOPs baseline / ours: {flops['baseline'] / flops['ours']:.2f}x."
    )
    return intro + "\n\n" + harness.markdown_table(rows)


def main(argv: Sequence[str] | None = None) -> dict:
    return harness.run_script("speedup", build_parser(), argv, harness.QUICK_MODEL, run, tables)


if __name__ == "__main__":
    main()
