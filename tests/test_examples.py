"""The examples, each run as a user runs it (a subprocess) with a tiny model for a few steps; their shared helpers."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from masked_autoencoder import MaskedAutoencoderViT, create_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The demo model on 32 x 32 images: 16 patches of 8 x 8, a fraction of a second per step.
TINY = ("--img-size", "32", "--patch-size", "8", "--batch-size", "2")
# The digits scripts: a 2-step pre-training, a few training steps.
DIGITS_TINY = ("--pretrain-batch-size", "16", "--batch-size", "16")
DIGIT_SCRIPTS = ("linear_probe.py", "finetune.py")


def execute(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run this Python with ``args`` and capture its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # several small processes share few cores
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"  # torchrun's processes talk over loopback only
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def run(*args: str | Path, cwd: Path) -> str:
    """Run this Python with ``args``; return its stdout, or fail the test with its output."""
    done = execute(*args, cwd=cwd)
    assert done.returncode == 0, f"{done.args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_failing(*args: str | Path, cwd: Path) -> str:
    """Run this Python with ``args``, which must fail; return its stderr."""
    done = execute(*args, cwd=cwd)
    assert done.returncode != 0, f"{done.args} succeeded:\n{done.stdout}"
    return done.stderr


def accuracies(stdout: str) -> dict[str, float]:
    """The rows of a digits script's table: encoder -> test accuracy in %."""
    rows = re.findall(r"^\| (MAE-pretrained|random init) \| ([0-9.]+)% \|$", stdout, re.MULTILINE)
    return {name: float(value) for name, value in rows}


def logged_steps(output: Path) -> list[int]:
    """The steps in a pre-training run's metrics.jsonl."""
    return [json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text().splitlines()]


def write_images(folder: Path) -> list[Path]:
    """An ImageFolder of five small noise images in two class folders, one nested, in two formats, and a text file."""
    (folder / "cats" / "nested").mkdir(parents=True)
    (folder / "dogs").mkdir()
    (folder / "cats" / "notes.txt").write_text("not an image")
    paths = [folder / "cats" / "a.jpg", folder / "cats" / "b.png", folder / "cats" / "nested" / "c.png"]
    paths += [folder / "dogs" / "d.JPG", folder / "dogs" / "e.jpeg"]
    for index, path in enumerate(paths):
        Image.effect_noise((40 + 7 * index, 48), 64).convert("RGB").save(path)
    return paths


