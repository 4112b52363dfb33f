"""The detection and segmentation examples, run as a user runs them, with a tiny encoder for a couple of steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

from test_examples import EXAMPLES, run

from masked_autoencoder import create_model

# 32 x 32 images in patches of 8, a handful of them, two steps of batch 2.
TINY = ("--img-size", "32", "--patch-size", "8", "--train-images", "4", "--heldout-images", "2")
STEPS = ("--steps", "2", "--batch-size", "2", "--pretrain-steps", "1", "--pretrain-batch-size", "2")


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


def test_segmentation_pretrains_the_photos_mae_once_then_reports_miou(tmp_path):
    output, cache = tmp_path / "segmentation", tmp_path / "photos-mae"
    args = (*TINY, *STEPS, "--mae-cache", cache, "--output", output)
    stdout = run(EXAMPLES / "segmentation.py", *args, cwd=tmp_path)
    assert "pre-training an MAE on the photographs" in stdout
    assert (cache / "checkpoint" / "model.safetensors").is_file()
    scores(output, ["photos-mae", "random"], {"mIoU", "pixel_accuracy"})
    assert "| photos-mae | " in stdout and "| random | " in stdout
    stdout = run(EXAMPLES / "segmentation.py", *args, "--init", "photos-mae", cwd=tmp_path)
    assert f"reusing the MAE pre-trained on the photographs in {cache}" in stdout
