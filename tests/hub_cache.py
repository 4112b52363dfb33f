"""Checkpoints of every MAE weight family as files, a real local Hugging Face cache to put them in, and comparisons.

The cache is the layout huggingface_hub writes (``models--ORG--NAME/{blobs,refs,snapshots}``), so
loading by repo id goes through ``hf_hub_download`` offline, exactly as with a cache filled online.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import torch
from conftest import TINY
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.torch import save
from transformers import ViTMAEForPreTraining

from masked_autoencoder import (
    MAEConfig,
    MAEEncoder,
    MAEViTClassifier,
    MaskedAutoencoderViT,
    VisionTransformer,
    model_config,
)
from masked_autoencoder.hub.known_weights import TIMM, TRANSFORMERS, VIDEOMAE, KnownWeights
from masked_autoencoder.hub.transformers_format import config_to_transformers, to_transformers_state_dict

ATOL = 1e-5
Files = dict[str, bytes]
ModelT = TypeVar("ModelT", bound=VisionTransformer)


def tiny_model(config: MAEConfig = TINY, seed: int = 0) -> MaskedAutoencoderViT:
    """A freshly initialised MAE (the official init) from a fixed seed, in eval mode."""
    return _seeded(MaskedAutoencoderViT, config, seed)


def tiny_encoder(config: MAEConfig = TINY, seed: int = 0) -> MAEEncoder:
    """A freshly initialised encoder from a fixed seed, in eval mode."""
    return _seeded(MAEEncoder, config, seed)


def _seeded(cls: type[ModelT], config: MAEConfig, seed: int) -> ModelT:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(config).eval()


def inputs(config: MAEConfig = TINY, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) and masking noise (B, L) from a fixed generator."""
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.randn(batch, config.in_chans, *config.image_hw, generator=generator)
    grid_h, grid_w = config.grid_size
    return imgs, torch.rand(batch, grid_h * grid_w, generator=generator)


# --- the cache ---------------------------------------------------------------------------------------------------


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}"


