"""from_pretrained / load_pretrained / save_pretrained / push_to_hub for our models (the one door to the Hub code)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .empty_init import empty_init
from .files import locate, read_weights
from .formats import Checkpoint, to_checkpoint
from .known_weights import find_known
from .loading import assign_tensors, plan_load, report
from .saving import push_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..config import MAEConfig


def read_checkpoint(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    overrides: dict[str, Any] | None = None,
) -> Checkpoint:
    """Find, read and convert a checkpoint of any known family into our config and keys."""
    overrides = overrides or {}
    files = locate(name_or_path, revision=revision, cache_dir=cache_dir, token=token)
    tensors, extras = read_weights(files.weights)
    checkpoint = to_checkpoint(files, tensors, extras, find_known(str(name_or_path)), overrides)
    return dataclasses.replace(checkpoint, config=checkpoint.config.replace(**overrides))


class PretrainedMixin:
    """Hub loading and saving for a module built from an :class:`MAEConfig` (keys: the official ones)."""

    config: MAEConfig
    # Keywords of from_pretrained that are a subclass's own constructor arguments, not config fields.
    _init_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _build_for(cls, checkpoint: Checkpoint) -> Self:
        """A new model of this class for a checkpoint (subclasses with ``_init_options`` take them as keywords)."""
        return cls(checkpoint.config)  # type: ignore[call-arg]

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        mmap: bool = True,
        interpolate_sincos: bool = False,
        **config_overrides: Any,
    ) -> Self:
        """Build a model from published or saved weights: a Hub repo id, a local folder, or a weights file.

        Reads every MAE weight family: `transformers` ViTMAE (facebook/vit-mae-*), timm encoders
        (timm/vit_*_224.mae), the official ``.pth`` files, and this library's ``save_pretrained``.
        Config fields may be overridden (e.g. ``img_size=448``: sin-cos tables are regenerated).
        ``strict=True`` requires every parameter from the checkpoint (encoder-only weights into a
        full MAE raise); ``strict=False`` keeps missing ones freshly initialised, with a warning.
        Downloads go through the huggingface_hub cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``token``).

        With ``mmap=True`` a safetensors file's pages become the CPU parameters, copy-on-write (as
        in `transformers`): no copy, no extra memory. The file must then not be truncated in place
        while the model lives (``torch.save`` or ``cp`` onto it), which crashes the process with
        SIGBUS; the Hub cache never does this, and ``save_pretrained`` writes a new file.
        ``mmap=False`` copies the weights into process memory.

        ``interpolate_sincos`` is for models that learn their position table (``MAEViTClassifier``,
        whose constructor arguments are also accepted here): see there.
        """
        init_options = {key: config_overrides.pop(key) for key in cls._init_options if key in config_overrides}
        checkpoint = read_checkpoint(
            name_or_path, revision=revision, cache_dir=cache_dir, token=token, overrides=config_overrides
        )
        return cls.from_checkpoint(
            checkpoint,
            map_location=map_location,
            strict=strict,
            mmap=mmap,
            interpolate_sincos=interpolate_sincos,
            **init_options,
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        mmap: bool = True,
        interpolate_sincos: bool = False,
        **init_options: Any,
    ) -> Self:
        """Build a model from a :class:`Checkpoint` of :func:`read_checkpoint` (see :meth:`from_pretrained`).

        ``init_options``: a subclass's own constructor arguments (``MAEViTClassifier``: ``num_classes``, ...).
        """
        with empty_init():  # shapes only: no memory, no random init
            model = cls._build_for(checkpoint, **init_options)
        plan = plan_load(
            checkpoint, model.state_dict(), checkpoint.config, strict=strict, interpolate_sincos=interpolate_sincos
        )
        if not plan.complete:
            model = cls._build_for(checkpoint, **init_options)  # the official init for what the checkpoint lacks
        state = {key: tensor.to(map_location, copy=not mmap) for key, tensor in plan.state_dict.items()}
        assign_tensors(model, state)  # type: ignore[arg-type]
        report(plan, checkpoint.source)
        # Complete: every tensor was just assigned on map_location. Otherwise fresh ones are still on the CPU.
        return model if plan.complete else model.to(map_location)  # type: ignore[attr-defined]

    def load_pretrained(
        self,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        strict: bool = True,
        interpolate_sincos: bool = False,
    ) -> None:
        """Load weights of any family into this model. Everything is checked first: on error the model is unchanged.

        Keys the checkpoint does not supply (with ``strict=False``, or a classifier's new head) keep their values.
        """
        # Heads cannot be read from weights: this model's are the ones that count.
        heads = {"num_heads": self.config.num_heads, "decoder_num_heads": self.config.decoder_num_heads}
        checkpoint = read_checkpoint(name_or_path, revision=revision, cache_dir=cache_dir, token=token, overrides=heads)
        plan = plan_load(
            checkpoint,
            self.state_dict(),  # type: ignore[attr-defined]
            self.config,
            strict=strict,
            interpolate_sincos=interpolate_sincos,
        )
        self.load_state_dict(plan.state_dict, strict=plan.complete)  # type: ignore[attr-defined]
        report(plan, checkpoint.source)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json`` (the config, a format marker, the library version) and ``model.safetensors``."""
        return save_checkpoint(self.state_dict(), self.config, type(self).__name__, save_directory)  # type: ignore[attr-defined]

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload Masked Autoencoder weights",
        create_pr: bool = False,
        license: str | None = None,
    ) -> str:
        """Upload config.json, model.safetensors and a generated model card in one commit; returns its URL."""
        return push_checkpoint(
            self.state_dict(),  # type: ignore[attr-defined]
            self.config,
            type(self).__name__,
            repo_id,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
            license=license,
        )
