"""examples/video.py, run as a user runs it, on tiny clips for a few steps."""

import json
import re

from test_examples import EXAMPLES, run, run_failing

from masked_autoencoder import MaskedAutoencoderViT

TINY_CLIPS = (
    "--frames",
    "4",
    "--size",
    "24",
    "--patch-size",
    "4",
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--heldout",
    "2",
)


def test_video_pretrains_on_moving_digits_and_reports_psnr_against_the_mean_fill(tmp_path):
    stdout = run(EXAMPLES / "video.py", *TINY_CLIPS, "--output", tmp_path, cwd=tmp_path)
    found = re.search(r"reconstruction (-?[0-9.]+) dB, mean-colour fill (-?[0-9.]+) dB", stdout)
    assert found, stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert f"{metrics['psnr_reconstruction_db']:.2f}" == found[1]
    assert f"{metrics['psnr_mean_fill_db']:.2f}" == found[2]
    assert (tmp_path / "reconstruction.png").stat().st_size > 0
    model = MaskedAutoencoderViT.from_pretrained(tmp_path / "checkpoint")
    assert (model.config.num_frames, model.config.tubelet_size, model.config.mask_ratio) == (4, 2, 0.9)
    assert "random masking at 0.9" in stdout


def test_video_takes_videomaes_tube_masking(tmp_path):
    stdout = run(EXAMPLES / "video.py", *TINY_CLIPS, "--masking", "tube", "--output", tmp_path, cwd=tmp_path)
    assert "tube masking at 0.9" in stdout


def test_video_refuses_frames_smaller_than_a_digit_in_one_line(tmp_path):
    stderr = run_failing(EXAMPLES / "video.py", "--size", "16", "--output", tmp_path, cwd=tmp_path)
    assert stderr.strip() == "video.py: error: --size must be larger than the digits' 16 pixels, got 16"