def add_to_cache(cache: Path, repo_id: str, files: Files, revision: str = "main") -> Path:
    """Store ``files`` as one commit of ``repo_id`` that ``revision`` points to; returns the snapshot folder.

    Blobs are named by the sha256 of their content, snapshot entries are relative symlinks to them,
    and ``refs/<revision>`` holds the 40-hex commit (``refs/pr/1`` lives at ``refs/refs/pr/1``).
    """
    repo = repo_folder(cache, repo_id)
    shas = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    commit = hashlib.sha1(json.dumps([repo_id, revision, shas], sort_keys=True).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        blob = repo / "blobs" / shas[name]
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot


def write_folder(directory: Path, files: Files) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


def read_folder(directory: Path) -> Files:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


# Where a test puts a checkpoint: a repo in a local cache (loaded by repo id, offline), or a local folder.
SOURCES = ("repo_id", "path")


def place(
    files: Files, tmp_path: Path, source: str, repo_id: str = "org/tiny-mae"
) -> tuple[str | Path, dict[str, Path]]:
    """Put ``files`` where ``from_pretrained`` finds them; returns what to pass it and the keyword arguments to add."""
    if source == "path":
        return write_folder(tmp_path / repo_id.replace("/", "--"), files), {}
    add_to_cache(tmp_path / "hub", repo_id, files)
    return repo_id, {"cache_dir": tmp_path / "hub"}


def run_offline(code: str, cache: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter with HF_HUB_CACHE=cache, HF_HUB_OFFLINE=1 and no sockets."""
    guard = "import socket\ndef _refuse(*a): raise AssertionError('network access')\n"
    guard += "socket.socket.connect = socket.socket.connect_ex = _refuse\n"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", guard + code], env=env, capture_output=True, text=True, timeout=timeout
    )


def uploads_into(cache: Path) -> None:
    """Make every upload of this process a commit in ``cache``: what a test pushes then loads by repo id, offline.

    Replaces HfApi.create_repo and HfApi.create_commit, the only Hub calls of ``push_to_hub``; for a fresh
    interpreter (``run_offline``), since it changes HfApi for the whole process.
    """

    def create_repo(api: HfApi, repo_id: str, **kwargs: object) -> str:
        return f"https://huggingface.co/{repo_id}"

    def create_commit(
        api: HfApi, repo_id: str, operations: list[CommitOperationAdd], revision: str | None = None, **kwargs: object
    ) -> object:
        files = {}
        for operation in operations:
            with operation.as_file() as content:
                files[operation.path_in_repo] = content.read()
        commit = add_to_cache(cache, repo_id, files, revision or "main").name
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}", pr_url=None)

    HfApi.create_repo = create_repo  # type: ignore[method-assign]
    HfApi.create_commit = create_commit  # type: ignore[method-assign]


# --- each family's files -----------------------------------------------------------------------------------------


def _json_bytes(values: dict) -> bytes:
    return json.dumps(values, indent=2).encode()


def transformers_files(model: MaskedAutoencoderViT, **config_changes: object) -> Files:
    """Our model as a `transformers` ViTMAE checkpoint (the published file layout), config fields changed."""
    config = config_to_transformers(model.config) | config_changes
    return {
        "config.json": _json_bytes(config),
        "model.safetensors": save(to_transformers_state_dict(model.state_dict())),
    }


def pickled(content: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def load_transformers(name_or_path: str | Path, **kwargs: object) -> ViTMAEForPreTraining:
    """`transformers`' own ViTMAEForPreTraining from a folder or a cached repo id, checked to load every key."""
    theirs, info = ViTMAEForPreTraining.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return theirs.eval()


def saved_by_transformers(model: MaskedAutoencoderViT, workdir: Path) -> Files:
    """What ``ViTMAEForPreTraining.save_pretrained`` writes for our model's weights."""
    theirs = load_transformers(write_folder(workdir / "ours", transformers_files(model)))
    theirs.save_pretrained(workdir / "saved")
    return read_folder(workdir / "saved")


def timm_config(architecture: str, config: MAEConfig) -> dict:
    """timm's hub config.json: the architecture name, the head-less output and the data config; no depth, no heads."""
    return {
        "architecture": architecture,
        "num_classes": 0,
        "num_features": config.embed_dim,
        "global_pool": "token",
        "pretrained_cfg": {
            "tag": "mae",
            "custom_load": False,
            "input_size": [config.in_chans, *config.image_hw],
            "interpolation": "bicubic",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "num_classes": 0,
            "license": "cc-by-nc-4.0",
        },
    }


def timm_files(encoder: MAEEncoder, architecture: str = "vit_base_patch16_224") -> Files:
    """A timm hub checkpoint of our encoder: timm's config.json and the official encoder keys."""
    return {
        "config.json": _json_bytes(timm_config(architecture, encoder.config)),
        "model.safetensors": save(encoder.state_dict()),
    }


# VideoMAE's published file layout, from ViTMAE's: the prefixes that differ.
_VIDEOMAE_PREFIXES = {
    "vit.embeddings.patch_embeddings.": "videomae.embeddings.patch_embeddings.",
    "vit.encoder.layer.": "videomae.encoder.layer.",
    "vit.layernorm.": "videomae.layernorm.",
    "decoder.decoder_embed.": "encoder_to_decoder.",
    "decoder.mask_token": "mask_token",
    "decoder.decoder_norm.": "decoder.norm.",
    "decoder.decoder_pred.": "decoder.head.",
}


def videomae_files(model: MaskedAutoencoderViT, *, old_layout: bool = False) -> Files:
    """A fresh video MAE as a `transformers` VideoMAE checkpoint, in the published key layout (``q_bias`` /
    ``v_bias``, no key bias, no ``encoder_to_decoder`` bias: zeros in a fresh model, so nothing is lost).

    ``old_layout``: as the Hub's older files, ``pytorch_model.bin`` and a config saying ``qkv_bias``; else
    ``model.safetensors`` and ``qv_bias``, as `transformers` 5 writes them.
    """
    config = model.config
    tensors = {}
    for key, tensor in to_transformers_state_dict(model.state_dict()).items():
        if key.endswith((".key.bias", "decoder_embed.bias")):
            assert not tensor.any(), key  # VideoMAE has no such bias
            continue
        key = key.replace("attention.attention.query.bias", "attention.attention.q_bias")
        key = key.replace("attention.attention.value.bias", "attention.attention.v_bias")
        prefix = next((p for p in _VIDEOMAE_PREFIXES if key.startswith(p)), "")
        tensors[key if not prefix else _VIDEOMAE_PREFIXES[prefix] + key.removeprefix(prefix)] = tensor
    image = config.replace(num_frames=1, tubelet_size=1, video_pos_embed="separable")
    written = {
        key: value for key, value in config_to_transformers(image).items() if key not in ("mask_ratio", "qkv_bias")
    }
    written |= {
        "model_type": "videomae",
        "architectures": ["VideoMAEForPreTraining"],
        "num_frames": config.num_frames,
        "tubelet_size": config.tubelet_size,
        "use_mean_pooling": False,
        "qkv_bias" if old_layout else "qv_bias": True,
    }
    if old_layout:
        return {"config.json": _json_bytes(written), "pytorch_model.bin": pickled(tensors)}
    return {"config.json": _json_bytes(written), "model.safetensors": save(tensors)}


def published_model(weights: KnownWeights, seed: int = 0) -> VisionTransformer:
    """A fresh model of what a published checkpoint holds (an MAE, an encoder or a classifier), in float16."""
    if weights.fine_tuned:
        model_class: type[VisionTransformer] = MAEViTClassifier
    else:
        model_class = MaskedAutoencoderViT if weights.has_decoder else MAEEncoder
    return _seeded(model_class, model_config(weights.architecture), seed).half()


def published_checkpoint(weights: KnownWeights, model: VisionTransformer | None = None) -> Files:
    """Files in place of a published checkpoint: its family's layout, its architecture's shapes, fresh weights.

    ``model``: a ``published_model(weights)`` to reuse. In float16, to halve the files (ViT-B: 170-220 MB);
    loaders cast to the model's dtype. The transformers config says float32, as the published ones do, so that
    `transformers` builds a float32 model. Hub families give the repo's files (``add_to_cache`` under
    ``weights.name``), official ones ``{file name: .pth bytes}``.
    """
    model = published_model(weights) if model is None else model
    if weights.family == TRANSFORMERS:
        return transformers_files(model, torch_dtype="float32")  # type: ignore[arg-type]
    if weights.family == VIDEOMAE:
        return videomae_files(model)  # type: ignore[arg-type]
    if weights.family == TIMM:  # timm's architecture is the repo's model name: timm/vit_base_patch16_224.mae
        return timm_files(model, weights.name.removeprefix("timm/").split(".")[0])  # type: ignore[arg-type]
    return {weights.name: pickled({"model": model.state_dict()})}


# --- comparisons -------------------------------------------------------------------------------------------------


def encoder_part(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of an MAE's encoder: everything but the decoder (``decoder_*`` and ``mask_token``)."""
    return {key: tensor for key, tensor in state_dict.items() if not key.startswith(("decoder_", "mask_token"))}


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Same keys, and every tensor bit-exact."""
    assert set(got) == set(expected), set(got) ^ set(expected)
    differ = [key for key, tensor in expected.items() if not torch.equal(got[key], tensor)]
    assert not differ, differ


def assert_outputs_match(ours: MaskedAutoencoderViT, reference: torch.nn.Module) -> None:
    """Same loss and predictions within ATOL, same mask and shuffle, on the same images and noise.

    ``reference`` is our model or `transformers`' ViTMAEForPreTraining (whose predictions are ``logits``).
    """
    imgs, noise = inputs(ours.config)
    with torch.no_grad():
        out, ref = ours(imgs, noise=noise), reference(imgs, noise=noise)
    pred = ref.logits if hasattr(ref, "logits") else ref.pred
    torch.testing.assert_close(out.pred, pred, rtol=0, atol=ATOL)
    torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=ATOL)
    assert torch.equal(out.mask, ref.mask) and torch.equal(out.ids_restore, ref.ids_restore)
