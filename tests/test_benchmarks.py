"""The benchmark suite: ``run_all.py --quick`` end to end on tiny models, and the pieces its quick run skips."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from masked_autoencoder import MaskedAutoencoderViT, patchify, unpatchify

ROOT = Path(__file__).resolve().parents[1]
# The scripts import each other by module name, as they do when run from benchmarks/.
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import MaskTokensInEncoder  # noqa: E402
from bench_flops import count_flops, missing_attention_formulas  # noqa: E402
from bench_profile import OTHER_OPERATORS, grouped, operator_group, profile_sides  # noqa: E402
from bench_step import QUICK, build_parser  # noqa: E402
from report import parse  # noqa: E402
from timing import interleaved, paired_ratio  # noqa: E402
from workloads import time_sides  # noqa: E402

PARTS = {"step", "speedup", "features", "memory", "loading", "flops", "scaling", "profile"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """``run_all.py --quick`` in a fresh process: its results.json and its output folder."""
    output = tmp_path_factory.mktemp("benchmarks")
    command = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads((output / "results.json").read_text()), output


def _medians(results: dict[str, dict[str, float]]) -> list[float]:
    return [r["median"] for r in results.values()]


def test_run_all_quick_reports_every_part_with_the_machine(quick_run):
    summary, output = quick_run
    assert set(summary["reports"]) == PARTS and not summary["errors"]
    assert summary["machine"]["capability"] and summary["machine"]["threads"] == 1
    for name, report in summary["reports"].items():
        assert report["part"] == name and report["machine"]["torch"] == torch.__version__
        assert report["command"].startswith(f"python benchmarks/bench_{name}.py --quick")
        assert json.loads((output / f"{name}.json").read_text()) == report
    markdown = (output / "results.md").read_text()
    assert all(f"## {number}." in markdown for number in range(1, 9)) and "| capability | " in markdown


def test_quick_step_compares_same_outputs_and_times_every_side(quick_run):
    results = quick_run[0]["reports"]["step"]["results"]
    assert results["parity"] and all(check["match"] for check in results["parity"].values())
    fp32 = next(group for group in results["groups"] if group["precision"] == "fp32")
    assert set(fp32["results"]) == {"ours", "ours-checkpointing", "transformers-sdpa", "transformers-eager"}
    assert all(median > 0 for group in results["groups"] for median in _medians(group["results"]))
    assert all(check["within_1e-2"] for check in results["bf16_loss"].values())
    bf16 = next(group for group in results["groups"] if group["precision"] == "bf16")
    native = quick_run[0]["machine"]["cpu_bf16_native"]
    assert (set(bf16["results"]) == {"ours"} and bf16["note"]) if not native else not bf16["note"]


def test_quick_speedup_features_loading_time_both_sides(quick_run):
    reports = quick_run[0]["reports"]
    for row in reports["speedup"]["results"]["rows"]:
        assert set(row["results"]) == {"ours", "baseline"} and all(m > 0 for m in _medians(row["results"]))
        assert row["flops"]["baseline"] > row["flops"]["ours"] > 0
    features = reports["features"]["results"]
    assert all(check["match"] for check in features["same_outputs"].values()) and len(features["same_outputs"]) == 2
    assert all(m > 0 for group in features["groups"] for m in _medians(group["results"]))
    loading = reports["loading"]["results"]["benchmarks"][0]["results"]
    assert all(m > 0 for m in _medians(loading))


def test_quick_memory_measures_each_side_against_transformers(quick_run):
    rows = quick_run[0]["reports"]["memory"]["results"]["rows"]
    assert {row["side"] for row in rows} == {"ours", "transformers-sdpa"} and not any("error" in row for row in rows)
    for row in rows:
        assert row["peak_mb"] >= row["static_mb"] > row["runtime_mb"] > 0
        assert row["saved_mb"] > 0 and row["static_tensors_mb"] > 0
        assert row["ratios"]["peak_mb"] > 0


def test_quick_flops_and_scaling_count_flops_and_reach_a_fraction_of_peak(quick_run):
    reports = quick_run[0]["reports"]
    flops = reports["flops"]["results"]
    assert flops["flops"] > flops["attention_flops_added"] > 0  # torch 2.13 does not count CPU attention
    assert flops["efficiency"] > 0 and flops["peak_gflops"] > 0
    scaling = reports["scaling"]["results"]
    batch = {p["batch"]: p for p in scaling["points"] if p["sweep"] == "batch"}
    assert batch[2]["flops"] == 2 * batch[1]["flops"] and all(p["median"] > 0 for p in scaling["points"])
    if importlib.util.find_spec("matplotlib") is not None:
        assert Path(scaling["plot"]).stat().st_size > 10_000


def test_quick_profile_groups_every_sides_operators(quick_run):
    workloads = quick_run[0]["reports"]["profile"]["results"]["workloads"]
    assert set(workloads["step"]["groups"]) == {"ours", "transformers-sdpa"}
    assert set(workloads["features"]["groups"]) == {"ours", "transformers-vitmae", "transformers-vit"}
    for profiled in workloads.values():
        for side, groups in profiled["groups"].items():
            assert groups["matrix products"] > 0 and groups["attention"] > 0 and groups["GELU"] > 0
            assert sum(groups.values()) == pytest.approx(sum(profiled["operators"][side].values()))
    assert workloads["step"]["groups"]["ours"]["optimizer"] > 0 == workloads["features"]["groups"]["ours"]["optimizer"]


def test_operator_group_sorts_operators_by_what_they_compute():
    assert operator_group("aten::addmm") == operator_group("aten::convolution_backward") == "matrix products"
    assert operator_group("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention"
    assert operator_group("aten::gelu_backward") == "GELU" and operator_group("aten::native_layer_norm") == "layer norm"
    assert operator_group("aten::_fused_adamw_") == operator_group("Optimizer.step#AdamW.step") == "optimizer"
    assert operator_group("aten::copy_") == OTHER_OPERATORS
    assert operator_group("MmBackward0") not in {OTHER_OPERATORS, "matrix products"}


def test_profile_sides_counts_each_cases_own_operators_per_call():
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    operators = profile_sides({"mm": lambda: a.mm(b), "gelu": lambda: F.gelu(a)}, repeats=2, device=torch.device("cpu"))
    assert "aten::mm" in operators["mm"] and "aten::mm" not in operators["gelu"]
    groups = grouped(operators["gelu"])
    assert groups["GELU"] > 0 and groups["matrix products"] == 0 and next(iter(groups)) == "GELU"


def test_quick_defaults_give_way_to_explicit_flags():
    args = parse(build_parser(), QUICK, ["--quick", "--batch", "3"])
    assert args.model == QUICK["model"] and args.batch == 3 and not args.compile
    assert parse(build_parser(), QUICK, []).model == "mae_vit_base_patch16"


def _baseline_and_inputs(mask_ratio: float) -> tuple[MaskTokensInEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mae = MaskedAutoencoderViT(TINY.replace(mask_ratio=mask_ratio))
    generator = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 3, 32, 32, generator=generator)
    return MaskTokensInEncoder(mae), imgs, torch.rand(2, 16, generator=generator)


def test_baseline_without_masking_encodes_like_forward_features():
    baseline, imgs, noise = _baseline_and_inputs(mask_ratio=0.0)
    with torch.no_grad():
        assert torch.equal(baseline(imgs, noise=noise).latent, baseline.mae.forward_features(imgs))


def test_baseline_masks_as_the_mae_and_never_sees_the_removed_patches():
    baseline, imgs, noise = _baseline_and_inputs(mask_ratio=0.75)
    with torch.no_grad():
        out = baseline(imgs, noise=noise)
        assert torch.equal(out.mask, baseline.mae(imgs, noise=noise).mask)
        assert out.latent.shape == (2, 17, TINY.embed_dim) and out.pred.shape == (2, 16, TINY.patch_dim)
        patches = patchify(imgs, TINY.patch_size)
        changed = unpatchify(patches + 5 * out.mask.unsqueeze(-1), TINY.patch_size, TINY.grid_size)
        assert torch.equal(baseline(changed, noise=noise).latent, out.latent)
        kept_changed = unpatchify(patches + 5 * (1 - out.mask).unsqueeze(-1), TINY.patch_size, TINY.grid_size)
        assert not torch.equal(baseline(kept_changed, noise=noise).latent, out.latent)


def test_count_flops_counts_attention_forward_and_backward():
    batch, heads, tokens, width = 2, 3, 5, 4
    q, k, v = (torch.randn(batch, heads, tokens, width, requires_grad=True) for _ in range(3))
    counted = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    # Forward: two (N x N) matmuls; backward: the flash kernel recomputes the scores, then four more.
    forward = 4 * batch * heads * tokens * tokens * width
    assert counted["total"] == forward * 7 // 2
    assert counted["attention_added"] == (counted["total"] if missing_attention_formulas() else 0)


def test_interleaved_alternates_cases_and_their_order_and_drops_one_that_fails():
    calls: list[str] = []

    def failing() -> None:
        calls.append("c")
        raise RuntimeError("cannot run")

    cases = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "c": failing}
    errors: dict[str, str] = {}
    results = interleaved(cases, repeats=2, warmup=1, errors=errors)
    assert calls == ["a", "b", "c", "b", "a", "a", "b"]  # every other round reversed; c dropped after failing
    assert set(results) == {"a", "b"} and results["a"]["repeats"] == 2 and errors == {"c": "RuntimeError: cannot run"}


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    ours = {"times": [1.0, 2.0, 1.0]}
    theirs = {"times": [1.5, 2.2, 0.9]}  # rounds: 1.5x, 1.1x, 0.9x; the medians' ratio would say 1.5x
    assert paired_ratio(theirs, ours) == "1.10x"
    assert (
        paired_ratio(theirs, None)
        == paired_ratio({"times": [1.0]}, ours)
        == paired_ratio({"median": 1.0}, ours)
        == "n/a"
    )
    assert len(interleaved({"a": lambda: None}, repeats=3)["a"]["times"]) == 3


def test_time_sides_compiles_and_reports_a_side_that_cannot():
    def broken(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> None:
        raise RuntimeError("no compiler here")

    x = torch.randn(2, 4)

    def case(name: str, module: torch.nn.Module):
        return lambda: module(x)

    kwargs = {"repeats": 1, "warmup": 1, "device": torch.device("cpu")}
    compiled = time_sides({"ours": torch.nn.Linear(4, 4)}, case, "eager", **kwargs)
    assert compiled["compiled"] == "eager" and compiled["results"]["ours"]["median"] > 0 and not compiled["errors"]
    failed = time_sides({"ours": torch.nn.Linear(4, 4)}, case, broken, **kwargs)
    assert not failed["results"] and "no compiler here" in failed["errors"]["ours"]


def test_run_all_reports_a_part_that_fails_and_exits_1(tmp_path):
    (tmp_path / "loading.json").mkdir()  # the part cannot write its results there
    command = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--parts", "loading"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, "--output", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert done.returncode == 1 and not summary["reports"]
    assert "IsADirectoryError" in summary["errors"]["loading"]
