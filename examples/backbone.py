"""An MAE encoder as a backbone: the feature maps of a few blocks feed a 1x1-conv dense head on a toy pixel task.

    python examples/backbone.py                                        # a fresh mae_vit_tiny, offline
    python examples/backbone.py --checkpoint runs/pretrain/checkpoint  # the encoder of a pre-trained MAE

The task: is each pixel brighter than its image's median (so half of them are)? The encoder stays frozen,
a probe of its features: ``forward_intermediates`` gives the output of four blocks spread over the depth
as maps (B, D, H/P, W/P), and the head turns each patch's features into its P x P pixel logits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from cli import argument_parser, run_main
from common import (
    Photos,
    add_model_arguments,
    build_model,
    choose_device,
    sample_photos,
)
from einops import rearrange
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from transforms import DataConfig, denormalize, pretrain_transform

from masked_autoencoder import MAEEncoder

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


class DenseHead(nn.Module):
    """Per-pixel logits from feature maps: concatenated, a 1x1 conv to P_h * P_w values per patch, laid out as pixels.

    maps: list of (B, D, H/P, W/P) -> logits (B, 1, H, W).
    """

    def __init__(self, channels: int, patch: tuple[int, int]) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(channels, patch[0] * patch[1], kernel_size=1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        logits = self.proj(torch.cat(maps, dim=1))
        return rearrange(logits, "b (p q) h w -> b 1 (h p) (w q)", p=self.patch[0], q=self.patch[1])


def brighter_than_median(imgs: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """The toy target: 1 where a pixel's luma is above its image's median. imgs: (B, 3, H, W), normalised by
    ``cfg`` (the encoder's ``pretrained_cfg``)."""
    luma = (denormalize(imgs, cfg) * torch.tensor(LUMA, device=imgs.device).view(3, 1, 1)).sum(dim=1, keepdim=True)
    median = luma.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    return (luma > median).float()


def spread_blocks(depth: int, count: int = 4) -> list[int]:
    """``count`` block indices spread evenly, ending with the last block (depth 12: 2, 5, 8, 11)."""
    return [depth * (i + 1) // count - 1 for i in range(count)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argument_parser(__doc__)
    parser.add_argument("--checkpoint", type=Path, help="an MAE checkpoint (default: a fresh encoder from the flags)")
    add_model_arguments(parser)
    parser.add_argument("--steps", type=int, default=100, help="training steps of the dense head")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--log-every", type=int, default=10, help="print the loss every this many steps")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds the head, the batches and the data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train the head on the frozen encoder's features and print the loss as it falls."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = choose_device(args.device)
    encoder = MAEEncoder.from_pretrained(args.checkpoint) if args.checkpoint else build_model(args, encoder_only=True)
    encoder.to(device).eval().requires_grad_(False)
    config, blocks = encoder.config, spread_blocks(encoder.config.depth)
    head = DenseHead(len(blocks) * config.embed_dim, config.patch_hw).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr)
    cfg = encoder.pretrained_cfg  # the input its weights expect
    dataset = Photos(sample_photos(config.image_hw), pretrain_transform(cfg))
    # Drawn with replacement, a new random crop each time: one pass of the loader makes every step.
    sampler = RandomSampler(dataset, replacement=True, num_samples=args.steps * args.batch_size)
    loader = DataLoader(dataset, args.batch_size, sampler=sampler)
    print(f"head on blocks {blocks} of a frozen {config.depth}-block encoder, images {config.image_hw}")

    for step, (imgs, _) in enumerate(loader, start=1):
        imgs = imgs.to(device)
        with torch.no_grad():  # the final norm puts every block's features on one scale
            maps = encoder.forward_intermediates(imgs, blocks, norm=True, output_fmt="NCHW", intermediates_only=True)
        logits, target = head(maps), brighter_than_median(imgs, cfg)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0 or step in (1, args.steps):
            accuracy = ((logits > 0).float() == target).float().mean()
            print(f"step {step}: loss {loss.item():.4f}, pixel accuracy {accuracy.item():.1%}")


if __name__ == "__main__":
    run_main(main)
