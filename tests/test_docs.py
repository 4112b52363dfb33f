"""The documentation builds strictly, and every Python block in it runs.

The blocks run offline in one fresh interpreter (``run_offline``: a local Hub cache, no sockets), each page in a
folder of its own, each block from a fresh namespace that holds only the names its page takes from the reader
(``GIVEN``). The published weights they load are files of the right family and architecture with fresh weights:
under their repo ids in the cache, official ``.pth`` files by name in each page's folder. What a block pushes to
the Hub becomes a commit in that cache. A block is left out only with a marker on the line before it,
``<!-- not-run: why -->``, for another project's code that cannot run here (``NOT_RUN``).
"""

import ast
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TINY
from hub_cache import add_to_cache, published_checkpoint, published_model, run_offline, uploads_into, write_folder

from masked_autoencoder import MaskedAutoencoderViT, VisionTransformer, list_models
from masked_autoencoder.hub.known_weights import OFFICIAL, KnownWeights, known_by_repo_id
from masked_autoencoder.registry import architecture

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md")))]
FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!-- not-run: (?P<reason>.+) -->")
# The blocks left out, by page: keep this short. Every other Python block of the docs runs.
NOT_RUN = {"docs/migration.md": ["the official repository's code"]}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    """The page's line of the block's first line of code."""
    code: str
    not_run: str | None
    """The reason its marker gives, or None: the block runs."""


def _read(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def _blocks(page: str, text: str) -> list[Block]:
    blocks = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()].splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        reason = marker["reason"] if marker else None
        blocks.append(Block(page, len(before) + 2, textwrap.dedent(fence["code"]), reason))
    return blocks


BLOCKS = [block for page in PAGES for block in _blocks(page, _read(page))]
RUN = [block for block in BLOCKS if block.not_run is None]
PAGES_RUN = sorted({block.page for block in RUN}, key=PAGES.index)


# --- what each page takes from the reader ----------------------------------------------------------------------


def _images_by_every_name() -> dict[str, object]:
    """Images, as the official code (``imgs``), `transformers` (``pixel_values``) and timm (``x``) call them."""
    images = torch.randn(1, 3, 224, 224)
    return {"imgs": images, "pixel_values": images, "x": images}


def _a_training_script() -> dict[str, object]:
    """The training script the page's fragments belong to, tiny, and torchrun's environment for one process.

    ``compiled`` is ``model`` compiled as the page shows, but on aot_eager: whether a call traces as one graph is
    dynamo's decision, the same for every backend, and aot_eager builds in a second where inductor takes a minute.
    """
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(TINY).train()
    lr = 1.5e-4
    return {
        "torch": torch,
        "model": model,
        "images": torch.randn(2, 3, *TINY.image_hw),
        "optimizer": torch.optim.AdamW(model.parameters(), lr=lr),
        "lr": lr,
        "device": torch.device("cpu"),
        "compiled": torch.compile(model, fullgraph=True, dynamic=False, backend="aot_eager"),
        "batch": 2,
        "num_patches": TINY.grid_size[0] * TINY.grid_size[1],
        "g": torch.Generator().manual_seed(0),
        "seed": 0,
        "config": TINY,
        "dataset": torch.utils.data.TensorDataset(torch.randn(8, 3, *TINY.image_hw)),
        "per_rank_batch": 4,
        "world_size": 1,
    }


def _your_model() -> dict[str, object]:
    """A model of your own, to save and share."""
    return {"model": MaskedAutoencoderViT(TINY)}


GIVEN: dict[str, Callable[[], dict[str, object]]] = {
    "docs/migration.md": _images_by_every_name,
    "docs/training.md": _a_training_script,
    "docs/weights.md": _your_model,
}


# --- running the pages ------------------------------------------------------------------------------------------


