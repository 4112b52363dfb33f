"""Our own format: save_pretrained -> from_pretrained is bit-exact; push_to_hub uploads one commit (Hub mocked)."""

from __future__ import annotations

import gc
import json
import socket
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY
from hub_cache import add_to_cache, assert_same_tensors, encoder_part, read_folder, tiny_model, write_folder
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HFValidationError

import masked_autoencoder
from masked_autoencoder import MAEEncoder, MaskedAutoencoderViT
from masked_autoencoder.data_config import default_pretrained_cfg

# Not the defaults: every field must survive the round trip (rectangular images and patches included).
CONFIG = TINY.replace(img_size=(32, 48), patch_size=(8, 4), norm_pix_loss=True, mask_ratio=0.6, mlp_ratio=2.5)


def _trained(cls: type[MAEEncoder], config=CONFIG):
    """A model whose every parameter is random (no LayerNorm left at 1 / 0), as after training."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(config)
        for param in model.parameters():
            param.data.normal_()
    return model


@pytest.mark.parametrize("cls", [MaskedAutoencoderViT, MAEEncoder])
def test_save_pretrained_then_from_pretrained_is_bit_exact(tmp_path, cls):
    model = _trained(cls)
    loaded = cls.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert type(loaded) is cls and loaded.config == model.config
    assert_same_tensors(loaded.state_dict(), model.state_dict())


def _mapped(path) -> bool:
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return str(path.resolve()) in maps.read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize("mmap", [True, False])
def test_mmap_keeps_the_file_mapped_as_the_parameters_and_false_copies(tmp_path, mmap):
    model = _trained(MaskedAutoencoderViT)
    weights = model.save_pretrained(tmp_path / "saved") / "model.safetensors"
    loaded = MaskedAutoencoderViT.from_pretrained(weights.parent, mmap=mmap)
    gc.collect()
    assert _mapped(weights) == mmap
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    del loaded
    gc.collect()
    assert not _mapped(weights)


def test_map_location_places_every_tensor(tmp_path):
    folder = _trained(MaskedAutoencoderViT).save_pretrained(tmp_path / "saved")
    loaded = MaskedAutoencoderViT.from_pretrained(folder, map_location="meta")
    assert all(tensor.is_meta for tensor in loaded.state_dict().values())


def test_saved_model_loads_by_repo_id_from_the_cache(tmp_path):
    model = _trained(MaskedAutoencoderViT)
    add_to_cache(tmp_path / "hub", "me/tiny-mae", read_folder(model.save_pretrained(tmp_path / "saved")))
    loaded = MaskedAutoencoderViT.from_pretrained("me/tiny-mae", cache_dir=tmp_path / "hub")
    assert loaded.config == model.config
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    encoder = MAEEncoder.from_pretrained("me/tiny-mae", cache_dir=tmp_path / "hub")
    assert_same_tensors(encoder.state_dict(), encoder_part(model.state_dict()))


@pytest.mark.parametrize("cls", [MaskedAutoencoderViT, MAEEncoder])
def test_config_json_has_the_format_marker_and_the_config(tmp_path, cls):
    written = json.loads((_trained(cls).save_pretrained(tmp_path / "saved") / "config.json").read_text())
    assert written == {
        "library": "masked-autoencoder",
        "format_version": 1,
        "library_version": masked_autoencoder.__version__,
        "model_class": cls.__name__,
        "config": CONFIG.to_dict(),
        "model_options": {},
        "pretrained_cfg": json.loads(json.dumps(default_pretrained_cfg(CONFIG))),  # tuples as JSON lists
    }


def test_config_json_of_a_future_format_version_asks_to_upgrade(tmp_path):
    folder = tiny_model().save_pretrained(tmp_path / "saved")
    written = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(written | {"format_version": 2}))
    with pytest.raises(
        ValueError, match="format version 2; this version .* reads version 1: upgrade masked-autoencoder"
    ):
        MaskedAutoencoderViT.from_pretrained(folder)


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi.create_repo and HfApi.create_commit (all the Hub calls push_to_hub makes), recording their arguments."""
    calls: dict[str, list] = {"create_repo": [], "create_commit": []}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        uploaded = {}
        for operation in operations:
            with operation.as_file() as file:  # read now: push_to_hub writes them in a temporary folder
                uploaded[operation.path_in_repo] = file.read()
        calls["create_commit"].append({"repo_id": repo_id, "files": uploaded, **kwargs})
        url = f"https://huggingface.co/{repo_id}"
        return SimpleNamespace(
            commit_url=f"{url}/commit/abc", pr_url=f"{url}/discussions/1" if kwargs["create_pr"] else None
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


@pytest.mark.parametrize(
    ("norm_pix_loss", "target"),
    [
        (False, "**raw pixels** (`norm_pix_loss=False`)"),
        (True, "**per-patch normalized pixels** (`norm_pix_loss=True`)"),
    ],
)
def test_push_to_hub_uploads_config_weights_and_card_in_one_commit(tmp_path, fake_hub, norm_pix_loss, target):
    model = _trained(MaskedAutoencoderViT, CONFIG.replace(norm_pix_loss=norm_pix_loss))
    url = model.push_to_hub("me/tiny-mae", license="cc-by-nc-4.0")
    assert url == "https://huggingface.co/me/tiny-mae/commit/abc"
    assert fake_hub["create_repo"] == [{"repo_id": "me/tiny-mae", "private": None, "exist_ok": True}]
    (commit,) = fake_hub["create_commit"]
    assert commit["repo_id"] == "me/tiny-mae" and commit["revision"] is None and commit["create_pr"] is False
    files = commit["files"]
    assert list(files) == ["config.json", "model.safetensors", "README.md"]
    card = files["README.md"].decode()
    assert "# me/tiny-mae" in card and f"Its MAE pre-training target is {target}" in card
    assert 'MaskedAutoencoderViT.from_pretrained("me/tiny-mae")' in card and "license: cc-by-nc-4.0" in card
    loaded = MaskedAutoencoderViT.from_pretrained(write_folder(tmp_path / "uploaded", files))
    assert loaded.config == model.config
    assert_same_tensors(loaded.state_dict(), model.state_dict())


def test_push_to_hub_as_a_pull_request_returns_its_url(fake_hub):
    url = tiny_model().push_to_hub("me/tiny-mae", private=True, revision="dev", create_pr=True, commit_message="v2")
    assert url == "https://huggingface.co/me/tiny-mae/discussions/1"
    assert fake_hub["create_repo"] == [{"repo_id": "me/tiny-mae", "private": True, "exist_ok": True}]
    (commit,) = fake_hub["create_commit"]
    assert (commit["revision"], commit["create_pr"], commit["commit_message"]) == ("dev", True, "v2")
    assert "license:" not in commit["files"]["README.md"].decode()


def test_socket_guard_fails_any_real_connection(no_network):
    # The autouse guard of conftest: every push_to_hub test above would fail had it reached the network.
    with pytest.raises(OSError, match="the tests make no network connections"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    assert no_network == [("127.0.0.1", 9)]
    no_network.clear()  # recorded attempts fail the test at teardown


def test_push_to_hub_offline_says_uploads_are_off_and_how_to_upload_later():
    # conftest sets HF_HUB_OFFLINE=1: huggingface_hub refuses before any connection.
    expected = (
        r"^cannot upload to Hub repo 'me/tiny-mae': uploads are off \(HF_HUB_OFFLINE=1\)\. To fix: unset "
        r"HF_HUB_OFFLINE; or save_pretrained\(folder\) now and upload that folder later "
        r"\(hf upload me/tiny-mae FOLDER\)$"
    )
    with pytest.raises(ConnectionError, match=expected):
        tiny_model().push_to_hub("me/tiny-mae")


def test_push_to_hub_to_an_unreachable_hub_says_so(monkeypatch):
    def refused(self, repo_id, **kwargs):
        raise ConnectionRefusedError("[Errno 111] Connection refused\nmore advice")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", refused)
    expected = (
        r"^cannot upload to Hub repo 'me/tiny-mae': the Hub \(https://.*\) could not be reached "
        r"\(ConnectionRefusedError: \[Errno 111\] Connection refused\)\. To fix: run where the Hub can be reached"
    )
    with pytest.raises(ConnectionError, match=expected):
        tiny_model().push_to_hub("me/tiny-mae")


def test_push_to_hub_passes_on_what_the_hub_answers(monkeypatch):
    def refused(self, repo_id, **kwargs):
        raise HFValidationError("Repo id must be in the form 'repo_name' or 'namespace/repo_name'")

    monkeypatch.setattr(HfApi, "create_repo", refused)
    with pytest.raises(HFValidationError, match="Repo id must be"):
        tiny_model().push_to_hub("me/bad//name")
