"""Continued pre-training on your own data: examples/image_files.py directly, examples/pretrain.py as a user runs it."""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import test_examples
import tifffile
import torch
from PIL import Image
from test_examples import EXAMPLES, TINY, execute, run

from masked_autoencoder import MaskedAutoencoderViT, create_model

PRETRAIN = EXAMPLES / "pretrain.py"
common, pretrain = (
    test_examples.common,
    test_examples.pretrain,
)  # the fixtures: the modules, as the examples import them


@pytest.fixture
def files(common: ModuleType) -> ModuleType:
    """examples/image_files.py, imported as the examples import it."""
    return importlib.import_module("image_files")


def noise_picture(path: Path, mode: str, size: tuple[int, int] = (40, 36)) -> Path:
    """A small picture of noise in ``mode`` (L, RGB, RGBA, ...), saved by its extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 64).convert(mode).save(path)
    return path


def bands_file(path: Path, bands: int, seed: int = 0, size: int = 36) -> Path:
    """A (bands, size, size) float32 array of values around 1000, saved as .npy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = 1000 + 100 * np.random.default_rng(seed).standard_normal((bands, size, size)).astype(np.float32)
    with open(path, "wb") as file:  # np.save(path) would add .npy to a name ending in .NPY
        np.save(file, array)
    return path


# ---- finding files ------------------------------------------------------------------------------


def test_find_images_takes_a_flat_folder_nested_folders_and_any_letter_case(files, tmp_path):
    flat = [noise_picture(tmp_path / "flat" / name, "RGB") for name in ("a.JPG", "b.Png", "c.webp", "d.jpeg")]
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    assert files.find_images(tmp_path / "flat") == sorted(flat)
    deep = [
        noise_picture(tmp_path / "deep" / "x" / "y" / "z" / "e.TIFF", "L"),
        bands_file(tmp_path / "deep" / "f.NPY", 2),
    ]
    assert files.find_images(tmp_path / "deep") == sorted(deep)


def test_find_images_reads_a_text_file_of_paths_relative_to_it(files, tmp_path):
    first = noise_picture(tmp_path / "images" / "a.png", "RGB")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\nimages/a.png\n\n{first}\n")
    assert files.find_images(listing) == [tmp_path / "images" / "a.png", first]


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_find_images_names_a_source_without_images(files, tmp_path, kind):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images")
    source = tmp_path / kind
    expected = "no images found: looked for .jpg" if kind == "empty" else "no such folder or file"
    with pytest.raises(files.NoImages, match=f"--data {source}: {expected}"):
        files.find_images(source)


def test_split_is_deterministic_and_checks_the_holdout(files):
    paths = [Path(f"{index}.png") for index in range(10)]
    train, heldout = files.split(paths, 3, seed=0)
    assert (train, heldout) == files.split(list(paths), 3, seed=0)
    assert len(heldout) == 3 and sorted(train + heldout) == sorted(paths)
    with pytest.raises(ValueError, match="--holdout must be between 1 and 9 \\(the images of --data\\), got 10"):
        files.split(paths, 10, seed=0)


# ---- reading and converting ---------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".png"), ("RGBA", ".png"), ("RGB", ".jpg"), ("RGB", ".webp")])
def test_pictures_become_three_channels_in_unit_range(files, tmp_path, mode, suffix):
    path = noise_picture(tmp_path / f"picture{suffix}", mode)
    image = files.read_image(path, 3)
    assert image.shape == (3, 36, 40) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    with Image.open(path) as reference:
        expected = torch.from_numpy(np.array(reference.convert("RGB"))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)


def test_a_colour_picture_becomes_grey_for_one_channel(files, tmp_path):
    path = noise_picture(tmp_path / "colour.png", "RGB")
    with Image.open(path) as reference:
        expected = torch.from_numpy(np.array(reference.convert("L"))).float()[None] / 255
    torch.testing.assert_close(files.read_image(path, 1), expected, atol=1 / 255, rtol=0)  # PIL rounds to 8 bits