def _weights_loaded(blocks: list[Block]) -> list[KnownWeights]:
    """The published weights the blocks load: named in a string, or a factory's default with ``pretrained=True``."""
    names = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and _pretrained_true(node):
                names.add(_default_weights(node.func.id))
    return [weights for name in sorted(names - {None}) if (weights := known_by_repo_id(name))]


def _pretrained_true(call: ast.Call) -> bool:
    return any(
        keyword.arg == "pretrained" and getattr(keyword.value, "value", None) is True for keyword in call.keywords
    )


def _default_weights(factory: str) -> str | None:
    """What ``pretrained=True`` on one of our factories loads: an MAE's full model, a classifier's fine-tuning start."""
    if factory in list_models():
        return architecture(factory).pretrained
    if f"mae_{factory}" in list_models():  # vit_base_patch16 is the classifier of mae_vit_base_patch16
        return architecture(f"mae_{factory}").fine_tuning_start
    return None


def _folder(work: Path, page: str) -> Path:
    return work / page.replace("/", "--")


def run_pages(work: Path, inductor_cache: Path) -> None:
    """In the interpreter ``run_offline`` starts: run every page's blocks in its folder; write each page's failure."""
    uploads_into(Path(os.environ["HF_HUB_CACHE"]))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache)
    failures = {}
    for page in PAGES_RUN:
        os.chdir(_folder(work, page))
        failures[page] = _run_page(page)
    (work / "failures.json").write_text(json.dumps(failures))


def _run_page(page: str) -> str | None:
    """Run the page's blocks in order; the traceback of the first that fails (its lines are the page's), or None."""
    for block in (block for block in RUN if block.page == page):
        code = compile("\n" * (block.line - 1) + block.code, str(ROOT / page), "exec")
        try:
            exec(code, GIVEN.get(page, dict)())
        except Exception:
            return traceback.format_exc()
    return None


@pytest.fixture(scope="module")
def failures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    work = tmp_path_factory.mktemp("docs")
    # The kernels inductor builds for training.md's torch.compile block (~50 s cold on 2 cores, ~7 s warm):
    # kept between runs in pytest's own cache folder where there is one (.pytest_cache, ignored by git).
    cache = getattr(request.config, "cache", None)
    inductor_cache = cache.mkdir("torchinductor") if cache else work / "inductor"
    models: dict[tuple[str, bool, bool], VisionTransformer] = {}  # the same fresh model serves all of its kind
    for weights in _weights_loaded(RUN):
        kind = (weights.architecture, weights.has_decoder, weights.fine_tuned)
        if kind not in models:
            models[kind] = published_model(weights)
        files = published_checkpoint(weights, models[kind])
        if weights.family == OFFICIAL:
            write_folder(work / "official", files)
        else:
            add_to_cache(work / "hub", weights.name, files)
    for page in PAGES_RUN:  # the official files by name in every page's folder, as a reader downloads them
        _folder(work, page).mkdir()
        for file in (work / "official").glob("*"):
            (_folder(work, page) / file.name).symlink_to(file)
    code = f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\nfrom test_docs import Path, run_pages\n"
    code += f"run_pages(Path({str(work)!r}), Path({str(inductor_cache)!r}))"
    result = run_offline(code, work / "hub", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((work / "failures.json").read_text())


@pytest.mark.parametrize("page", PAGES_RUN)
def test_code_in_the_docs_runs(page: str, failures: dict[str, str | None]) -> None:
    assert failures[page] is None, failures[page]


def test_only_marked_blocks_of_another_projects_code_are_left_out() -> None:
    left_out = {}
    for block in BLOCKS:
        if block.not_run:
            left_out.setdefault(block.page, []).append(block.not_run)
    assert left_out == NOT_RUN
    for page in PAGES:
        text = _read(page)
        blocks = _blocks(page, text)
        assert len(blocks) == text.count("```python"), f"{page}: a ```python block that FENCE does not read"
        marked = sum(1 for block in blocks if block.not_run)
        assert len(MARKER.findall(text)) == marked, f"{page}: a not-run marker not on the line before a block"


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
