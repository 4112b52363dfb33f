"""The published MAE weights we know, as data: where they live, what they hold, what they were trained to predict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

# Checkpoint families: how a file's keys and config are laid out.
TRANSFORMERS = "transformers"  # transformers' ViTMAE files (config.json with model_type vit_mae)
TIMM = "timm"  # timm's encoders: official encoder keys, a timm config.json
OFFICIAL = "official"  # the paper's .pth files, {'model': state_dict}, no config
OURS = "masked-autoencoder"  # save_pretrained of this library

_NC = "cc-by-nc-4.0"
_OFFICIAL_URL = "https://dl.fbaipublicfiles.com/mae"


@dataclass(frozen=True)
class KnownWeights:
    """One published checkpoint."""

    name: str
    """How to ask for it: a Hub repo id, or the file name of an official ``.pth``."""
    architecture: str
    """Our architecture name (see ``list_models()``)."""
    family: str
    license: str
    norm_pix_loss: bool
    """What its pre-training predicted: per-patch normalized pixels (True) or raw pixels (False)."""
    has_decoder: bool
    url: str
    fine_tuned: bool = False
    """A fine-tuned classifier (``head.*``, ``fc_norm.*``), not MAE pre-training weights."""
    notes: str = ""


def _hub(repo: str, architecture: str, family: str, norm_pix: bool, decoder: bool, notes: str) -> KnownWeights:
    return KnownWeights(
        repo, architecture, family, _NC, norm_pix, decoder, f"https://huggingface.co/{repo}", notes=notes
    )


def _official(file: str, architecture: str, norm_pix: bool, decoder: bool, notes: str, **kw: bool) -> KnownWeights:
    folder = "finetune" if kw.get("fine_tuned") else "visualize" if "visualize" in file else "pretrain"
    url = f"{_OFFICIAL_URL}/{folder}/{file}"
    return KnownWeights(file, architecture, OFFICIAL, _NC, norm_pix, decoder, url, notes=notes, **kw)


_SIZES = {"base": "mae_vit_base_patch16", "large": "mae_vit_large_patch16", "huge": "mae_vit_huge_patch14"}
_TIMM_NAMES = {"base": "vit_base_patch16_224", "large": "vit_large_patch16_224", "huge": "vit_huge_patch14_224"}
_HF_NOTE = "Card says apache-2.0; the weights are the official raw-pixel (visualize) release, CC-BY-NC 4.0."

KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    *(_hub(f"facebook/vit-mae-{s}", a, TRANSFORMERS, False, True, _HF_NOTE) for s, a in _SIZES.items()),
    *(_hub(f"timm/{_TIMM_NAMES[s]}.mae", a, TIMM, True, False, "Encoder only.") for s, a in _SIZES.items()),
    *(_official(f"mae_pretrain_vit_{s}.pth", a, True, False, "Encoder only.") for s, a in _SIZES.items()),
    *(_official(f"mae_pretrain_vit_{s}_full.pth", a, True, True, "With decoder.") for s, a in _SIZES.items()),
    *(_official(f"mae_visualize_vit_{s}.pth", a, False, True, "For visualization.") for s, a in _SIZES.items()),
    _official("mae_visualize_vit_large_ganloss.pth", _SIZES["large"], False, True, "Trained with an extra GAN loss."),
    *(
        _official(f"mae_finetuned_vit_{s}.pth", a, True, False, "ImageNet-1K classifier.", fine_tuned=True)
        for s, a in _SIZES.items()
    ),
)
# pretrained=True on a factory: the full model (with decoder) of each paper architecture.
DEFAULT_WEIGHTS = {architecture: f"facebook/vit-mae-{size}" for size, architecture in _SIZES.items()}
# pretrained=True on a classifier factory: the normalized-pixel encoders the paper fine-tuned (its
# mae_pretrain_vit_*.pth, on the Hub as timm's); the facebook ones are the raw-pixel visualization weights.
FINE_TUNING_WEIGHTS = {architecture: f"timm/{_TIMM_NAMES[size]}.mae" for size, architecture in _SIZES.items()}


def find_known(name_or_path: str) -> KnownWeights | None:
    """The known checkpoint a repo id or a path (by its file name) refers to, or None."""
    by_name = {weights.name: weights for weights in KNOWN_WEIGHTS}
    return by_name.get(str(name_or_path)) or by_name.get(PurePath(str(name_or_path)).name)
