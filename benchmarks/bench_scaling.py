"""How our pre-training step time scales with batch size, image size and model size: JSON and a PNG plot.

    python benchmarks/bench_scaling.py --plot docs/images/scaling.png      # the three sweeps below
    python benchmarks/bench_scaling.py --sweeps batch --batches 1 2 4 8 --repeats 1
    python benchmarks/bench_scaling.py --quick                              # tiny models, seconds

Sweeps (ours, fp32, one step = forward + backward + AdamW, mask ratio 0.75):
- ``batch``: ``--batches`` (1, 2, 4, ..., 64) at ``--batch-model`` (ViT-B/16), ``--img-size`` (224);
- ``image``: ``--img-sizes`` (224, 320, 448) at ``--batch-model``, batch ``--img-batch`` (8);
- ``model``: ``--models`` (B/16, L/16, H/14) at ``--img-size``, batch ``--model-batch`` (2).
Each point is timed on its own (``--warmup`` rounds, then ``--repeats``, default small: these are long
on a CPU): median and min - max; its FLOPs are counted in its first warm-up step, as in bench_flops.py.
The plot draws each sweep with its reference line, time proportional to FLOPs through the sweep's
first point: linear in the batch size; for image and model size, what the extra computation predicts.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from bench_flops import counted_and_timed
from report import Report, main_of, parser, progress
from timing import records_table, timed
from workloads import batch_inputs, build_ours, make_optimizer, output_loss, pick_device, training_step

PART = "scaling"
QUICK = {
    "batch_model": "mae_vit_tiny_patch16",
    "batches": [1, 2],
    "img_sizes": [32, 48],
    "img_batch": 2,
    "models": ["mae_vit_tiny_patch16"],
    "model_batch": 1,
    "img_size": 32,
    "repeats": 1,
}
SWEEPS = ("batch", "image", "model")
# sweep -> the point's field along the x axis, and its label.
_X_AXES = {"batch": ("batch", "batch size"), "image": ("img_size", "image size (px)"), "model": ("model", "model")}


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=2)
    parsed.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parsed.add_argument("--batch-model", default="mae_vit_base_patch16", help="the model of the batch and image sweeps")
    parsed.add_argument("--img-size", type=int, default=224, help="the image size of the batch and model sweeps")
    parsed.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64])
    parsed.add_argument("--img-sizes", nargs="+", type=int, default=[224, 320, 448])
    parsed.add_argument("--img-batch", type=int, default=8)
    default_models = ["mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"]
    parsed.add_argument("--models", nargs="+", default=default_models)
    parsed.add_argument("--model-batch", type=int, default=2)
    parsed.add_argument("--plot", type=Path, help="write the plot as a PNG here (needs matplotlib: the bench extra)")
    return parsed


def _points(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every (sweep, model, batch, image size) to time, in order."""
    points = []
    if "batch" in args.sweeps:
        points += [
            {"sweep": "batch", "model": args.batch_model, "batch": b, "img_size": args.img_size} for b in args.batches
        ]
    if "image" in args.sweeps:
        points += [
            {"sweep": "image", "model": args.batch_model, "batch": args.img_batch, "img_size": size}
            for size in args.img_sizes
        ]
    if "model" in args.sweeps:
        points += [
            {"sweep": "model", "model": name, "batch": args.model_batch, "img_size": args.img_size}
            for name in args.models
        ]
    return points


def time_point(point: dict[str, object], args: argparse.Namespace) -> dict[str, object]:
    """One point's step time (median, spread) and FLOPs."""
    device = pick_device(args.device)
    model = build_ours(point["model"], device, img_size=point["img_size"])
    step = training_step(model, output_loss, batch_inputs(model.config, point["batch"], device), make_optimizer(model))
    flops, timings = counted_and_timed({"ours": step}, repeats=args.repeats, warmup=args.warmup, device=device)
    return {**point, **timings["ours"], "flops": flops["ours"]["total"]}


def run(args: argparse.Namespace) -> dict[str, object]:
    points = []
    for point in _points(args):
        progress(f"scaling: {point}")
        points.append(time_point(point, args))
    plotted = None
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        progress("scaling: no plot, matplotlib is not installed (pip install -e '.[bench]')")
    elif args.plot:
        plot(points, args.plot)
        plotted = str(args.plot)
    return {"device": str(pick_device(args.device)), "points": points, "plot": plotted}


def _title(sweep: str, first: dict[str, object]) -> str:
    """What stays fixed along a sweep."""
    model = str(first["model"]).removeprefix("mae_vit_")
    if sweep == "batch":
        return f"{model}, {first['img_size']} px"
    if sweep == "image":
        return f"{model}, batch {first['batch']}"
    return f"batch {first['batch']}, {first['img_size']} px"


def _draw(axis: object, sweep: str, swept: list[dict[str, object]]) -> None:
    """One sweep: the median step times with their min - max, and time ∝ FLOPs through the first point."""
    key, label = _X_AXES[sweep]
    labels = [p[key] for p in swept]
    positions = labels if sweep == "batch" else list(range(len(swept)))
    first = swept[0]
    axis.plot(positions, [p["median"] for p in swept], "o-", label="measured (median)")
    axis.vlines(positions, [p["min"] for p in swept], [p["max"] for p in swept], color="C0")
    reference = [first["median"] * p["flops"] / first["flops"] for p in swept]
    axis.plot(positions, reference, "--", color="gray", label="∝ FLOPs from the first point")
    if sweep == "batch":
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
    axis.set_xticks(positions, [str(label).removeprefix("mae_vit_") for label in labels])
    axis.set(xlabel=label, ylabel="step time (s)", title=_title(sweep, first))
    axis.legend()


def plot(points: list[dict[str, object]], path: Path) -> None:
    """One panel per sweep, as a PNG (matplotlib: the bench extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [sweep for sweep in SWEEPS if any(p["sweep"] == sweep for p in points)]
    figure, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4), squeeze=False)
    for axis, sweep in zip(axes[0], sweeps, strict=True):
        _draw(axis, sweep, [p for p in points if p["sweep"] == sweep])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _record(point: dict[str, object]) -> dict[str, object]:
    return {
        "sweep": point["sweep"],
        "model": point["model"],
        "batch": point["batch"],
        "image size": point["img_size"],
        "step (s)": timed(point),
        "GFLOP": f"{point['flops'] / 1e9:.1f}",
        "GFLOP/s": f"{point['flops'] / point['median'] / 1e9:.1f}",
    }


def markdown(report: Report) -> str:
    results = report["results"]
    intro = f"Ours, fp32, {results['device']}, forward + backward + AdamW step; step time: median (min - max)."
    return intro + "\n\n" + records_table([_record(point) for point in results["points"]])


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
