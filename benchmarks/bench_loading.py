"""Loading weights: our ``from_pretrained`` against safetensors' ``load_file`` and `transformers`' ``from_pretrained``.

    python benchmarks/bench_loading.py                  # ViT-L/16
    python benchmarks/bench_loading.py --models mae_vit_large_patch16 mae_vit_huge_patch14
    python benchmarks/bench_loading.py --quick          # a tiny model, seconds

For each model, a random-weights checkpoint in our format and in `transformers`' is written to
``--folder`` (default: the temporary folder, a disk file read from the page cache, as a Hub cache
is). Then, interleaved after one untimed round: ``load_file`` of our file; our ``from_pretrained``
of our files and of `transformers`' files; ``ViTMAEForPreTraining.from_pretrained``. Every case sums
every tensor it gets: safetensors maps files lazily, and a load that does not touch its bytes has not
read them. Targets: ours within 2x of ``load_file``, and at least 2x faster than `transformers`.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import harness
import sides
import torch
from safetensors.torch import load_file

from masked_autoencoder import MaskedAutoencoderViT, create_model

BASELINES = ("load_file + touch", "ours (our files)")


def _touch(tensors: dict[str, torch.Tensor]) -> float:
    return sum(float(tensor.sum()) for tensor in tensors.values())


def time_model(name: str, folder: Path, rounds: int) -> dict:
    """Write ``name``'s checkpoints in both formats under ``folder`` and time every way of loading them."""
    with torch.no_grad():
        model = create_model(name)
    ours = model.save_pretrained(folder / f"{name}-ours")
    theirs = sides.write_transformers_files(model, folder / f"{name}-transformers")
    del model
    cpu = torch.device("cpu")
    cases = {
        "load_file + touch": lambda: _touch(load_file(ours / "model.safetensors")),
        "ours (our files)": lambda: _touch(MaskedAutoencoderViT.from_pretrained(ours).state_dict()),
        "ours (transformers files)": lambda: _touch(MaskedAutoencoderViT.from_pretrained(theirs).state_dict()),
        "transformers from_pretrained": lambda: _touch(
            sides.load_twin("ViTMAEForPreTraining", theirs, cpu).state_dict()
        ),
    }
    size = (ours / "model.safetensors").stat().st_size
    return {"file_bytes": size, "times": harness.interleaved(cases, rounds=rounds)}


def build_parser() -> argparse.ArgumentParser:
    parsed = harness.parser(__doc__, rounds=5, device=False)
    parsed.add_argument("--models", nargs="+", default=["mae_vit_large_patch16"])
    parsed.add_argument("--folder", type=Path, help="where to write the checkpoints (default: the temporary folder)")
    return parsed


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        return {name: time_model(name, Path(folder), args.rounds) for name in args.models}


def tables(args: argparse.Namespace, results: dict) -> str:
    return "\n\n".join(
        f"{name}, {result['file_bytes'] / 1e9:.2f} GB file, CPU.\n\n"
        + harness.markdown_table(harness.timing_rows(result["times"], BASELINES))
        for name, result in results.items()
    )


def main(argv: Sequence[str] | None = None) -> dict:
    return harness.run_script("loading", build_parser(), argv, {"models": ["mae_vit_tiny_patch16"]}, run, tables)


if __name__ == "__main__":
    main()
