"""Fine-tune a Mask R-CNN on an MAE encoder (``SimpleFeaturePyramid``) and report COCO box and mask AP, offline.

    python examples/detection.py                                   # shapes MAE against random weights, 2 CPU cores
    python examples/detection.py --init runs/pretrain/checkpoint   # any from_pretrained source
    python examples/detection.py --init random --steps 50

The data: dense_data.py's shapes (circles, squares, triangles on photograph crops, exact boxes and masks). For
each --init the encoder goes into ``SimpleFeaturePyramid`` and torchvision's ``MaskRCNN`` with narrower heads,
anchors scaled to the small images; all of it is fine-tuned with AdamW and layer-wise lr decay
(``param_groups_lrd`` on the detector). torchmetrics' ``MeanAveragePrecision`` (pycocotools' COCO evaluation)
measures box and mask AP on the held-out images. Writes --output/metrics.json and prints a table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from cli import argument_parser, run_main
from common import choose_device
from dense_data import Shapes, add_dense_arguments, compare, report, splits
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from masked_autoencoder import MAEEncoder, SimpleFeaturePyramid

NUM_CLASSES = 4  # background and the three shapes
# Heads narrower than torchvision's (256-channel maps, a 1024-wide box head, four 256-channel mask convs), which
# took 11 s a step of 8 images on 2 CPU cores, most of it in the mask head's convolutions.
CHANNELS = 128
BOX_HEAD_WIDTH = 256
MASK_HEAD_LAYERS = (128, 128)
# One size per pyramid level (strides 4 to 64), a quarter of torchvision's (32 to 512): shapes are 10-26 px.
ANCHOR_SIZES = ((8,), (16,), (32,), (64,), (128,))
ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES)
# Fewer proposals and sampled RoIs than torchvision's defaults (2000 / 512): images hold at most three objects.
DETECTOR_SETTINGS = dict(
    rpn_pre_nms_top_n_train=300,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=32,
    box_detections_per_img=20,
)
EVAL_BATCH = 32
METRICS = {"box_AP": "bbox_map", "box_AP50": "bbox_map_50", "mask_AP": "segm_map", "mask_AP50": "segm_map_50"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; its defaults compare the two starts in about 10 minutes on 2 CPU cores (docs/dense.md)."""
    parser = argument_parser(__doc__)
    add_dense_arguments(parser, output="runs/detection", steps=300, batch_size=8, lr=1e-3)
    return parser.parse_args(argv)


def build_detector(encoder: MAEEncoder, size: int) -> MaskRCNN:
    """torchvision's Mask R-CNN, narrower heads, on the encoder's simple feature pyramid, for ``size``-pixel images.

    Its transform normalises [0, 1] images with the ImageNet mean and std, the MAE's input space.
    """
    pooled = 7  # torchvision's box RoI pooling, 7 x 7
    return MaskRCNN(
        SimpleFeaturePyramid(encoder, out_channels=CHANNELS),
        min_size=size,
        max_size=size,
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS),
        box_head=TwoMLPHead(CHANNELS * pooled**2, BOX_HEAD_WIDTH),
        box_predictor=FastRCNNPredictor(BOX_HEAD_WIDTH, NUM_CLASSES),
        mask_head=MaskRCNNHeads(CHANNELS, MASK_HEAD_LAYERS, dilation=1),
        mask_predictor=MaskRCNNPredictor(MASK_HEAD_LAYERS[-1], MASK_HEAD_LAYERS[-1], NUM_CLASSES),
        **DETECTOR_SETTINGS,
    )


def detection_loss(detector: MaskRCNN, data: Shapes, device: torch.device) -> Callable[[list[int]], torch.Tensor]:
    """A function from a batch's indices to the detector's summed losses (RPN, boxes, classes, masks)."""

    def loss_of(indices: list[int]) -> torch.Tensor:
        images = [data.images[i].to(device) for i in indices]
        targets = [{key: value.to(device) for key, value in data.targets[i].items()} for i in indices]
        return sum(detector(images, targets).values())

    return loss_of


@torch.no_grad()
def evaluate(detector: MaskRCNN, data: Shapes, device: torch.device) -> dict[str, float]:
    """COCO box and mask AP (IoU 0.5:0.95, and at 0.5) of the detector on ``data``, by torchmetrics."""
    detector.eval()
    metric = MeanAveragePrecision(iou_type=("bbox", "segm"))
    for start in range(0, len(data), EVAL_BATCH):
        images = list(data.images[start : start + EVAL_BATCH].to(device))
        outputs = detector(images)
        preds = [{**out, "masks": out["masks"][:, 0] > 0.5} for out in outputs]  # (N, 1, H, W) probabilities
        metric.update([{k: v.cpu() for k, v in p.items()} for p in preds], data.targets[start : start + EVAL_BATCH])
    scores = metric.compute()
    return {name: scores[key].item() for name, key in METRICS.items()}


def main(argv: list[str] | None = None) -> None:
    """Fine-tune a detector from each --init on the same shapes and compare their held-out AP."""
    began = time.perf_counter()
    args = parse_args(argv)
    device = choose_device(args.device)
    train, heldout = splits(args, "Mask R-CNN", device)
    runs = compare(
        args,
        device,
        "Mask R-CNN, COCO AP",
        lambda encoder: build_detector(encoder, args.img_size),
        lambda detector: detection_loss(detector, train, device),
        lambda detector: evaluate(detector, heldout, device),
        len(train),
    )
    report(args, runs, began)


if __name__ == "__main__":
    run_main(main)
