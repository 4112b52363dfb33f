"""The benchmarks: every script's ``--quick`` run, in this process, and the harness's arithmetic; no timing asserted."""

from __future__ import annotations

import json
import random
import statistics
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from masked_autoencoder import create_model, patchify, unpatchify

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import the harness by name, as when run from benchmarks/

import run_all  # noqa: E402
from bench_dense import build_parser as dense_parser  # noqa: E402
from bench_speedup import MaskTokensInEncoder  # noqa: E402
from harness import _flags, interleaved, paired_ratio, timing_rows  # noqa: E402
from sides import count_flops  # noqa: E402

CASES = {
    "step": {"ours", "transformers-sdpa", "transformers-eager"},
    "speedup": {"ours", "baseline"},
    "features": {"ours", "transformers-vitmae", "transformers-vit"},
    "loading": {"load_file + touch", "ours (our files)", "ours (transformers files)", "transformers from_pretrained"},
    "masking": {"random", "block", "grid", "per-image 0.75", "per-image 0.6-0.9"},
    "dense": {"global", "windowed-rel-pos", "windowed"},
    "video": {"ours", "transformers-sdpa"},
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, str]]:
    """Every script's ``main(["--quick", "--output", folder])``: its JSON record and its markdown, by name."""
    output = tmp_path_factory.mktemp("results")
    threads = torch.get_num_threads()
    # One thread, here and in bench_memory's processes: tiny models gain nothing from more, and on a busy
    # machine threads that wait for each other take several times as long.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        try:
            for name in run_all.SCRIPTS:
                __import__(f"bench_{name}").main(["--quick", "--output", str(output)])
        finally:
            torch.set_num_threads(threads)
    return {
        name: (json.loads((output / f"{name}.json").read_text()), (output / f"{name}.md").read_text())
        for name in run_all.SCRIPTS
    }


def test_run_all_runs_every_script_in_the_folder():
    assert {path.stem.removeprefix("bench_") for path in BENCHMARKS.glob("bench_*.py")} == set(run_all.SCRIPTS)


def test_quick_runs_write_a_row_per_case_with_positive_times(quick):
    for name, cases in CASES.items():
        record, markdown = quick[name]
        assert record["command"] == f"python benchmarks/bench_{name}.py --quick --output {record['settings']['output']}"
        assert record["machine"]["torch"] == torch.__version__ and record["machine"]["capability"]
        results = record["results"]
        for times in [results["times"]] if "times" in results else [model["times"] for model in results.values()]:
            assert set(times) == cases and all(len(ts) == 2 and min(ts) > 0 for ts in times.values())
        assert all(f"| {case} | " in markdown for case in cases)


def test_quick_step_gives_the_same_loss_on_both_sides_and_counts_flops(quick):
    results = quick["step"][0]["results"]
    losses = results["losses"]
    assert losses["ours"] > 0 and all(loss == pytest.approx(losses["ours"], abs=1e-5) for loss in losses.values())
    assert results["flops"] > 0 and results["peak_flops"] > 0


def test_quick_features_match_ours_and_the_baseline_does_more_flops(quick):
    assert all(diff < 1e-4 for diff in quick["features"][0]["results"]["max_abs_diff"].values())
    flops = quick["speedup"][0]["results"]["flops"]
    assert flops["baseline"] > 1.5 * flops["ours"] > 0  # 4x the encoder tokens, the same decoder


def test_quick_memory_measures_both_sides(quick):
    results, markdown = quick["memory"]
    mb = results["results"]
    assert all(side["peak"] >= side["static"] > 0 and side["saved"] > 0 for side in mb.values())
    assert mb["ours-checkpointing"]["saved"] < mb["ours"]["saved"]  # only the blocks' inputs are kept
    assert all(f"| {side} | " in markdown for side in ("ours", "ours-checkpointing", "transformers-sdpa"))


