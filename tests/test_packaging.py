import re
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
        "data_config",
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
        "pyramid",
        "reconstruction",
        "recompute",
        "registry",
        "rel_pos",
        "upernet",
        "vit",
        "windows",
    }
    assert public - submodules == set(masked_autoencoder.__all__) - {"__version__"}


def test_the_api_page_documents_every_export_by_its_public_name():
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^::: (\S+)$", page, re.MULTILINE)
    assert [name for name in documented if not name.startswith("masked_autoencoder.")] == []
    names = {name.removeprefix("masked_autoencoder.") for name in documented}
    assert names <= set(masked_autoencoder.__all__), sorted(names - set(masked_autoencoder.__all__))
    aliases = {"mae_vit_tiny", "mae_vit_small", "mae_vit_base", "mae_vit_large", "mae_vit_huge", "videomae_vit_base"}
    assert set(masked_autoencoder.__all__) - names - {"__version__"} == aliases
    assert all(f"`{alias}`" in page for alias in aliases)


def test_package_is_typed():
    assert (ROOT / "masked_autoencoder" / "py.typed").exists()


def test_code_passes_ruff_lint_and_format():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