def psnr_line(stdout: str) -> tuple[float, float]:
    """The PSNR of the reconstruction and of the mean-colour fill that a script printed, in dB."""
    found = re.search(r"reconstruction (-?[0-9.]+) dB, mean-colour fill (-?[0-9.]+) dB", stdout)
    assert found, stdout
    return float(found[1]), float(found[2])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The output folder and stdout of a 2-step pre-training run on the sample photos."""
    output = tmp_path_factory.mktemp("pretrain")
    stdout = run(EXAMPLES / "pretrain.py", *TINY, "--steps", "2", "--output", output, cwd=output)
    return output, stdout


@pytest.fixture
def common(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/common.py, imported as the examples import it."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("common")


@pytest.fixture
def pretrain(common: ModuleType) -> ModuleType:
    """examples/pretrain.py as a module."""
    return importlib.import_module("pretrain")


def test_pretrain_writes_checkpoint_reconstructions_and_loss_log(pretrained):
    output, stdout = pretrained
    checkpoint = output / "checkpoint"
    assert "training on 17 images, 2 held out" in stdout
    assert f"checkpoint: {checkpoint}" in stdout
    assert f"reconstruction: {output / 'reconstruction-000002.png'}" in stdout
    assert "loss " in stdout
    for step in (0, 2):  # before training, and at the end
        with Image.open(output / f"reconstruction-{step:06d}.png") as png:
            assert png.mode == "RGB"
            # Two images a row, each as masked | reconstruction + visible | original, 32 px enlarged to 128.
            assert png.size == (4 + 6 * (128 + 4), 4 + 5 * (128 + 4))
    assert logged_steps(output) == [1, 2]
    assert (output / "loss.png").is_file()
    model = MaskedAutoencoderViT.from_pretrained(checkpoint)
    assert (model.config.img_size, model.config.patch_size, model.config.norm_pix_loss) == (32, 8, False)
    assert torch.load(checkpoint / "training_state.pt", weights_only=True)["step"] == 2


def test_pretrain_prints_and_writes_the_held_out_psnr_of_reconstruction_and_mean_fill(pretrained):
    output, stdout = pretrained
    assert "held-out PSNR over the removed patches (10 images x 4 masks)" in stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["heldout_images"], metrics["masks_per_image"], metrics["norm_pix_loss"]) == (10, 4, False)
    printed = psnr_line(stdout)
    written = (metrics["psnr_reconstruction_db"], metrics["psnr_mean_fill_db"])
    assert printed == pytest.approx(written, abs=0.005)
    assert metrics["psnr_gain_db"] == pytest.approx(written[0] - written[1])
    assert all(math.isfinite(value) and value > 0 for value in written)
    assert f"metrics: {output / 'metrics.json'}" in stdout


def test_pretrain_resumes_from_the_saved_step(pretrained, tmp_path):
    output, _ = pretrained
    args = ("--resume", output / "checkpoint", *TINY, "--steps", "3", "--output", tmp_path)
    stdout = run(EXAMPLES / "pretrain.py", *args, cwd=tmp_path)
    assert "resumed from step 2" in stdout
    assert (tmp_path / "metrics.json").is_file()
    state = torch.load(tmp_path / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] == 3
    # AdamW counts its own steps: 3 only if its state was restored rather than started afresh.
    assert all(int(param_state["step"]) == 3 for param_state in state["optimizer"]["state"].values())
    assert logged_steps(tmp_path) == [3]
    assert (tmp_path / "reconstruction-000003.png").is_file()


def test_pretrain_runs_data_parallel_under_torchrun_on_an_image_folder(tmp_path):
    write_images(tmp_path / "images")
    output = tmp_path / "run"
    launch = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    data = ("--data", tmp_path / "images", "--holdout", "1")
    args = (EXAMPLES / "pretrain.py", *data, *TINY, "--steps", "2", "--output", output)
    stdout = run(*launch, *args, cwd=tmp_path)
    assert "batch 2 x 2 process(es)" in stdout
    assert "training on 4 images, 1 held out" in stdout
    assert "held-out PSNR over the removed patches (5 images x 4 masks)" in stdout  # five crops of the one
    assert stdout.count("checkpoint:") == 1  # only rank 0 prints (and writes)
    assert logged_steps(output) == [1, 2]
    assert (output / "checkpoint" / "model.safetensors").is_file()
    assert f"found 5 images in {tmp_path / 'images'}" in stdout  # class folders, one nested, and any letter case


def test_pretrain_rejects_a_holdout_it_cannot_split(tmp_path):
    write_images(tmp_path / "images")
    stderr = run_failing(EXAMPLES / "pretrain.py", "--data", tmp_path / "images", "--holdout", "5", *TINY, cwd=tmp_path)
    assert "--holdout must be between 1 and 4 (the images of --data), got 5" in stderr


def test_pretrain_trains_on_normalised_pixels_one_flag_away(pretrain):
    assert not pretrain.parse_args([]).norm_pix_loss
    assert pretrain.parse_args(["--norm-pix-loss"]).norm_pix_loss


def test_reconstruct_writes_a_grid_and_the_psnr_from_a_checkpoint(pretrained, tmp_path):
    output, _ = pretrained
    stdout = run(EXAMPLES / "reconstruct.py", output / "checkpoint", "--output", tmp_path / "grid.png", cwd=tmp_path)
    assert "10 images, model trained on pixels" in stdout
    assert all(value > 0 for value in psnr_line(stdout))
    assert f"reconstruction: {tmp_path / 'grid.png'}" in stdout
    with Image.open(tmp_path / "grid.png") as png:
        assert png.mode == "RGB"


def test_reconstruct_takes_image_files(pretrained, tmp_path):
    output, _ = pretrained
    paths = write_images(tmp_path / "images")[:3]
    stdout = run(EXAMPLES / "reconstruct.py", output / "checkpoint", "--images", *paths, cwd=tmp_path)
    assert "3 images, model trained on pixels" in stdout
    with Image.open(tmp_path / "reconstruction.png") as png:
        assert png.size == (4 + 6 * (128 + 4), 4 + 2 * (128 + 4))  # two rows: three images, two a row


def test_reconstruct_reads_a_grey_model_with_the_statistics_it_records(tmp_path):
    model = create_model("mae_vit_tiny", img_size=32, patch_size=8, in_chans=1, depth=1, decoder_depth=1)
    model.pretrained_cfg = {"mean": (0.3,), "std": (0.2,)}
    model.save_pretrained(tmp_path / "grey")
    paths = write_images(tmp_path / "images")[:2]
    stdout = run(EXAMPLES / "reconstruct.py", tmp_path / "grey", "--images", *paths, cwd=tmp_path)
    assert "2 images, model trained on pixels" in stdout
    bands = create_model("mae_vit_tiny", img_size=32, patch_size=8, in_chans=4, depth=1, decoder_depth=1)
    stderr = run_failing(EXAMPLES / "reconstruct.py", bands.save_pretrained(tmp_path / "bands"), cwd=tmp_path)
    assert stderr.strip() == "reconstruct.py: error: reconstruct.py shows grey or RGB models; this one takes 4 bands"


def test_backbone_trains_a_dense_head_on_a_pretrained_encoder(pretrained, tmp_path):
    output, _ = pretrained
    args = ("--checkpoint", output / "checkpoint", "--steps", "3", "--batch-size", "2", "--log-every", "1")
    stdout = run(EXAMPLES / "backbone.py", *args, cwd=tmp_path)
    assert "head on blocks [0, 1, 2, 3] of a frozen 4-block encoder" in stdout
    assert all(f"step {step}: loss" in stdout for step in (1, 2, 3))


def test_digits_scripts_pretrain_once_then_reuse_the_cached_mae_and_print_both_accuracies(tmp_path):
    output = tmp_path / "digits"

    def digits(script: str, steps: int, epochs: str) -> str:
        args = (*DIGITS_TINY, "--pretrain-steps", steps, "--epochs", epochs, "--output", output)
        return run(EXAMPLES / script, *args, cwd=tmp_path)

    probe = digits("linear_probe.py", 2, "1")
    assert f"pre-trained an MAE on 1437 training digits, saved in {output / 'mae'}: 2 steps of batch 16" in probe
    finetune = digits("finetune.py", 2, "0.1")
    assert f"reusing the MAE pre-trained on digits in {output / 'mae'}: 2 steps of batch 16" in finetune
    for stdout, task in ((probe, "linear probe"), (finetune, "fine-tuning")):
        assert f"{task}, accuracy on the 360 test digits:" in stdout
        assert set(accuracies(stdout)) == {"MAE-pretrained", "random init"}
    # An epoch of probing learns from either encoder's features: far above chance (10%).
    assert min(accuracies(probe).values()) > 30
    assert MaskedAutoencoderViT.from_pretrained(output / "mae").config.embed_dim == 64
    # Other pre-training settings make a new MAE rather than reuse the cached one.
    assert "pre-trained an MAE on 1437 training digits" in digits("linear_probe.py", 3, "0.1")


@pytest.mark.parametrize("script", DIGIT_SCRIPTS)
def test_digits_scripts_take_a_checkpoint_written_by_pretrain(pretrained, tmp_path, script):
    output, _ = pretrained
    args = ("--checkpoint", output / "checkpoint", "--epochs", "0.05", "--batch-size", "16", "--output", tmp_path)
    stdout = run(EXAMPLES / script, *args, cwd=tmp_path)
    assert "pre-trained an MAE" not in stdout and "reusing" not in stdout
    assert set(accuracies(stdout)) == {"MAE-pretrained", "random init"}
    assert not (tmp_path / "mae").exists()


# Both scripts check --checkpoint with the same code: each case runs with one of them.
@pytest.mark.parametrize(
    ("script", "folder", "message"),
    [
        ("linear_probe.py", "missing", "argument --checkpoint: {path} does not exist: expected an MAE's folder"),
        ("finetune.py", "empty", "cannot load {path}: {path} holds none of the weight files"),
    ],
)
def test_digits_scripts_reject_a_checkpoint_they_cannot_read(tmp_path, script, folder, message):
    (tmp_path / "empty").mkdir()
    stderr = run_failing(EXAMPLES / script, "--checkpoint", tmp_path / folder, cwd=tmp_path)
    assert message.format(path=tmp_path / folder) in stderr


def test_masking_study_pretrains_each_variant_and_writes_both_tables(common, tmp_path):
    output = tmp_path / "study"
    settings = ("--pretrain-steps", "2", "--probe-epochs", "0.2", "--finetune-epochs", "0.05", "--output", output)
    ratios = ("--ratios", "0.9", "0.75", "0.9")  # repeated ratios run once
    stdout = run(EXAMPLES / "masking_study.py", *DIGITS_TINY[:2], *ratios, *settings, cwd=tmp_path)
    names = ["random-75", "block-50", "block-75", "grid-75", "random-90"]
    assert all(f"saved in {output / name}: 2 steps of batch 16" in stdout for name in names)
    results = json.loads((output / "results.json").read_text())
    rows = {row["name"]: row for row in results["variants"]}
    assert list(rows) == names
    assert rows["block-75"]["masking"] == "BlockMasking(mask_ratio=0.75, min_block=5, min_aspect=0.3)"
    assert rows["grid-75"]["masking"] == "GridMasking(stride=2)"
    record = json.loads((output / "grid-75" / "pretraining.json").read_text())
    assert record["masking"] == "GridMasking(stride=2)"
    # --precision auto: what this machine runs fast (bf16 on CPUs with AMX or AVX512-BF16, fp32 on others).
    assert record["precision"] == common.precision_name(common.choose_precision("auto", common.choose_device()))
    grid, random_90 = (rows[name] for name in ("grid-75", "random-90"))
    assert f"| grid | 75% | 84.0 | 66.0 | {grid['ft']:.1f} | {grid['lin']:.1f} |" in stdout
    assert f"| 90% | {random_90['ft']:.1f} | {random_90['lin']:.1f} |" in stdout
    baseline = results["random_init"]
    assert f"| none (random weights) | - | - | - | {baseline['ft']:.1f} | {baseline['lin']:.1f} |" in stdout
    assert all(0 <= row[task] <= 100 for row in rows.values() for task in ("ft", "lin"))
    config = MaskedAutoencoderViT.from_pretrained(output / "random-90").config
    assert (config.patch_size, config.mask_ratio) == (4, 0.9)  # an 8 x 8 patch grid, the ratio it trained at


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_digits_pretraining_runs_and_records_the_precision_it_is_given(tmp_path, precision):
    # One step of batch 16: bf16 matmuls crawl on CPUs without native bf16 (~80x slower than fp32).
    args = (*DIGITS_TINY, "--pretrain-steps", "1", "--epochs", "0.05", "--precision", precision)
    run(EXAMPLES / "linear_probe.py", *args, "--output", tmp_path, cwd=tmp_path)
    assert json.loads((tmp_path / "mae" / "pretraining.json").read_text())["precision"] == precision


@pytest.mark.parametrize("ratio", ["1.0", "0", "0.749"])
def test_masking_study_rejects_a_ratio_it_cannot_name(tmp_path, ratio):
    stderr = run_failing(EXAMPLES / "masking_study.py", "--ratios", "0.5", ratio, cwd=tmp_path)
    assert f"--ratios must be whole percents strictly between 0 and 1, like 0.25, got {float(ratio)}" in stderr


def test_masking_study_refuses_a_grid_at_another_ratio(common):
    study = importlib.import_module("masking_study")
    assert isinstance(study.Variant("grid", 0.75).masking(min_block=5), study.GridMasking)
    for sampling, ratio in (("grid", 0.9), ("lines", 0.5)):
        with pytest.raises(ValueError, match=f"no masking for sampling='{sampling}' at ratio {ratio}"):
            study.Variant(sampling, ratio).masking(min_block=5)


def test_pretrain_digits_trains_with_the_given_masking(common):
    digits = importlib.import_module("digits")
    masking = importlib.import_module("masked_autoencoder").GridMasking()
    config = create_model("mae_vit_tiny", img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2).config
    train, _ = digits.load_digits_split(config.image_hw)
    settings = digits.PretrainSettings(steps=1, batch_size=8, seed=0)
    model, losses = digits.pretrain_digits(config, train, settings, torch.device("cpu"), None, masking)
    assert model.masking is masking and len(losses) == 1


def test_cached_digits_mae_is_reused_only_for_the_same_masking_and_precision(common, tmp_path, capsys):
    digits = importlib.import_module("digits")
    masking = importlib.import_module("masked_autoencoder").BlockMasking(0.5, min_block=2)
    model = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=16, decoder_depth=1)
    settings = digits.PretrainSettings(steps=1, batch_size=8, seed=0)

    def cached(strategy: object, precision: str = "fp32") -> str:
        digits.cached_digits_mae(tmp_path, model, settings, masking=strategy, device="cpu", precision=precision)
        return capsys.readouterr().out

    assert "pre-trained an MAE" in cached(None)
    assert "reusing" in cached(None)
    assert "pre-trained an MAE" in cached(masking)
    assert "reusing" in cached(masking)
    assert json.loads((tmp_path / "pretraining.json").read_text())["masking"] == repr(masking)
    assert "pre-trained an MAE" in cached(masking, precision="bf16")
    assert json.loads((tmp_path / "pretraining.json").read_text())["precision"] == "bf16"
    assert "pre-trained an MAE" in cached(None)


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine(common):
    lr = [common.learning_rate(step, peak=1.0, warmup_steps=10, total_steps=110) for step in (0, 5, 10, 60, 110)]
    assert lr == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])


def test_pretrain_optimizer_exempts_biases_norms_and_tokens_from_weight_decay(pretrain):
    model = create_model("mae_vit_tiny", depth=1, decoder_depth=1)
    args = pretrain.parse_args(["--weight-decay", "0.05"])
    optimizer, scaler = pretrain.make_optimizer(model, args.weight_decay, peak_lr=1e-3, dtype=None)
    names = {id(param): name for name, param in model.named_parameters()}
    decayed = {names[id(p)] for group in optimizer.param_groups if group["weight_decay"] for p in group["params"]}
    assert {"cls_token", "mask_token", "norm.weight", "blocks.0.attn.qkv.bias"}.isdisjoint(decayed)
    assert {"blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "decoder_pred.weight"} <= decayed
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert not scaler.is_enabled()  # only fp16 needs one


def test_masked_psnr_matches_scikit_image_on_the_removed_pixels(common):
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4] = 1
    mask[1, :, 2:, 6:] = 1
    psnr = common.masked_psnr(pred, target, mask)
    for index in range(2):
        removed = mask[index].expand(3, -1, -1).bool()
        reference = peak_signal_noise_ratio(target[index][removed].numpy(), pred[index][removed].numpy(), data_range=1)
        assert psnr[index].item() == pytest.approx(reference, rel=1e-5)


def test_mean_fill_paints_removed_pixels_with_the_visible_mean_colour(common):
    pixels = torch.rand(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1
    filled = common.mean_fill(pixels, mask)
    assert torch.equal(filled[..., :2], pixels[..., :2])
    colour = pixels[0, :, :, :2].mean(dim=(1, 2))
    torch.testing.assert_close(filled[0, :, :, 2:], colour.view(3, 1, 1).expand(3, 4, 2))


def test_heldout_batch_cuts_five_crops_of_each_image_in_the_model_space(common):
    images = [Image.new("RGB", (90, 40), "red"), Image.new("RGB", (30, 50), "blue")]
    batch = common.heldout_batch(images, (16, 24))
    assert batch.shape == (10, 3, 16, 24)
    torch.testing.assert_close(
        common.denormalize(batch[:5]), torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand_as(batch[:5])
    )


def test_transforms_give_the_requested_size_in_the_model_space(common):
    image = Image.new("RGB", (90, 40), "white")
    for transform in (common.pretrain_transform((16, 24)), common.center_transform((16, 24))):
        assert transform(image).shape == (3, 16, 24)
        torch.testing.assert_close(common.denormalize(transform(image)), torch.ones(3, 16, 24))


def test_multispectral_starts_13_bands_from_rgb_weights_and_trains(tmp_path):
    rgb = create_model("mae_vit_tiny", img_size=32, depth=2, decoder_depth=1).save_pretrained(tmp_path / "rgb")
    output = tmp_path / "bands"
    stdout = run(EXAMPLES / "multispectral.py", "--weights", rgb, "--steps", "3", "--output", output, cwd=tmp_path)
    assert "adapted to 13 bands: patch embedding (192, 13, 16, 16)" in stdout
    before, after = map(float, re.search(r"loss: ([\d.]+) before, ([\d.]+) after 3 steps", stdout).groups())
    assert math.isfinite(before) and math.isfinite(after)
    assert MaskedAutoencoderViT.from_pretrained(output).config.in_chans == 13
