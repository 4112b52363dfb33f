"""Loading speed: our from_pretrained against reading the same file with safetensors, and transformers.

    python benchmarks/bench_loading.py --models mae_vit_large_patch16 mae_vit_huge_patch14 --repeats 5

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
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from timing import interleaved, machine, table

from masked_autoencoder import MaskedAutoencoderViT, create_model
from masked_autoencoder.hub.transformers_format import config_to_transformers, to_transformers_state_dict


def _touch_all(tensors: dict[str, torch.Tensor]) -> float:
    return sum(float(t.float().sum()) for t in tensors.values())


def bench_model(name: str, repeats: int, folder: Path) -> dict[str, object]:
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
    results = interleaved(cases, repeats=repeats)
    return {"model": name, "file_bytes": weights.stat().st_size, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mae_vit_large_patch16", "mae_vit_huge_patch14"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    report = {"machine": machine(), "benchmarks": []}
    print(report["machine"])
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            result = bench_model(name, args.repeats, Path(folder))
            report["benchmarks"].append(result)
            print(f"\n{name}: {result['file_bytes'] / 1e9:.2f} GB\n")
            print(table(result["results"], baseline="safetensors load_file + touch"))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
