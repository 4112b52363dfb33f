"""The published MAE weights we know, as a literal table: where they live, what they hold, what they predict."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from ..config import MAEConfig
from ..data_config import default_pretrained_cfg

# Checkpoint families: how a file's keys and config are laid out.
TRANSFORMERS = "transformers"  # transformers' ViTMAE files (config.json with model_type vit_mae)
TIMM = "timm"  # timm's encoders: official encoder keys, a timm config.json
OFFICIAL = "official"  # the paper's .pth files, {'model': state_dict}, no config
OURS = "masked-autoencoder"  # save_pretrained of this library
VIDEOMAE = "videomae"  # transformers' VideoMAE files (config.json with model_type videomae)

_FB = "https://dl.fbaipublicfiles.com/mae"
_FACEBOOK_NOTE = "Card says apache-2.0; the weights are the official raw-pixel (visualize) release, CC-BY-NC 4.0."


@dataclass(frozen=True)
class KnownWeights:
    """One published checkpoint."""

    name: str
    """How to ask for it: a Hub repo id, or the file name of an official ``.pth``."""
    architecture: str
    """Our architecture name (see ``list_models()``)."""
    family: str
    norm_pix_loss: bool
    """What its pre-training predicted: per-patch normalized pixels (True) or raw pixels (False)."""
    has_decoder: bool
    url: str
    fine_tuned: bool = False
    """A fine-tuned classifier (``head.*``, ``fc_norm.*``), not MAE pre-training weights."""
    license: str = "cc-by-nc-4.0"
    notes: str = ""

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """The weights' data config, with timm's keys: what ``model.pretrained_cfg`` holds after loading them.

        Every published MAE weight was trained on ImageNet at 224 px with the official recipe: its defaults.
        """
        recipe = default_pretrained_cfg(MAEConfig(img_size=224))
        return {"name": self.name, "url": self.url, "license": self.license, **recipe}


KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights(
        name="facebook/vit-mae-base",
        architecture="mae_vit_base_patch16",
        family=TRANSFORMERS,
        norm_pix_loss=False,
        has_decoder=True,
        url="https://huggingface.co/facebook/vit-mae-base",
        notes=_FACEBOOK_NOTE,
    ),
    KnownWeights(
        name="facebook/vit-mae-large",
        architecture="mae_vit_large_patch16",
        family=TRANSFORMERS,
        norm_pix_loss=False,
        has_decoder=True,
        url="https://huggingface.co/facebook/vit-mae-large",
        notes=_FACEBOOK_NOTE,
    ),
    KnownWeights(
        name="facebook/vit-mae-huge",
        architecture="mae_vit_huge_patch14",
        family=TRANSFORMERS,
        norm_pix_loss=False,
        has_decoder=True,
        url="https://huggingface.co/facebook/vit-mae-huge",
        notes=_FACEBOOK_NOTE,
    ),
    KnownWeights(
        name="timm/vit_base_patch16_224.mae",
        architecture="mae_vit_base_patch16",
        family=TIMM,
        norm_pix_loss=True,
        has_decoder=False,
        url="https://huggingface.co/timm/vit_base_patch16_224.mae",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="timm/vit_large_patch16_224.mae",
        architecture="mae_vit_large_patch16",
        family=TIMM,
        norm_pix_loss=True,
        has_decoder=False,
        url="https://huggingface.co/timm/vit_large_patch16_224.mae",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="timm/vit_huge_patch14_224.mae",
        architecture="mae_vit_huge_patch14",
        family=TIMM,
        norm_pix_loss=True,
        has_decoder=False,
        url="https://huggingface.co/timm/vit_huge_patch14_224.mae",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_base.pth",
        architecture="mae_vit_base_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        url=f"{_FB}/pretrain/mae_pretrain_vit_base.pth",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_large.pth",
        architecture="mae_vit_large_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        url=f"{_FB}/pretrain/mae_pretrain_vit_large.pth",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_huge.pth",
        architecture="mae_vit_huge_patch14",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        url=f"{_FB}/pretrain/mae_pretrain_vit_huge.pth",
        notes="Encoder only.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_base_full.pth",
        architecture="mae_vit_base_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=True,
        url=f"{_FB}/pretrain/mae_pretrain_vit_base_full.pth",
        notes="With decoder.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_large_full.pth",
        architecture="mae_vit_large_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=True,
        url=f"{_FB}/pretrain/mae_pretrain_vit_large_full.pth",
        notes="With decoder.",
    ),
    KnownWeights(
        name="mae_pretrain_vit_huge_full.pth",
        architecture="mae_vit_huge_patch14",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=True,
        url=f"{_FB}/pretrain/mae_pretrain_vit_huge_full.pth",
        notes="With decoder.",
    ),
    KnownWeights(
        name="mae_visualize_vit_base.pth",
        architecture="mae_vit_base_patch16",
        family=OFFICIAL,
        norm_pix_loss=False,
        has_decoder=True,
        url=f"{_FB}/visualize/mae_visualize_vit_base.pth",
        notes="For visualization.",
    ),
    KnownWeights(
        name="mae_visualize_vit_large.pth",
        architecture="mae_vit_large_patch16",
        family=OFFICIAL,
        norm_pix_loss=False,
        has_decoder=True,
        url=f"{_FB}/visualize/mae_visualize_vit_large.pth",
        notes="For visualization.",
    ),
    KnownWeights(
        name="mae_visualize_vit_huge.pth",
        architecture="mae_vit_huge_patch14",
        family=OFFICIAL,
        norm_pix_loss=False,
        has_decoder=True,
        url=f"{_FB}/visualize/mae_visualize_vit_huge.pth",
        notes="For visualization.",
    ),
    KnownWeights(
        name="mae_visualize_vit_large_ganloss.pth",
        architecture="mae_vit_large_patch16",
        family=OFFICIAL,
        norm_pix_loss=False,
        has_decoder=True,
        url=f"{_FB}/visualize/mae_visualize_vit_large_ganloss.pth",
        notes="Trained with an extra GAN loss.",
    ),
    KnownWeights(
        name="mae_finetuned_vit_base.pth",
        architecture="mae_vit_base_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        fine_tuned=True,
        url=f"{_FB}/finetune/mae_finetuned_vit_base.pth",
        notes="ImageNet-1K classifier.",
    ),
    KnownWeights(
        name="mae_finetuned_vit_large.pth",
        architecture="mae_vit_large_patch16",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        fine_tuned=True,
        url=f"{_FB}/finetune/mae_finetuned_vit_large.pth",
        notes="ImageNet-1K classifier.",
    ),
    KnownWeights(
        name="mae_finetuned_vit_huge.pth",
        architecture="mae_vit_huge_patch14",
        family=OFFICIAL,
        norm_pix_loss=True,
        has_decoder=False,
        fine_tuned=True,
        url=f"{_FB}/finetune/mae_finetuned_vit_huge.pth",
        notes="ImageNet-1K classifier.",
    ),
    KnownWeights(
        name="MCG-NJU/videomae-base",
        architecture="videomae_vit_base_patch16",
        family=VIDEOMAE,
        norm_pix_loss=True,
        has_decoder=True,
        url="https://huggingface.co/MCG-NJU/videomae-base",
        notes="VideoMAE, Kinetics-400, 1600 epochs; per-channel normalized tubelet pixels (see docs/video.md).",
    ),
    KnownWeights(
        name="MCG-NJU/videomae-base-short",
        architecture="videomae_vit_base_patch16",
        family=VIDEOMAE,
        norm_pix_loss=True,
        has_decoder=True,
        url="https://huggingface.co/MCG-NJU/videomae-base-short",
        notes="VideoMAE, Kinetics-400, 800 epochs; per-channel normalized tubelet pixels (see docs/video.md).",
    ),
)
_BY_NAME = {weights.name: weights for weights in KNOWN_WEIGHTS}


def known_by_repo_id(repo_id: str) -> KnownWeights | None:
    """The published checkpoint of a Hub repo id, or None."""
    return _BY_NAME.get(repo_id)


def known_by_file_name(file_name: str) -> KnownWeights | None:
    """The published checkpoint whose file has this name, or None: a guess, since anyone may name a file so."""
    return _BY_NAME.get(file_name)


def list_pretrained(pattern: str = "*") -> list[str]:
    """The names of the published weights we know (repo ids and official file names) that match a glob ``pattern``.

    ``list_pretrained("*large*")`` -> ``["facebook/vit-mae-large", "mae_finetuned_vit_large.pth", ...]``. Each
    loads with ``from_pretrained`` (repo ids directly, official files by their downloaded path);
    docs/weights.md describes them.
    """
    return sorted(name for name in _BY_NAME if fnmatch.fnmatchcase(name, pattern))
