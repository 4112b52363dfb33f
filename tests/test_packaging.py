import subprocess
import sys
from pathlib import Path

import masked_autoencoder

ROOT = Path(__file__).resolve().parents[1]


def test_import_pulls_in_no_optional_library():
    code = "import sys, masked_autoencoder; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    for optional in ("transformers", "timm", "torchvision", "hypothesis", "pytest"):
        assert f"'{optional}'" not in loaded


def test_public_api_is_exactly_all():
    public = {name for name in dir(masked_autoencoder) if not name.startswith("_")}
    submodules = {
        "checkpoint_rules",
        "classifier",
        "config",
        "encoder",
        "factory",
        "hub",
        "layers",
        "linear_probe",
        "loss",
        "masking",
        "model",
        "optim",
        "patches",
        "pos_embed",
        "precision",
        "reconstruction",
        "recompute",
        "registry",
        "vit",
    }
    assert public - submodules == set(masked_autoencoder.__all__) - {"__version__"}


def test_package_is_typed():
    assert (ROOT / "masked_autoencoder" / "py.typed").exists()


def test_code_passes_ruff_lint_and_format():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
