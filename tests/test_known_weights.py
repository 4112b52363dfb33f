"""The registry and the known-weights table: one home each, consistent with each other and with the docs."""

import re
from pathlib import Path

import pytest

from masked_autoencoder import list_models, list_pretrained, model_config
from masked_autoencoder.hub.known_weights import KNOWN_WEIGHTS, OFFICIAL, known_by_file_name, known_by_repo_id
from masked_autoencoder.registry import ARCHITECTURES, architecture

DOCS = Path(__file__).resolve().parents[1] / "docs" / "weights.md"


def test_every_known_weight_names_a_registered_architecture():
    for weights in KNOWN_WEIGHTS:
        assert architecture(weights.architecture).name == weights.architecture
        assert weights.license == "cc-by-nc-4.0"
        assert weights.url.startswith("https://") and weights.url.endswith(weights.name)


def test_registry_defaults_are_known_weights_of_their_architecture():
    for arch in ARCHITECTURES:
        for name, has_decoder in ((arch.pretrained, True), (arch.fine_tuning_start, False)):
            if name is None:
                continue
            weights = known_by_repo_id(name)
            assert weights is not None and weights.architecture == arch.name
            assert weights.has_decoder is has_decoder and not weights.fine_tuned
    # pretrained=True gives the full raw-pixel models; the classifiers start from the normalized-pixel encoders.
    assert not known_by_repo_id("facebook/vit-mae-base").norm_pix_loss
    assert known_by_repo_id("timm/vit_base_patch16_224.mae").norm_pix_loss


def test_paper_drop_path_rates_and_aliases_live_in_the_registry():
    rates = {arch.name: arch.drop_path_rate for arch in ARCHITECTURES}
    assert rates["mae_vit_base_patch16"] == 0.1 and rates["mae_vit_large_patch16"] == 0.2
    assert rates["mae_vit_huge_patch14"] == 0.3 and rates["mae_vit_tiny_patch16"] == 0.0
    assert architecture("mae_vit_large") is architecture("mae_vit_large_patch16")
    assert set(list_models()) == {name for arch in ARCHITECTURES for name in (arch.name, *arch.aliases)}


@pytest.mark.parametrize(
    ("name", "norm_pix_loss", "has_decoder"),
    [
        ("mae_pretrain_vit_large.pth", True, False),
        ("mae_pretrain_vit_large_full.pth", True, True),
        ("mae_visualize_vit_large.pth", False, True),
        ("mae_visualize_vit_large_ganloss.pth", False, True),
        ("timm/vit_huge_patch14_224.mae", True, False),
    ],
)
def test_known_targets_follow_the_official_release(name, norm_pix_loss, has_decoder):
    weights = known_by_file_name(name) if name.endswith(".pth") else known_by_repo_id(name)
    assert weights is not None
    assert (weights.norm_pix_loss, weights.has_decoder) == (norm_pix_loss, has_decoder)


def test_official_files_are_known_by_file_name_and_hub_repos_by_repo_id_only():
    assert known_by_file_name("mae_finetuned_vit_base.pth").fine_tuned
    assert known_by_file_name("my_mae.pth") is None
    assert known_by_repo_id("someone/mae_pretrain_vit_base.pth") is None
    assert all(w.family == OFFICIAL for w in KNOWN_WEIGHTS if w.name.endswith(".pth"))


def test_list_pretrained_filters_the_known_names_by_glob():
    assert list_pretrained() == sorted(w.name for w in KNOWN_WEIGHTS)
    assert list_pretrained("facebook/*") == ["facebook/vit-mae-base", "facebook/vit-mae-huge", "facebook/vit-mae-large"]
    assert "mae_finetuned_vit_large.pth" in list_pretrained("*large*")
    assert list_pretrained("nothing*") == []


def test_docs_table_lists_every_known_weight_with_its_target():
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([^`]+)` \|(.*)$", DOCS.read_text(), re.MULTILINE)}
    for weights in KNOWN_WEIGHTS:
        assert weights.name in rows, weights.name
        assert f"`{weights.architecture}`" in rows[weights.name]
        if not weights.fine_tuned:
            assert f"({weights.norm_pix_loss})" in rows[weights.name]
        model_config(weights.architecture)