def test_quick_dense_measures_the_memory_of_every_side(quick):
    record, markdown = quick["dense"]
    mb = record["results"]["memory"]
    assert set(mb) == CASES["dense"] and all(side["peak"] >= side["static"] > 0 for side in mb.values())
    assert mb["windowed-rel-pos"]["saved"] > mb["windowed"]["saved"] > 0  # the biases are kept for backward
    assert "| windowed / global | " in markdown and record["settings"]["global_blocks"] == [1]


def test_a_measuring_process_gets_every_setting_but_the_parents_own():
    parsed = dense_parser()
    args = parsed.parse_args(["--quick", "--rounds=5", "--batch=2", "--global-blocks", "0", "3", "--compile"])
    child = vars(parsed.parse_args(_flags(args)))
    assert child == vars(args) | {"quick": False, "rounds": 3} and child["global_blocks"] == [0, 3]


def test_interleaved_reverses_every_other_round_and_keeps_the_timed_ones():
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert {name: len(ts) for name, ts in times.items()} == {"a": 3, "b": 3}


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    rng = random.Random(0)
    ours = [rng.uniform(1, 2) for _ in range(7)]
    theirs = [rng.uniform(1, 3) for _ in range(7)]
    assert paired_ratio(theirs, ours) == sorted(t / o for t, o in zip(theirs, ours, strict=True))[3]
    assert paired_ratio([1.0, 4.0, 2.0], [2.0, 2.0, 1.0]) == 2.0  # the medians' ratio would say 1.0
    rows = timing_rows({"ours": ours, "theirs": theirs}, ["ours"])
    assert rows[1]["paired / ours"] == f"{paired_ratio(theirs, ours):.2f}x"
    assert rows[1]["median (s)"] == f"{statistics.median(theirs):.3f}"


def test_count_flops_adds_attention_forward_and_backward():
    batch, heads, tokens, width = 2, 3, 5, 4
    q, k, v = (torch.randn(batch, heads, tokens, width, requires_grad=True) for _ in range(3))
    forward = 2 * 2 * batch * heads * tokens * tokens * width  # scores and weighted values, 2 FLOPs a product
    # Backward: the scores recomputed, then four products more.
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) == forward * 7 // 2


def _baseline(mask_ratio: float) -> tuple[MaskTokensInEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mae = create_model("mae_vit_tiny_patch16", img_size=64, depth=2, decoder_depth=1, mask_ratio=mask_ratio)
    baseline = MaskTokensInEncoder(mae)
    return baseline.eval(), torch.randn(2, 3, 64, 64), torch.rand(2, 16)


def test_baseline_without_masking_computes_what_ours_does():
    baseline, imgs, noise = _baseline(mask_ratio=0.0)
    with torch.no_grad():
        out, ours = baseline(imgs, noise=noise), baseline.mae(imgs, noise=noise)
        assert torch.equal(out.latent, baseline.mae.forward_features(imgs))
        torch.testing.assert_close(out.pred, ours.pred, atol=1e-5, rtol=1e-5)


def test_baseline_masks_as_ours_and_never_sees_the_removed_patches():
    baseline, imgs, noise = _baseline(mask_ratio=0.75)
    with torch.no_grad():
        out = baseline(imgs, noise=noise)
        assert torch.equal(out.mask, baseline.mae(imgs, noise=noise).mask) and out.latent.shape[1] == 17
        patches = patchify(imgs, 16)
        changed = unpatchify(patches + 5 * out.mask.unsqueeze(-1), 16, (4, 4))
        assert torch.equal(baseline(changed, noise=noise).latent, out.latent)
        kept_changed = unpatchify(patches + 5 * (1 - out.mask).unsqueeze(-1), 16, (4, 4))
        assert not torch.equal(baseline(kept_changed, noise=noise).latent, out.latent)


def test_quick_video_predicts_as_videomae_and_measures_both_sides_memory(quick):
    results = quick["video"][0]["results"]
    assert results["prediction_gap"] < 1e-5
    assert set(results["memory"]) == {"ours", "transformers-sdpa"}
    assert all(figures["peak"] > 0 for figures in results["memory"].values())
