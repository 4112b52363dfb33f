"""finetune.py and linear_probe.py on labelled images of your own (--data, --train / --val), tiny model, few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY
from PIL import Image

from masked_autoencoder import MAEViTClassifier, MaskedAutoencoderViT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLASSES = ("circle", "square", "triangle")
FEW_STEPS = ("--epochs", "2", "--warmup-epochs", "1", "--batch-size", "4", "--blr", "1e-2")


def _image_folder(root: Path, per_class: int) -> Path:
    """An ImageFolder of three classes of small images of different sizes, each class its own colour."""
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for number in range(per_class):
            colour = tuple(255 * (channel == index) for channel in range(3))
            Image.new("RGB", (36 + number, 40), colour).save(root / name / f"{number}.png")
    return root


def _run(script: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, EXAMPLES / script, *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def mae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).save_pretrained(tmp_path_factory.mktemp("mae") / "checkpoint")


def test_finetune_on_an_image_folder_writes_a_classifier_metrics_and_a_confusion_matrix(mae, tmp_path):
    data, output = _image_folder(tmp_path / "data", per_class=6), tmp_path / "out"
    done = _run("finetune.py", "--data", data, "--checkpoint", mae, "--output", output, *FEW_STEPS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epoch 1: train loss" in done.stdout and "epoch 2: train loss" in done.stdout
    assert "3 classes, 15 training and 3 validation images; final val top-1" in done.stdout
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert [record["step"] for record in records] == [3, 6]  # 15 images in whole batches of 4
    assert all(0 <= record["val_top1"] <= 1 for record in records)
    classifier = MAEViTClassifier.from_pretrained(output / "checkpoint")
    assert classifier.num_classes == 3 and classifier.global_pool
    assert json.loads((output / "classes.json").read_text()) == list(CLASSES)
    assert Image.open(output / "confusion_matrix.png").size[0] > 100
    # Trained: the head moved away from its near-zero start.
    assert classifier.head.weight.abs().max() > 1e-4  # trunc normal std 2e-5 at the start


def test_linear_probe_on_train_and_val_folders_trains_the_head_only(mae, tmp_path):
    train, val = _image_folder(tmp_path / "train", per_class=4), _image_folder(tmp_path / "val", per_class=2)
    output = tmp_path / "probe"
    args = ("--train", train, "--val", val, "--checkpoint", mae, "--output", output, *FEW_STEPS)
    done = _run("linear_probe.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 classes, 12 training and 6 validation images" in done.stdout
    assert len((output / "metrics.jsonl").read_text().splitlines()) == 2
    assert (output / "probe_head.safetensors").is_file() and (output / "confusion_matrix.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "d", "--train", "d", "--val", "d"), "give --data ROOT, or --train and --val"),
        (("--data", "missing"), "error: missing is not a folder: expected an ImageFolder"),
    ],
)
def test_folder_arguments_it_cannot_use_are_one_line_errors(mae, tmp_path, args, message):
    (tmp_path / "d" / "cats").mkdir(parents=True)
    done = _run("finetune.py", *args, "--checkpoint", mae, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