def test_npy_bands_are_read_in_their_own_units(files, tmp_path):
    path = bands_file(tmp_path / "bands.npy", 13)
    torch.testing.assert_close(files.read_image(path, 13), torch.from_numpy(np.load(path)))


def test_a_multi_page_tiff_is_one_band_a_page(files, tmp_path):
    array = np.random.default_rng(0).random((5, 20, 24)).astype(np.float32)
    tifffile.imwrite(tmp_path / "bands.tif", array, photometric="minisblack")
    torch.testing.assert_close(files.read_image(tmp_path / "bands.tif", 5), torch.from_numpy(array))


def test_an_rgb_tiff_is_a_picture(files, tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "photo.tiff", array, photometric="rgb")
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(files.read_image(tmp_path / "photo.tiff", 3), expected)


@pytest.mark.parametrize("kind", ["npy", "tiff", "picture"])
def test_band_counts_that_disagree_with_in_chans_are_refused(files, tmp_path, kind):
    if kind == "npy":
        path, message = (
            bands_file(tmp_path / "b.npy", 4),
            r"an array of shape \(4, 36, 36\), expected \(13, H, W\) for --in-chans 13",
        )
    elif kind == "tiff":
        path = tmp_path / "b.tif"
        tifffile.imwrite(path, np.zeros((4, 8, 8), np.float32), photometric="minisblack")
        message = r"an array of shape \(4, 8, 8\), expected \(13, H, W\) for --in-chans 13"
    else:
        path, message = (
            noise_picture(tmp_path / "p.png", "RGB"),
            "a picture of 3 channel\\(s\\) cannot fill --in-chans 13",
        )
    with pytest.raises(files.ChannelMismatch, match=f"{path}: {message}"):
        files.read_image(path, 13)


@pytest.mark.parametrize("content", [b"", b"not a png at all", "truncated"])
def test_corrupt_files_are_unreadable_images(files, tmp_path, content):
    path = tmp_path / "bad.png"
    if content == "truncated":
        noise_picture(path, "RGB", (200, 200))
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(files.UnreadableImage, match=str(path)):
        files.read_image(path, 3)
    with pytest.raises(files.UnreadableImage, match=str(tmp_path / "missing.npy")):
        files.read_image(tmp_path / "missing.npy", 3)


def test_image_files_replace_a_bad_file_by_the_next_and_say_which(files, tmp_path):
    good = noise_picture(tmp_path / "good.png", "RGB")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"broken")
    dataset = files.ImageFiles([bad, good], 3, transform=lambda image: image[:, :8, :8])
    image, skipped = dataset[0]
    assert image.shape == (3, 8, 8) and skipped.startswith(f"{bad}: ")
    assert dataset[1][1] == ""
    record = files.BadFiles({})
    assert files.record_skipped([skipped, ""], record) == [skipped]
    assert files.record_skipped([skipped], record) == []  # counted once
    assert record.summary() == f"unreadable files skipped: 1 ({skipped})"


def test_bad_files_summary_names_the_first_few(files):
    record = files.BadFiles({})
    for index in range(5):
        record.add(f"f{index}", f"f{index}: broken")
    assert record.summary() == "unreadable files skipped: 5 (f0: broken; f1: broken; f2: broken; and 2 more)"


def test_channel_stats_are_the_mean_and_std_of_every_pixel_of_the_sample(files, tmp_path):
    paths = [bands_file(tmp_path / f"{index}.npy", 2, seed=index, size=8 + index) for index in range(3)]
    (tmp_path / "bad.npy").write_bytes(b"broken")
    record = files.BadFiles({})
    mean, std = files.channel_stats([*paths, tmp_path / "bad.npy"], 2, record)
    pixels = np.concatenate([np.load(path).reshape(2, -1) for path in paths], axis=1).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=1, ddof=1), rtol=1e-9)
    assert list(record.reasons) == [str(tmp_path / "bad.npy")]


# ---- the script on your own data ----------------------------------------------------------------


