"""The examples' shared command-line tools (examples/cli.py) and transforms from a model's data config."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import TINY
from PIL import Image

from masked_autoencoder import MAEEncoder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """examples/cli.py and examples/transforms.py, imported as the examples import them."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return {name: importlib.import_module(name) for name in ("cli", "transforms")}


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script beside the examples, its stderr a pipe (not a terminal), as in a log."""
    script = f"import sys; sys.path.insert(0, {str(EXAMPLES)!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)


def test_progress_in_a_log_prints_whole_lines_every_few_steps_and_the_last():
    done = run_script(
        """
        import cli
        bar = cli.progress(range(200), total=200, desc="train")
        for step in bar:
            bar.set_postfix(loss=step)  # refreshes on every step on a terminal
        bar.close()
        """
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line]
    assert len(lines) == 200 // 10 + 1  # steps 0, 10, ..., 200: about LOG_LINES lines, not one a step
    assert lines[-1].startswith("train: 100%") and "200/200" in lines[-1]


def test_an_expected_error_is_one_line_and_exit_status_2_and_a_bug_keeps_its_traceback():
    expected = run_script(
        "import cli\ndef main(): raise FileNotFoundError('no file: x.pth\\n  try y')\ncli.run_main(main)"
    )
    assert expected.returncode == 2
    assert expected.stderr == "-c: error: no file: x.pth try y\n"
    bug = run_script("import cli\ndef main(): raise KeyError('mean')\ncli.run_main(main)")
    assert bug.returncode == 1 and "Traceback" in bug.stderr


def test_help_shows_the_description_as_written_and_every_default(examples):
    parser = examples["cli"].argument_parser("Line one.\n\n    python x.py --steps 3")
    parser.add_argument("--steps", type=int, default=500, help="total steps")
    shown = parser.format_help()
    assert "    python x.py --steps 3" in shown and "total steps (default: 500)" in shown


def test_eval_and_pretrain_transforms_follow_the_models_data_config(examples):
    transforms = examples["transforms"]
    model = MAEEncoder(TINY.replace(img_size=(32, 48)))
    model.pretrained_cfg = {"mean": (0.5, 0.25, 0.0), "std": (0.5, 0.5, 0.25), "crop_pct": 0.5}
    cfg = model.pretrained_cfg
    image = Image.new("RGB", (300, 200), (255, 128, 0))
    for transform in (transforms.eval_transform(cfg), transforms.pretrain_transform(cfg)):
        imgs = transform(image)
        assert imgs.shape == (3, 32, 48)
        expected = (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"])
        torch.testing.assert_close(imgs.mean(dim=(1, 2)), expected)  # one colour: its normalised value
        torch.testing.assert_close(transforms.denormalize(imgs, cfg).mean(dim=(1, 2)), torch.tensor([1, 128 / 255, 0]))


def test_eval_transform_crops_the_centre_by_crop_pct(examples):
    transforms = examples["transforms"]
    model = MAEEncoder(TINY)  # 32 x 32, crop_pct 0.875: resize the short side to 36, crop 32
    pixels = torch.zeros(3, 36, 36, dtype=torch.uint8)  # already 36: the resize keeps it
    pixels[:, :2] = 255  # a white band at the top, which the crop removes
    imgs = transforms.eval_transform(model.pretrained_cfg)(pixels)
    assert imgs.shape == (3, 32, 32)
    black = (0 - torch.tensor(model.pretrained_cfg["mean"])) / torch.tensor(model.pretrained_cfg["std"])
    torch.testing.assert_close(imgs[:, 0, 16], black)


# Every example script but pretrain.py (its own tests), and the labelled-images mode of the two classifier scripts.
SCRIPTS = [
    ("backbone.py",),
    ("reconstruct.py",),
    ("masking_study.py",),
    ("multispectral.py",),
    ("detection.py",),
    ("segmentation.py",),
    ("finetune.py",),
    ("linear_probe.py",),
    ("finetune.py", "--data", "ROOT"),
    ("linear_probe.py", "--data", "ROOT"),
    ("video.py",),
]


def _options(help_text: str) -> dict[str, str]:
    """Each option of a --help text (its first flag) with the text after it, up to the next option."""
    blocks = re.split(r"\n  (?=-)", help_text.split("options:", 1)[1])
    return {block.split()[0].rstrip(","): " ".join(block.split()[1:]) for block in blocks if block.strip()}


@pytest.fixture(scope="module")
def help_texts() -> dict[str, str]:
    """The --help of every command of SCRIPTS, run as ``python SCRIPT ... --help`` would, in one process (the imports
    of one are the imports of all)."""
    done = run_script(
        f"""
        import contextlib, io, json, runpy
        texts = {{}}
        for script, *args in {SCRIPTS!r}:
            sys.argv = [script, *args, "--help"]
            with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.suppress(SystemExit):
                runpy.run_path({str(EXAMPLES)!r} + "/" + script, run_name="__main__")
            texts[" ".join((script, *args))] = shown.getvalue()
        print(json.dumps(texts))
        """
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("command", [" ".join(command) for command in SCRIPTS])
def test_help_of_every_example_gives_every_flag_a_help_text_and_its_default(help_texts, command):
    options = _options(help_texts[command])
    assert len(options) > 3, help_texts[command]
    without = [flag for flag, text in options.items() if flag != "-h" and "default:" not in text]
    assert without == [], f"{command}: flags without help (or default): {without}"


def test_an_expected_error_of_an_example_is_one_line_without_traceback(tmp_path):
    (tmp_path / "data" / "cats").mkdir(parents=True)
    command = [sys.executable, EXAMPLES / "finetune.py", "--data", tmp_path / "data", "--checkpoint", "my.pth"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("finetune.py: error: 'my.pth' looks like a local file, but there is no file")


def test_finetune_transform_is_the_papers_augmentation_in_the_model_space(examples):
    transforms = examples["transforms"]
    model = MAEEncoder(TINY.replace(img_size=(32, 48)))
    full = transforms.finetune_transform(model.pretrained_cfg)
    kinds = [type(step).__name__ for step in full.transforms]
    assert kinds == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment", "Compose", "RandomErasing"]
    assert full.transforms[2].num_ops == 2 and full.transforms[2].magnitude == 9 and full.transforms[-1].p == 0.25
    plain = transforms.finetune_transform(model.pretrained_cfg, magnitude=0, erase_prob=0)
    assert [type(step).__name__ for step in plain.transforms] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "Compose",
    ]
    image = Image.new("RGB", (300, 200), (255, 128, 0))
    torch.manual_seed(0)
    assert full(image).shape == plain(image).shape == (3, 32, 48)
