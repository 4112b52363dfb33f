"""Every bad checkpoint gives a clear error (type and message), loads nothing, and runs no pickled code."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import random
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable

import pytest
import torch
from conftest import TINY
from hub_cache import (
    assert_same_tensors,
    pickled,
    place,
    run_offline,
    timm_files,
    tiny_encoder,
    tiny_model,
    transformers_files,
    write_folder,
)
from huggingface_hub import constants
from safetensors.torch import load, save

from masked_autoencoder import MAEEncoder, MaskedAutoencoderViT, create_model
from masked_autoencoder.hub.transformers_format import to_transformers_state_dict


def _ours(tmp_path, model=None, name="ours"):
    """A save_pretrained folder of ``model`` (default: the tiny MAE)."""
    return (tiny_model() if model is None else model).save_pretrained(tmp_path / name)


def _edit_config(folder, **fields):
    """Change fields of the MAEConfig in our config.json."""
    written = json.loads((folder / "config.json").read_text())
    written["config"] |= fields
    (folder / "config.json").write_text(json.dumps(written))
    return folder


def _with_extra_tensor(folder, key="extra.weight"):
    tensors = load((folder / "model.safetensors").read_bytes())
    (folder / "model.safetensors").write_bytes(save({**tensors, key: torch.zeros(2)}))
    return folder


def test_unknown_repo_offline_names_the_repo_and_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'org/not-cached'.*HF_HUB_OFFLINE=1.*HF_HUB_CACHE"):
        MaskedAutoencoderViT.from_pretrained("org/not-cached", cache_dir=tmp_path)


def test_uncached_revision_offline_names_the_revision(tmp_path):
    name, kwargs = place(transformers_files(tiny_model()), tmp_path, "repo_id")
    with pytest.raises(FileNotFoundError, match=rf"'{name}' at revision 'refs/pr/7'.*HF_HUB_OFFLINE"):
        MaskedAutoencoderViT.from_pretrained(name, revision="refs/pr/7", **kwargs)


def test_factory_pretrained_offline_without_cache_names_the_repo_and_how_to_fix(tmp_path):
    code = (
        "from masked_autoencoder import mae_vit_base\n"
        "try:\n    mae_vit_base(pretrained=True)\n"
        "except FileNotFoundError as err:\n    print(err)\n"
        "else:\n    raise SystemExit('no error')\n"
    )
    result = run_offline(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'facebook/vit-mae-base'" in result.stdout and str(tmp_path) in result.stdout
    assert "HF_HUB_OFFLINE" in result.stdout and "HF_HUB_CACHE" in result.stdout


# --- online, against a loopback Hub that cannot be reached, refuses, or serves files; bounded in time -----------------

# The promise: an unreachable Hub is reported within this many seconds (huggingface_hub's own retries of a file it
# has not cached: 23 s when the connection is refused, minutes when the Hub does not answer).
FAST = 10.0


@contextlib.contextmanager
def _listening_socket():
    """A loopback socket that accepts connections (into the kernel's backlog) and never answers: (host, port)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()


@contextlib.contextmanager
def _closed_port():
    """A loopback address where nothing listens: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    yield address


Answer = tuple[int, dict[str, str], bytes]
"""What a loopback Hub answers a request: status, headers, body."""


def _hub_error(status: int, error_code: str) -> Callable[[str, str], Answer]:
    """Every request answered as the Hub does with ``status`` and ``X-Error-Code``."""
    return lambda method, path: (status, {"X-Error-Code": error_code, "X-Error-Message": error_code}, b"")


@contextlib.contextmanager
def _hub_server(answer: Callable[[str, str], Answer], requests: list[str] | None = None):
    """A loopback HTTP server that answers each HEAD and GET with ``answer(method, path)``, noted in ``requests``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            status, headers, body = answer(self.command, self.path)
            if requests is not None:
                requests.append(f"{self.command} {self.path}")
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server.server_address
        finally:
            server.shutdown()
            thread.join(timeout=5)


def _online_against(monkeypatch, address, connect: bool) -> None:
    """Downloads on (HF_HUB_OFFLINE unset), the Hub endpoint at a loopback ``address``, reachable only if ``connect``.

    Without ``connect``, conftest's guard refuses (and records) the connection, as on a machine with no network.
    """
    url = f"http://{address[0]}:{address[1]}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", constants.HUGGINGFACE_CO_URL_TEMPLATE.replace(constants.ENDPOINT, url)
    )
    monkeypatch.setattr(constants, "ENDPOINT", url)
    # Its telemetry's first online request asks the endpoint for a list of AI agents, once a process: off, so that
    # every test sees the same requests, whichever ran first.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    if connect:
        guard = socket.socket.connect

        def connect_to_address_only(sock, target):
            if target == address:
                return super(socket.socket, sock).connect(target)
            return guard(sock, target)

        monkeypatch.setattr(socket.socket, "connect", connect_to_address_only)


