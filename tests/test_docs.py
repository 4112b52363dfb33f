"""The documentation builds strictly, and its code runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Pages whose every Python block runs offline in seconds (the others load published weights).
RUNNABLE = ["README.md", "docs/index.md", "docs/how-it-works.md", "docs/backbone.md"]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("page", RUNNABLE)
def test_code_in_the_docs_runs(page):
    blocks = [b for b in _python_blocks(ROOT / page) if "from_pretrained" not in b and "pretrained=True" not in b]
    assert blocks, f"{page} has no runnable Python block"
    for block in blocks:
        exec(compile(block, f"{page}:block", "exec"), {})


def test_docs_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_pipeline_figure_script_and_image_exist():
    assert (ROOT / "docs" / "figures" / "make_pipeline_figure.py").exists()
    assert (ROOT / "docs" / "images" / "pipeline.png").stat().st_size > 10_000


def test_readme_main_command_installs_and_pretrains(tmp_path):
    """The README's first command, as a new user runs it, shortened by flags to a smoke run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"<!-- main-command -->\n```bash\n(.*?)\n```", readme, re.DOTALL)[1]
    assert command.startswith("pip install") and command.endswith("python examples/pretrain.py")
    command = command.replace("pip install", f"{sys.executable} -m pip install --quiet").replace(
        "python examples", f"{sys.executable} examples"
    )
    smoke = f" --steps 2 --batch-size 4 --every 2 --output {tmp_path / 'run'}"
    result = subprocess.run(["bash", "-c", command + smoke], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    assert list((tmp_path / "run").glob("reconstruction-*.png"))


def test_masking_figure_script_draws_the_three_strategies(tmp_path):
    script = ROOT / "docs" / "figures" / "make_masking_figure.py"
    result = subprocess.run(
        [sys.executable, str(script), "--output", str(tmp_path / "masking.png")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "masking.png").stat().st_size > 10_000
    assert (ROOT / "docs" / "images" / "masking.png").stat().st_size > 10_000