def logged(output: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, by name."""
    return MaskedAutoencoderViT.from_pretrained(folder).state_dict()


def test_pretrain_takes_a_flat_folder_of_mixed_pictures_skips_a_corrupt_one_and_records_its_statistics(files, tmp_path):
    folder = tmp_path / "flat"
    for index, mode in enumerate(["L", "L", "RGBA", "RGB", "RGB"]):
        noise_picture(folder / f"{index}.{'PNG' if index % 2 else 'jpeg' if mode == 'RGB' else 'png'}", mode)
    (folder / "broken.png").write_bytes(b"not a picture")
    output = tmp_path / "run"
    args = ("--data", folder, "--holdout", "1", *TINY, "--accum-iter", "2", "--steps", "3", "--tensorboard")
    done = execute(PRETRAIN, *args, "--output", output, cwd=tmp_path)
    stdout = done.stdout
    assert done.returncode == 0, stdout + done.stderr
    assert re.search(r"3/3 \[.*, loss=[0-9.]+, lr=[0-9.e-]+, img/s=[0-9.]+\]", done.stderr)  # the progress bar
    assert f"found 6 images in {folder}" in stdout
    assert "training on 5 images, 1 held out" in stdout
    assert (
        "total batch 4 = batch 2 x 1 process(es) x 2 accumulated; lr = base lr 1.50e-02 x 4 / 256 = 2.34e-04" in stdout
    )
    assert re.search(r"data loader \d+ images/s, model step \d+ images/s", stdout)
    assert f"warning (rank 0): skipped {folder / 'broken.png'}: " in stdout
    assert f"unreadable files skipped: 1 ({folder / 'broken.png'}: " in stdout
    records = logged(output)
    assert [record["step"] for record in records] == [1, 2, 3]
    assert all(math.isfinite(record["loss"]) and record["lr"] > 0 for record in records)
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    # The mean and std of the training files' pixels, as RGB in [0, 1], computed here with PIL and NumPy.
    train, _ = files.split(sorted(folder.iterdir()), 1, seed=0)
    pixels = []
    for path in train:
        if path.name != "broken.png":
            with Image.open(path) as image:
                pixels.append(np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255)
    pixels = np.concatenate(pixels)
    cfg = json.loads((output / "checkpoint" / "config.json").read_text())["pretrained_cfg"]
    np.testing.assert_allclose(cfg["mean"], pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(cfg["std"], pixels.std(axis=0, ddof=1), rtol=1e-6)
    assert MaskedAutoencoderViT.from_pretrained(output / "checkpoint").pretrained_cfg["mean"] == tuple(cfg["mean"])


def test_pretrain_trains_on_npy_bands_listed_in_a_text_file_with_the_given_statistics(pretrain, tmp_path, capsys):
    paths = [bands_file(tmp_path / "bands" / f"{index}.npy", 13, seed=index) for index in range(4)]
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(str(path.relative_to(tmp_path)) for path in paths) + "\n")
    mean, std = [str(1000 + band) for band in range(13)], [str(100 + band) for band in range(13)]
    output = tmp_path / "run"
    args = ("--data", listing, "--in-chans", "13", "--mean", *mean, "--std", *std, "--show-bands", "3", "2", "1")
    pretrain.main([*map(str, args), "--holdout", "1", *TINY, "--steps", "2", "--output", str(output)])
    stdout = capsys.readouterr().out
    assert "images 32x32x13" in stdout and "training on 3 images, 1 held out" in stdout
    model = MaskedAutoencoderViT.from_pretrained(output / "checkpoint")
    assert model.config.in_chans == 13
    assert model.pretrained_cfg["mean"] == tuple(map(float, mean))  # as given
    assert model.pretrained_cfg["std"] == tuple(map(float, std))
    with Image.open(output / "reconstruction-000002.png") as png:
        assert png.mode == "RGB"


def test_reconstructions_show_one_band_in_grey(pretrain, tmp_path):
    model = create_model("mae_vit_tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1, in_chans=5)
    cfg = {**model.pretrained_cfg, "mean": (0.0,) * 5, "std": (1.0,) * 5}
    path = importlib.import_module("common").save_reconstructions(
        model, torch.randn(2, 5, 32, 32), tmp_path / "grey.png", to_pixels=pretrain.pixel_view(cfg, True), bands=[4]
    )
    with Image.open(path) as png:
        red, green, blue = (np.asarray(channel) for channel in png.split())
    assert np.array_equal(red, green) and np.array_equal(green, blue) and red.std() > 0


def bad_inputs(tmp_path: Path) -> dict[str, tuple[tuple, str]]:
    """Per case, the flags of a run that must fail before training, and what its message must say."""
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("nothing here")
    bands = [bands_file(tmp_path / "bands" / f"{index}.npy", 4, seed=index) for index in range(3)]
    noise_picture(tmp_path / "rgb" / "a.png", "RGB")
    noise_picture(tmp_path / "rgb" / "b.png", "RGB")
    return {
        "no images": (("--data", tmp_path / "no-images"), f"--data {tmp_path / 'no-images'}: no images found"),
        "bands": (("--data", tmp_path / "bands", "--in-chans", "13"), "expected (13, H, W) for --in-chans 13"),
        "pictures": (
            ("--data", tmp_path / "rgb", "--in-chans", "5"),
            "a picture of 3 channel(s) cannot fill --in-chans 5",
        ),
        "init": (("--init", tmp_path / "missing"), f"--init {tmp_path / 'missing'}: cannot load it"),
        "bands shown": (("--data", bands[0].parent, "--in-chans", "4", "--show-bands", "7"), "--show-bands [7]"),
        "mean": (("--data", bands[0].parent, "--in-chans", "4", "--mean", "1", "--std", "1"), "--mean takes 4 values"),
    }


def test_pretrain_refuses_a_folder_without_images_in_one_line_before_training(tmp_path):
    flags, message = bad_inputs(tmp_path)["no images"]
    output = tmp_path / "run"
    done = execute(PRETRAIN, *flags, "--output", output, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    looked_for = "looked for .jpg, .jpeg, .png, .webp, .tif, .tiff, .npy (any letter case, any sub-folder)"
    assert done.stderr == f"pretrain.py: error: {message}: {looked_for}\n"
    assert not output.exists()  # nothing trained, nothing written


@pytest.mark.parametrize("case", ["bands", "pictures", "init", "bands shown", "mean"])
def test_pretrain_refuses_bad_input_before_training(pretrain, tmp_path, case, monkeypatch):
    flags, message = bad_inputs(tmp_path)[case]
    monkeypatch.setattr(pretrain, "accumulated_step", None)  # a refusal comes before any step
    with pytest.raises(ValueError, match=re.escape(message)):
        pretrain.main([*map(str, flags), "--holdout", "1", *TINY, "--output", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_resume_to_twice_the_steps_equals_one_uninterrupted_run_bit_for_bit(pretrain, tmp_path, capsys):
    for index in range(4):
        noise_picture(tmp_path / "photos" / f"{index}.png", "RGB")
    # A warm-up longer than the run: the lr of a step is then the same whatever --steps says.
    settings = [*map(str, TINY), "--warmup-steps", "100", "--every", "100", "--accum-iter", "2", "--holdout", "1"]
    data = ["--data", str(tmp_path / "photos")]
    pretrain.main([*data, *settings, "--steps", "4", "--output", str(tmp_path / "whole")])
    pretrain.main([*data, *settings, "--steps", "2", "--output", str(tmp_path / "split")])
    capsys.readouterr()
    resume = ["--resume", str(tmp_path / "split" / "checkpoint"), "--output", str(tmp_path / "split")]
    pretrain.main(["--steps", "4", *resume])  # no --data, no settings: the checkpoint's
    assert f"resumed from step 2 on {tmp_path / 'photos'}" in capsys.readouterr().out
    whole, split = weights(tmp_path / "whole" / "checkpoint"), weights(tmp_path / "split" / "checkpoint")
    assert all(torch.equal(whole[name], split[name]) for name in whole)
    assert logged(tmp_path / "whole") == [
        {**record, "images_per_s": whole_record["images_per_s"]}
        for record, whole_record in zip(logged(tmp_path / "split"), logged(tmp_path / "whole"), strict=True)
    ]
    states = [torch.load(tmp_path / name / "checkpoint" / "training_state.pt") for name in ("whole", "split")]
    for first, second in zip(*(state["optimizer"]["state"].values() for state in states), strict=True):
        assert all(torch.equal(first[key], second[key]) for key in first)
    other = ["--data", str(tmp_path / "other")]
    with pytest.raises(ValueError, match=f"trained on {tmp_path / 'photos'}, not --data {tmp_path / 'other'}"):
        pretrain.main([*settings, "--steps", "6", *resume, *other])
    with pytest.raises(ValueError, match="ran with --accum-iter 2, not 1: the data order and the lr follow from it"):
        pretrain.main(["--steps", "6", *resume, "--accum-iter", "1"])


SAVER = """
import json, os, signal, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)  # no thread pool before fork
sys.path.insert(0, sys.argv[1])
import run_state
from masked_autoencoder import MaskedAutoencoderViT, create_model
folder, model, step = Path(sys.argv[2]), create_model("mae_vit_tiny", img_size=32, patch_size=8, depth=1), 0
for delay in map(float, sys.argv[3:]):
    saver = os.fork()
    if saver == 0:  # saves checkpoints of steps step + 1, step + 2, ... until killed
        while True:
            step += 1
            model.cls_token.data.fill_(step)  # each checkpoint tells its step
            state = {"step": step, "blob": torch.full((200_000,), float(step))}  # 800 kB: a save takes a while
            run_state.save_checkpoint(folder, model, state)
    time.sleep(delay)
    os.kill(saver, signal.SIGKILL)
    os.waitpid(saver, 0)
    link = folder / "checkpoint"
    if link.exists():
        step = torch.load(link / "training_state.pt", weights_only=True)["step"]
        token = MaskedAutoencoderViT.from_pretrained(link).cls_token.unique().tolist()
        print(json.dumps({"step": step, "token": token, "folder": link.resolve().name}), flush=True)