def _timed_error(name, **kwargs) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as caught:
        MaskedAutoencoderViT.from_pretrained(name, **kwargs)
    return str(caught.value), time.perf_counter() - start


_UNREACHABLE = (
    r"^Hub repo 'org/tiny-mae': the Hub \(http://127\.0\.0\.1:\d+\) could not be reached \({error}: .*\), and none "
    r"of \['model.safetensors', 'pytorch_model.bin'\] is in the local Hub cache .*\. To fix: .*HF_HUB_OFFLINE=1 and "
    r"point HF_HUB_CACHE \(or cache_dir=\) at a cache that has this repo; or pass the path of a local copy\.$"
)


@pytest.mark.parametrize(
    ("server", "connect", "error"),
    [
        (_closed_port, False, "ConnectError"),
        (_closed_port, True, "ConnectError"),
        (_listening_socket, True, "ReadTimeout"),
    ],
    ids=["sockets-blocked", "connection-refused", "server-stalls"],
)
def test_unreachable_hub_without_cache_fails_fast_saying_so_and_how_to_fix(
    tmp_path, monkeypatch, caplog, no_network, server, connect, error
):
    with server() as address:
        _online_against(monkeypatch, address, connect)
        message, seconds = _timed_error("org/tiny-mae", cache_dir=tmp_path)
    assert re.match(_UNREACHABLE.format(error=error), message), message
    assert seconds < FAST, f"{seconds:.1f} s"
    assert "Retrying" not in caplog.text  # huggingface_hub's backoff never started
    # One question to the Hub, no retries; conftest's guard recorded it when it refused it.
    assert no_network == ([address] if not connect else [])
    no_network.clear()


def test_unreachable_hub_with_cached_files_loads_them_fast(tmp_path, monkeypatch):
    model = tiny_model()
    name, kwargs = place(transformers_files(model), tmp_path, "repo_id")
    with _closed_port() as address:
        _online_against(monkeypatch, address, connect=True)
        start = time.perf_counter()
        loaded = MaskedAutoencoderViT.from_pretrained(name, **kwargs)
    assert time.perf_counter() - start < FAST
    assert_same_tensors(loaded.state_dict(), model.state_dict())


@pytest.mark.parametrize(
    ("status", "error_code", "message"),
    [
        (
            401,
            "RepoNotFound",
            "Hub repo 'org/misspelt' does not exist (or is private: pass token=) and is not a local path",
        ),
        (403, "GatedRepo", "Hub repo 'org/misspelt' is gated: accept its terms and pass token="),
        (404, "RevisionNotFound", "Hub repo 'org/misspelt' has no revision 'v2'"),
    ],
    ids=["repo", "gated", "revision"],
)
def test_what_the_hub_says_it_cannot_serve_is_named_not_called_unreachable(
    tmp_path, monkeypatch, status, error_code, message
):
    with _hub_server(_hub_error(status, error_code)) as address:
        _online_against(monkeypatch, address, connect=True)
        said, seconds = _timed_error("org/misspelt", revision="v2", cache_dir=tmp_path)
    assert said == message and seconds < FAST


