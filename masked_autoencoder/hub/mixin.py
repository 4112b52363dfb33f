"""PretrainedMixin: from_pretrained / load_pretrained / save_pretrained / push_to_hub, delegating to hub/ functions."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from .._validation import require
from ..data_config import check_pretrained_cfg, resolve_pretrained_cfg
from .files import HubOptions
from .pretrained import in_memory_checkpoint, load_into, load_model, read_checkpoint
from .saving import SavedModel, push_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..checkpoint_rules import CheckpointRules
    from ..config import MAEConfig


class PretrainedMixin:
    """Hub loading and saving for a module built as ``cls(config, **options)`` that declares ``checkpoint_rules``."""

    config: MAEConfig
    checkpoint_rules: CheckpointRules
    _pretrained_cfg: dict[str, Any] | None = None  # as assigned or loaded; None: the defaults

    @property
    def pretrained_cfg(self) -> Mapping[str, Any]:
        """What the weights expect as input, with timm's keys (:mod:`masked_autoencoder.data_config`): ``mean``,
        ``std``, ``interpolation``, ``crop_pct``, ``input_size`` (C, H, W, always the model's own) and, for
        published weights, ``name``, ``url`` and ``license``.

        The values loaded weights record (the known table for published ones, a timm or our config.json),
        else the official recipe's defaults. Read-only view: assign a whole dict to change it (validated,
        completed with the defaults); ``save_pretrained`` writes it and ``from_pretrained`` restores it.
        """
        return MappingProxyType(resolve_pretrained_cfg(self._pretrained_cfg, self.config))

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: Mapping[str, Any] | None) -> None:
        self._pretrained_cfg = None if cfg is None else check_pretrained_cfg(cfg, self.config)

    @property
    def checkpoint_options(self) -> dict[str, Any]:
        """Constructor options that ``save_pretrained`` records beside the config (none here; a classifier's head)."""
        return {}

    @classmethod
    def options_from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Constructor options a checkpoint's keys imply, for files that record none (none here)."""
        return {}

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
        **kwargs: Any,
    ) -> Self:
        """Build a model from published or saved weights: a Hub repo id, a local folder, or a weights file.

        Reads every MAE weight family: `transformers` ViTMAE (facebook/vit-mae-*), timm encoders
        (timm/vit_*_224.mae), the official ``.pth`` files, and this library's ``save_pretrained``.
        ``kwargs`` are config fields, which override what the checkpoint says (e.g. ``img_size=448``:
        sin-cos tables are regenerated; ``num_heads=`` for files that cannot say), and the class's own
        constructor arguments (``drop_path_rate``, a classifier's ``num_classes``, ...).
        ``strict=True`` requires every parameter from the checkpoint (encoder-only weights into a
        full MAE raise); ``strict=False`` keeps missing ones freshly initialised, with a warning.
        Downloads go through the huggingface_hub cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``token``).
        The model is returned in eval mode, as `transformers` does: call ``.train()`` to train it.

        With ``mmap=True`` a safetensors file's pages become the CPU parameters, copy-on-write (as
        in `transformers`): no copy, no extra memory. The file must then not be truncated in place
        while the model lives (``torch.save`` or ``cp`` onto it), which crashes the process with
        SIGBUS; the Hub cache never does this, and ``save_pretrained`` writes a new file.
        ``mmap=False`` copies the weights into process memory.

        ``interpolate_sincos`` is for models that learn their position table (``MAEViTClassifier``): see there.
        """
        hub = HubOptions(revision, cache_dir, token)
        return load_model(
            cls,
            functools.partial(read_checkpoint, name_or_path, hub),
            map_location=map_location,
            strict=strict,
            mmap=mmap,
            interpolate_sincos=interpolate_sincos,
            kwargs=kwargs,
        )

    @classmethod
    def from_model(
        cls,
        model: PretrainedMixin,
        *,
        map_location: str | torch.device | None = None,
        strict: bool = True,
        interpolate_sincos: bool = False,
        **kwargs: Any,
    ) -> Self:
        """A new model of this class from another one in memory, e.g. a classifier from a pre-trained MAE.

        ``MAEViTClassifier.from_model(mae, num_classes=10)`` is ``mae.save_pretrained(folder)`` then
        ``MAEViTClassifier.from_pretrained(folder, num_classes=10)``, without the files: the same weights
        loaded, the same ones fresh (the classifier's head and ``fc_norm``), the same errors and the same
        keywords (config overrides such as ``img_size=``, the class's own such as ``drop_path_rate=``), and
        ``model.pretrained_cfg`` carried over. ``model``: a model of this library (``MaskedAutoencoderViT``,
        ``MAEEncoder``, ``MAEViTClassifier``, ...); its weights are copied (training the new model leaves it
        unchanged). ``map_location`` defaults to ``model``'s device. Returned in eval mode, as
        :meth:`from_pretrained`.
        """
        ok = isinstance(model, PretrainedMixin)
        require(ok, "model", type(model).__name__, "a model of this library (MaskedAutoencoderViT, MAEEncoder, ...)")
        device = next(model.parameters()).device if map_location is None else map_location  # type: ignore[attr-defined]
        return load_model(
            cls,
            functools.partial(in_memory_checkpoint, model._saved()),
            map_location=device,
            strict=strict,
            mmap=False,
            interpolate_sincos=interpolate_sincos,
            kwargs=kwargs,
        )

    def load_pretrained(
        self,
        name_or_path: str | Path,
        *,
        strict: bool = True,
        interpolate_sincos: bool = False,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
    ) -> None:
        """Load weights of any family into this model. Everything is checked first: on error the model is unchanged.

        Keys the checkpoint does not supply (with ``strict=False``, or a classifier's new head) keep their
        values. A checkpoint that records other settings than this model's (heads, layer-norm eps, pixel
        target) is refused, naming both values; with ``strict=False`` it loads with a warning.
        ``revision``, ``cache_dir`` and ``token`` as in :meth:`from_pretrained`.
        """
        load_into(
            self,  # type: ignore[arg-type]
            name_or_path,
            HubOptions(revision, cache_dir, token),
            strict=strict,
            interpolate_sincos=interpolate_sincos,
        )

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json`` (the config, the model's options, a format marker, the library version) and
        ``model.safetensors``."""
        return save_checkpoint(self._saved(), save_directory)

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
            self._saved(),
            repo_id,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
            license=license,
        )

    def _saved(self) -> SavedModel:
        state_dict = self.state_dict()  # type: ignore[attr-defined]
        return SavedModel(
            state_dict, self.config, type(self).__name__, self.checkpoint_options, dict(self.pretrained_cfg)
        )
