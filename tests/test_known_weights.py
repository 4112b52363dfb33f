import re
from pathlib import Path

import pytest

from masked_autoencoder import list_models, model_config
from masked_autoencoder.hub.known_weights import DEFAULT_WEIGHTS, KNOWN_WEIGHTS, OFFICIAL, find_known

DOCS = Path(__file__).resolve().parents[1] / "docs" / "weights.md"


def test_every_known_weight_names_a_registered_architecture():
    for weights in KNOWN_WEIGHTS:
        assert weights.architecture in list_models()
        assert weights.license == "cc-by-nc-4.0"
        assert weights.url.startswith("https://")


def test_defaults_are_the_full_facebook_models():
    for architecture, name in DEFAULT_WEIGHTS.items():
        weights = find_known(name)
        assert weights is not None and weights.architecture == architecture
        assert weights.has_decoder and not weights.norm_pix_loss


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
    weights = find_known(f"/downloads/{name}") if name.endswith(".pth") else find_known(name)
    assert weights is not None
    assert (weights.norm_pix_loss, weights.has_decoder) == (norm_pix_loss, has_decoder)


def test_official_files_are_recognised_by_file_name_only():
    assert find_known("elsewhere/mae_finetuned_vit_base.pth").fine_tuned
    assert find_known("my_mae.pth") is None
    assert all(w.family == OFFICIAL for w in KNOWN_WEIGHTS if w.name.endswith(".pth"))


def test_docs_table_lists_every_known_weight_with_its_target():
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([^`]+)` \|(.*)$", DOCS.read_text(), re.MULTILINE)}
    for weights in KNOWN_WEIGHTS:
        assert weights.name in rows, weights.name
        assert f"`{weights.architecture}`" in rows[weights.name]
        if not weights.fine_tuned:
            assert f"({weights.norm_pix_loss})" in rows[weights.name]
        model_config(weights.architecture)