def test_a_name_that_is_neither_a_path_nor_a_repo_id_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^'org/name/extra' is neither a local file or folder nor a Hub repo"):
        MaskedAutoencoderViT.from_pretrained("org/name/extra", cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["my.pth", "./weights", "runs/pretrain/model.safetensors", "../mae", "folder.v2"])
def test_a_missing_local_file_is_named_as_one_not_as_a_hub_repo(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    expected = rf"^'{re.escape(name)}' looks like a local file, but there is no file or folder at .*'org/name'\)$"
    with pytest.raises(FileNotFoundError, match=expected):
        MaskedAutoencoderViT.from_pretrained(name, cache_dir=tmp_path)


def test_a_missing_official_file_says_where_to_download_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth"
    with pytest.raises(FileNotFoundError, match=rf"no file or folder at {tmp_path}.* is published at {url}; download"):
        MaskedAutoencoderViT.from_pretrained("mae_visualize_vit_large.pth")


def test_hub_unavailable_status_is_reported_without_retries(tmp_path, monkeypatch, caplog):
    with _hub_server(_hub_error(503, "ServiceUnavailable")) as address:
        _online_against(monkeypatch, address, connect=True)
        message, seconds = _timed_error("org/tiny-mae", cache_dir=tmp_path)
    assert re.match(_UNREACHABLE.format(error="HfHubHTTPError"), message), message
    assert "503" in message and seconds < FAST and "Retrying" not in caplog.text


def _serving(files: dict[str, bytes], repo_id: str = "org/tiny-mae") -> Callable[[str, str], Answer]:
    """The Hub's answers about a repo whose main holds ``files``: metadata (HEAD), content (GET), 404 for the rest."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()

    def answer(method: str, path: str) -> Answer:
        name = path.removeprefix(f"/{repo_id}/resolve/main/")
        if name not in files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b""
        return 200, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(files[name]).hexdigest()}"'}, files[name]

    return answer


def test_reachable_hub_is_asked_once_per_cached_file_and_twice_before_a_download(tmp_path, monkeypatch):
    model = tiny_model()
    # As facebook/vit-mae-large on main: a config.json and a pytorch_model.bin, no model.safetensors.
    files = {"config.json": transformers_files(model)["config.json"]}
    files["pytorch_model.bin"] = pickled(to_transformers_state_dict(model.state_dict()))
    requests: list[str] = []
    with _hub_server(_serving(files), requests) as address:
        _online_against(monkeypatch, address, connect=True)
        first = MaskedAutoencoderViT.from_pretrained("org/tiny-mae", cache_dir=tmp_path)
        downloads = requests.copy()
        requests.clear()
        again = MaskedAutoencoderViT.from_pretrained("org/tiny-mae", cache_dir=tmp_path)
    url = "/org/tiny-mae/resolve/main/"
    config, safetensors, pickle = (
        f"HEAD {url}{name}" for name in ("config.json", "model.safetensors", "pytorch_model.bin")
    )
    # A file the cache lacks: our one question without retries, then hf_hub_download's own and the download;
    # a file the repo lacks: our question only.
    assert downloads == [
        config,
        config,
        f"GET {url}config.json",
        safetensors,
        pickle,
        pickle,
        f"GET {url}pytorch_model.bin",
    ]
    assert requests == [config, safetensors, pickle]  # the cache serves the content, and the Hub says it is current
    for loaded in (first, again):
        assert_same_tensors(loaded.state_dict(), model.state_dict())


def test_folder_without_weight_files_is_named(tmp_path):
    folder = write_folder(tmp_path / "empty", {"config.json": b"{}"})
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(folder))} holds none of the weight files"):
        MaskedAutoencoderViT.from_pretrained(folder)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (lambda: transformers_files(tiny_model(), model_type="vit"), "is a 'vit' checkpoint, not a Masked Autoencoder"),
        (lambda: timm_files(tiny_encoder(), "resnet50"), "is a timm 'resnet50', not a ViT encoder"),
    ],
    ids=["transformers-vit", "timm-resnet50"],
)
def test_checkpoints_of_other_architectures_are_refused(tmp_path, files, message):
    name, _ = place(files(), tmp_path, "path")
    with pytest.raises(ValueError, match=message):
        MAEEncoder.from_pretrained(name, num_heads=4)


def test_timm_weights_of_a_width_without_known_heads_ask_for_num_heads(tmp_path):
    name, _ = place(timm_files(tiny_encoder()), tmp_path, "path")
    with pytest.raises(ValueError, match="head count of a 32-wide encoder is unknown: pass num_heads="):
        MAEEncoder.from_pretrained(name)


def test_encoder_only_weights_into_a_full_mae_with_strict_true_point_to_strict_false(tmp_path):
    name, _ = place(timm_files(tiny_encoder()), tmp_path, "path")
    with pytest.raises(ValueError, match=r"missing \[decoder_blocks .*Pass strict=False"):
        MaskedAutoencoderViT.from_pretrained(name, num_heads=4)


def test_fine_tuned_classifier_is_refused(tmp_path):
    state_dict = {key: v for key, v in tiny_encoder().state_dict().items() if not key.startswith("norm.")}
    head = {"head.weight": torch.zeros(10, 32), "head.bias": torch.zeros(10)}
    state_dict |= head | {"fc_norm.weight": torch.ones(32), "fc_norm.bias": torch.zeros(32)}
    (tmp_path / "mae_finetuned_vit_base.pth").write_bytes(pickled({"model": state_dict}))
    with pytest.raises(ValueError, match="holds a fine-tuned classifier"):
        MAEEncoder.from_pretrained(tmp_path / "mae_finetuned_vit_base.pth", num_heads=4)


_FC1 = "blocks.0.mlp.fc1.weight: checkpoint (128, 32) vs model (64, 32)"


@pytest.mark.parametrize(
    ("written", "overrides", "named"),
    [
        ({"mlp_ratio": 2.0}, {}, _FC1),
        ({}, {"mlp_ratio": 2.0}, _FC1),
        ({}, {"embed_dim": 64}, "the checkpoint's encoder is 32 wide, the model's 64 (embed_dim); "),
        ({"decoder_embed_dim": 32}, {}, "decoder_embed.weight: checkpoint (16, 32) vs model (32, 32)"),
    ],
    ids=["config.json-mlp_ratio", "override-mlp_ratio", "override-embed_dim", "config.json-decoder_embed_dim"],
)
def test_shapes_that_contradict_the_weights_name_the_key_and_both_shapes(tmp_path, written, overrides, named):
    folder = _edit_config(_ours(tmp_path), **written)
    with pytest.raises(ValueError, match=r"does not fit the model \(shapes differ\):.*" + re.escape(named)):
        MaskedAutoencoderViT.from_pretrained(folder, **overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"depth": 3}, r"missing \[blocks \(12 tensors\)\], unexpected \[\]"),
        ({"depth": 1}, r"missing \[\], unexpected \[blocks \(12 tensors\)\]"),
    ],
    ids=["deeper", "shallower"],
)
def test_depth_that_contradicts_the_weights_names_the_blocks(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        MaskedAutoencoderViT.from_pretrained(_ours(tmp_path), **overrides)


def test_learned_position_table_cannot_change_grid(tmp_path):
    model = tiny_model()
    model.pos_embed.normal_()
    with pytest.raises(ValueError, match=r"pos_embed of shape \(1, 17, 32\) is a learned table.*grid \(8, 8\)"):
        MaskedAutoencoderViT.from_pretrained(_ours(tmp_path, model), img_size=64)


def test_unknown_extra_keys_raise_when_strict_and_warn_otherwise(tmp_path):
    model = tiny_model()
    folder = _with_extra_tensor(_ours(tmp_path, model))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \[extra\]. Pass strict=False"):
        MaskedAutoencoderViT.from_pretrained(folder)
    with pytest.warns(UserWarning, match=r"in the checkpoint, ignored: \[extra\]"):
        loaded = MaskedAutoencoderViT.from_pretrained(folder, strict=False)
    assert_same_tensors(loaded.state_dict(), model.state_dict())


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(seed: int):
    # Fixed seeds: unpickling these bytes fails in different ways (0: UnpicklingError, 2: IndexError, 20: KeyError).
    return lambda data: random.Random(seed).randbytes(5000)


@pytest.mark.parametrize(
    ("file", "corrupt"),
    [
        ("model.safetensors", _truncated),
        ("model.safetensors", lambda data: data[:-1]),
        ("model.safetensors", lambda data: data[:8] + b"{not json" + data[17:]),
        ("pytorch_model.bin", _truncated),
        ("pytorch_model.bin", _garbage(0)),
        # LIBRARY BUG (files.read_weights): only some of the errors unpickling can raise are turned into ValueError.
        ("pytorch_model.bin", _garbage(2)),
        ("pytorch_model.bin", _garbage(20)),
        ("config.json", lambda data: data[:-3]),
    ],
    ids=[
        "safetensors-half",
        "safetensors-last-byte",
        "safetensors-header",
        "bin-half",
        "bin-garbage-unpickling-error",
        "bin-garbage-index-error",
        "bin-garbage-key-error",
        "config-json",
    ],
)
def test_corrupt_files_raise_value_error_naming_the_file(tmp_path, file, corrupt):
    model = tiny_model()
    files = transformers_files(model)
    if file == "pytorch_model.bin":
        files = {"config.json": files["config.json"], file: pickled(to_transformers_state_dict(model.state_dict()))}
    files[file] = corrupt(files[file])
    folder = write_folder(tmp_path / "corrupt", files)
    with pytest.raises(ValueError, match=re.escape(str(folder / file))):
        MaskedAutoencoderViT.from_pretrained(folder)


class _RunsCode:
    """Unpickling this runs a shell command (here, harmless: it creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("file", ["pytorch_model.bin", "checkpoint.pth"])
def test_pickles_that_would_run_code_are_refused_and_never_run(tmp_path, file):
    marker = tmp_path / "pwned"
    content = {"model": tiny_model().state_dict(), "payload": _RunsCode(marker)}
    path = write_folder(tmp_path / "evil", {file: pickled(content)}) / file
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*would run code, which we never do"):
        MaskedAutoencoderViT.from_pretrained(path.parent if file == "pytorch_model.bin" else path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad",
    [
        lambda tmp_path: _ours(tmp_path, tiny_model(TINY.replace(mlp_ratio=2.0))),
        lambda tmp_path: tiny_encoder().save_pretrained(tmp_path / "encoder"),
        lambda tmp_path: _with_extra_tensor(_ours(tmp_path)),
    ],
    ids=["shape-mismatch", "missing-keys", "unexpected-keys"],
)
def test_failed_load_pretrained_leaves_the_model_unchanged(tmp_path, bad):
    model = tiny_model(seed=1)
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    with pytest.raises(ValueError, match="does not (fit|match) the model|records other settings than the model"):
        model.load_pretrained(bad(tmp_path), strict=True)
    assert_same_tensors(model.state_dict(), before)


def test_create_model_refuses_weights_of_another_architecture(tmp_path):
    with pytest.raises(ValueError, match=r"^pretrained must be weights of mae_vit_tiny_patch16 .*'embed_dim': 32"):
        create_model("mae_vit_tiny", pretrained=_ours(tmp_path))


def test_create_model_pretrained_true_needs_published_weights():
    with pytest.raises(
        ValueError, match="^pretrained must be a repo id or path: mae_vit_tiny_patch16 has no published"
    ):
        create_model("mae_vit_tiny", pretrained=True)
