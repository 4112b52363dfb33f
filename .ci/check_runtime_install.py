"""After `pip install .` in a fresh venv: only the runtime dependencies are installed, and the model builds."""

import importlib.metadata as metadata
import importlib.util

from masked_autoencoder import mae_vit_base

requires = metadata.requires("masked-autoencoder") or []
runtime = sorted(r.split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r)
assert runtime == ["einops", "huggingface-hub", "safetensors", "torch"], runtime
for optional in ("transformers", "timm", "torchvision", "pytest"):
    assert importlib.util.find_spec(optional) is None, f"{optional} should not be installed by `pip install .`"
print(mae_vit_base())
print("runtime install OK:", runtime)
