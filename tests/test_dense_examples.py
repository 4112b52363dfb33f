"""The detection and segmentation examples, run as a user runs them, with a tiny encoder for a couple of steps."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from test_examples import EXAMPLES, run

from masked_autoencoder import create_model

# 32 x 32 images in patches of 8, a handful of them, two steps of batch 2.
TINY = ("--img-size", "32", "--patch-size", "8", "--train-images", "4", "--heldout-images", "2")
STEPS = ("--steps", "2", "--batch-size", "2", "--pretrain-steps", "1", "--pretrain-batch-size", "2")
UNLABELLED = ("--unlabelled-images", "12")  # pretrain.py holds 10 out


def scores(output: Path, inits: list[str], names: set[str]) -> dict[str, dict[str, float]]:
    """The runs of ``output/metrics.json``, after checking that each --init has every score, a number in [0, 1]."""
    runs = json.loads((output / "metrics.json").read_text())["runs"]
    assert list(runs) == inits
    for metrics in runs.values():
        assert set(metrics) == names | {"loss"}
        assert all(math.isfinite(metrics[name]) and 0 <= metrics[name] <= 1 for name in names)
    return runs


def test_detection_fine_tunes_mask_rcnn_from_saved_and_random_weights_and_reports_coco_ap(tmp_path):
    mae = create_model("mae_vit_tiny", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    weights = str(mae.save_pretrained(tmp_path / "mae"))
    output = tmp_path / "detection"
    stdout = run(
        EXAMPLES / "detection.py", "--init", weights, "random", *TINY, *STEPS, "--output", output, cwd=tmp_path
    )
    scores(output, [weights, "random"], {"box_AP", "box_AP50", "mask_AP", "mask_AP50"})
    assert "| encoder | box_AP | box_AP50 | mask_AP | mask_AP50 |" in stdout
    assert f"metrics: {output / 'metrics.json'}" in stdout


def test_segmentation_pretrains_the_shapes_mae_once_on_unlabelled_images_then_reports_miou(tmp_path):
    output, cache = tmp_path / "segmentation", tmp_path / "shapes-mae"
    args = (*TINY, *STEPS, *UNLABELLED, "--mae-cache", cache, "--output", output)
    stdout = run(EXAMPLES / "segmentation.py", *args, cwd=tmp_path)
    assert "pre-training an MAE on 12 unlabelled shapes images:" in stdout
    assert f"found 12 images in {cache / 'images'}" in stdout  # pretrain.py --data, on the unlabelled split
    assert (cache / "checkpoint" / "model.safetensors").is_file()
    scores(output, ["shapes-mae", "random"], {"mIoU", "pixel_accuracy"})
    assert "| shapes-mae | " in stdout and "| random | " in stdout
    stdout = run(EXAMPLES / "segmentation.py", *args, "--init", "shapes-mae", cwd=tmp_path)
    assert f"reusing the MAE pre-trained on unlabelled shapes in {cache}" in stdout
    stdout = run(EXAMPLES / "segmentation.py", *args, "--unlabelled-images", "13", "--init", "shapes-mae", cwd=tmp_path)
    assert "pre-training an MAE on 13 unlabelled shapes images:" in stdout  # other flags: made again
    assert len(list((cache / "images").glob("*.png"))) == 13


@pytest.fixture
def dense_data(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/dense_data.py, imported as the examples import it."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("dense_data")


def test_shapes_have_exact_boxes_and_masks_and_never_overlap(dense_data):
    shapes = dense_data.make_shapes(16, 48, "train", seed=3)
    assert shapes.images.shape == (16, 3, 48, 48) and shapes.images.min() >= 0 and shapes.images.max() <= 1
    for image, target in zip(shapes.images, shapes.targets, strict=True):
        masks, boxes = target["masks"], target["boxes"]
        assert 1 <= len(masks) <= dense_data.MAX_SHAPES and set(target["labels"].tolist()) <= {1, 2, 3}
        assert masks.sum(dim=0).max() == 1  # no pixel belongs to two shapes
        for mask, box in zip(masks, boxes, strict=True):
            rows, columns = mask.nonzero(as_tuple=True)
            edges = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]  # x1 y1 x2 y2, pixel edges
            assert box.tolist() == [float(edge) for edge in edges]
            assert image[:, mask].unique(dim=1).shape[1] == 1  # one colour
    semantic = shapes.semantic()
    assert semantic.shape == (16, 48, 48)
    assert all((semantic[i] > 0).sum() == t["masks"].sum() for i, t in enumerate(shapes.targets))


def test_each_split_is_its_own_stream_and_repeats_with_its_seed(dense_data):
    first = dense_data.make_shapes(4, 32, "train", seed=0)
    assert torch.equal(dense_data.make_shapes(4, 32, "train", seed=0).images, first.images)
    assert torch.equal(dense_data.make_shapes(2, 32, "train", seed=0).images, first.images[:2])  # a prefix
    for other in (dense_data.make_shapes(4, 32, "heldout", seed=0), dense_data.make_shapes(4, 32, "unlabelled")):
        assert not torch.equal(other.images, first.images)
    assert not torch.equal(dense_data.make_shapes(4, 32, "train", seed=1).images, first.images)
