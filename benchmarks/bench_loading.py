"""Loading speed: our from_pretrained against reading the same file with safetensors, and transformers.

    python benchmarks/bench_loading.py --models mae_vit_large_patch16 mae_vit_huge_patch14 --repeats 5
    python benchmarks/bench_loading.py --quick           # a tiny model, seconds (the smoke test)

Writes a random-weights checkpoint of each model in our format and in transformers' format to a
temporary folder, then times, interleaved in one process. Every case sums every tensor it gets,
because safetensors maps files lazily: a load that does not touch its bytes has not read them.
- ``safetensors load_file + touch``: the baseline;
- ``safetensors load_file(pread) + touch``: the same file read eagerly, where safetensors supports it;
- ``ours (our format)`` / ``ours (transformers files)``: ``MaskedAutoencoderViT.from_pretrained``;
- ``transformers``: ``ViTMAEForPreTraining.from_pretrained`` of the transformers files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from report import Report, main_of, parser
from safetensors.torch import load_file, save_file
from timing import interleaved, table

from masked_autoencoder import MaskedAutoencoderViT, create_model
from masked_autoencoder.hub.transformers_format import config_to_transformers, to_transformers_state_dict

PART = "loading"
QUICK = {"models": ["mae_vit_tiny_patch16"], "repeats": 1}


def _touch_all(tensors: dict[str, torch.Tensor]) -> float:
    return sum(float(t.float().sum()) for t in tensors.values())


def bench_model(name: str, repeats: int, folder: Path, warmup: int = 1) -> dict[str, object]:
    with torch.no_grad():
        model = create_model(name)
    ours_dir = model.save_pretrained(folder / f"{name}-ours")
    theirs_dir = folder / f"{name}-transformers"
    theirs_dir.mkdir()
    save_file(to_transformers_state_dict(model.state_dict()), theirs_dir / "model.safetensors")
    (theirs_dir / "config.json").write_text(json.dumps(config_to_transformers(model.config)))
    del model
    weights = ours_dir / "model.safetensors"
    cases = {
        "safetensors load_file + touch": lambda: _touch_all(load_file(weights)),
        "ours (our format)": lambda: _touch_all(MaskedAutoencoderViT.from_pretrained(ours_dir).state_dict()),
        "ours (transformers files)": lambda: _touch_all(MaskedAutoencoderViT.from_pretrained(theirs_dir).state_dict()),
    }
    try:
        load_file(weights, backend="pread")
        cases["safetensors load_file(pread) + touch"] = lambda: _touch_all(load_file(weights, backend="pread"))
    except TypeError:
        pass  # older safetensors: no pread backend
    try:
        from transformers import ViTMAEForPreTraining

        cases["transformers"] = lambda: _touch_all(ViTMAEForPreTraining.from_pretrained(theirs_dir).state_dict())
    except ImportError:
        pass
    results = interleaved(cases, repeats=repeats, warmup=warmup)
    return {"model": name, "file_bytes": weights.stat().st_size, "results": results}


def build_parser() -> argparse.ArgumentParser:
    parsed = parser(__doc__, repeats=5, device=False)
    parsed.add_argument("--models", nargs="+", default=["mae_vit_large_patch16", "mae_vit_huge_patch14"])
    # Default: the system's temporary folder, a disk file read from the page cache, as a Hub cache is read.
    # tmpfs (/dev/shm) makes touching every page slower for both sides (measured: 0.22 s instead of 0.09 s).
    parsed.add_argument("--folder", type=Path, help="where to write the checkpoints (default: the temp folder)")
    return parsed


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        results = [bench_model(name, args.repeats, Path(folder), args.warmup) for name in args.models]
    return {"folder": str(args.folder or tempfile.gettempdir()), "benchmarks": results}


def markdown(report: Report) -> str:
    parts = []
    for result in report["results"]["benchmarks"]:
        parts.append(f"{result['model']}: {result['file_bytes'] / 1e9:.2f} GB")
        parts.append(table(result["results"], baseline="safetensors load_file + touch"))
    return "\n\n".join(parts)


main = main_of(PART, __file__, build_parser, QUICK, run, markdown)


if __name__ == "__main__":
    main()