"""


def test_a_process_killed_while_saving_leaves_a_complete_checkpoint(tmp_path):
    delays = [f"{delay:.3f}" for delay in np.random.default_rng(0).uniform(0.05, 0.5, 6)]  # kills at many points
    stdout = run("-c", SAVER, EXAMPLES, tmp_path, *delays, cwd=tmp_path)
    loaded = [json.loads(line) for line in stdout.splitlines()]
    assert len(loaded) >= 4  # most kills come after the first save
    for record in loaded:
        assert record["token"] == [record["step"]]  # the weights of the step the state says
        assert record["folder"] == f"checkpoint-{record['step']:06d}"
    assert [record["step"] for record in loaded] == sorted(record["step"] for record in loaded)
    finals = [path.name for path in tmp_path.iterdir() if "tmp" not in path.name]
    assert len(finals) <= 3  # the link, the checkpoint it points at, at most one newer complete one


def test_non_finite_losses_skip_their_steps_and_too_many_in_a_row_stop_the_run(pretrain, tmp_path, capsys):
    for index in range(5):  # one file of NaNs among five: the batches that hold it have a NaN loss
        path = bands_file(tmp_path / "bands" / f"{index}.npy", 2, seed=index)
        if index == 0:
            np.save(path, np.full((2, 36, 36), np.nan, np.float32))
    flags = ["--data", str(tmp_path / "bands"), "--in-chans", "2", "--mean", "0", "0", "--std", "1", "1", *TINY]
    pretrain.main([*flags, "--holdout", "1", "--steps", "6", "--output", str(tmp_path / "skips")])
    records = logged(tmp_path / "skips")
    skipped = [record["step"] for record in records if not record["step_taken"]]
    assert skipped and len(skipped) < 6 and records[-1]["nonfinite_steps"] == len(skipped)
    assert f"non-finite losses (steps skipped): {len(skipped)}" in capsys.readouterr().out
    assert all(torch.isfinite(tensor).all() for tensor in weights(tmp_path / "skips" / "checkpoint").values())
    # Only NaN files: every step's loss is NaN, and the second in a row stops the run with advice.
    for index in range(5):
        np.save(tmp_path / "bands" / f"{index}.npy", np.full((2, 36, 36), np.nan, np.float32))
    args = [*flags, "--holdout", "1", "--steps", "6", "--max-nonfinite", "2", "--output", str(tmp_path / "stops")]
    with pytest.raises(SystemExit, match="stopped at step 2: 2 non-finite losses in a row. Try a lower --base-lr"):
        pretrain.main(args)


def test_init_from_encoder_weights_starts_a_fresh_decoder_and_can_train_it_alone(pretrain, tmp_path, capsys):
    encoder = create_model("mae_vit_tiny", img_size=32, patch_size=8, depth=1, encoder_only=True)
    encoder.save_pretrained(tmp_path / "encoder")
    for index in range(3):
        noise_picture(tmp_path / "scans" / f"{index}.png", "L")
    flags = ["--data", str(tmp_path / "scans"), "--in-chans", "1", "--init", str(tmp_path / "encoder"), *TINY[-2:]]
    flags += ["--freeze-encoder-steps", "2", "--holdout", "1", "--steps", "2", "--output", str(tmp_path / "run")]
    pretrain.main(flags)
    out = capsys.readouterr().out
    assert f"--init {tmp_path / 'encoder'}: " in out and "kept freshly initialised: [decoder_blocks" in out
    trained = weights(tmp_path / "run" / "checkpoint")
    with pytest.warns(UserWarning, match="kept freshly initialised"):
        start = MaskedAutoencoderViT.from_pretrained(tmp_path / "encoder", in_chans=1, strict=False).state_dict()
    assert trained["patch_embed.proj.weight"].shape == (192, 1, 8, 8)  # adapted from RGB
    assert all(torch.equal(trained[name], start[name]) for name in encoder.state_dict())  # the encoder held still
    assert not torch.equal(trained["decoder_norm.bias"], torch.zeros_like(trained["decoder_norm.bias"]))  # trained


class NoiseFromPixels(torch.nn.Module):
    """A tiny MAE whose masking noise is each image's own first pixels: the same masks however a batch is split."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mae = create_model("mae_vit_tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1).train()

    def forward(self, imgs: torch.Tensor) -> object:
        """imgs: (B, 3, 32, 32) -> the MAE's output."""
        grid = self.mae.config.grid_size
        return self.mae(imgs, noise=imgs.flatten(1)[:, : grid[0] * grid[1]])


def batch_of_four() -> torch.Tensor:
    """The batch of the accumulation tests: (4, 3, 32, 32)."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_accumulated_micro_batches_equal_one_large_batch(pretrain):
    images = batch_of_four()
    job = importlib.import_module("run_state").Job(0, 1, torch.device("cpu"))
    results = []
    for micro in ([images], [images[:2], images[2:]], list(images.split(1))):
        model = NoiseFromPixels()
        optimizer, scaler = pretrain.make_optimizer(model.mae, 0.05, 1e-3, None)
        loss, taken = pretrain.accumulated_step(model, optimizer, scaler, micro, 1e-3, None, job)
        assert taken
        results.append(({name: param.grad for name, param in model.named_parameters()}, loss))
    (grads, loss), accumulated = results[0], results[1:]
    for other_grads, other_loss in accumulated:
        assert other_loss == pytest.approx(loss, rel=1e-6)
        for name, grad in grads.items():
            torch.testing.assert_close(other_grads[name], grad, rtol=1e-5, atol=1e-7)
