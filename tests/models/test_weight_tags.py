"""Bundled weights by tag (issue 13): ``<model>.<tag>.pt`` + ``.json`` cards, the default tag,
``--weights TAG``, ``rsseg models`` listing, and mismatches that name the tags that fit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rsseg.checkpoint import Checkpoint, Normalization
from rsseg.classes import load_scheme
from rsseg.errors import ModelError
from rsseg.models import create_model
from rsseg.weights import bundled
from rsseg.weights.catalog import describe, format_table

NET = "baff_skipnet"


def test_shipped_synthetic_weights_are_the_default_tag():
    tags = bundled.bundled_tags("bafnet")
    assert tags[0].tag == "isprs-synthetic"
    assert tags[0].path.name == "bafnet.isprs-synthetic.pt"
    assert bundled.bundled_weights("bafnet") == tags[0].path
    assert bundled.resolve_weights("bafnet", None) == str(tags[0].path)
    assert bundled.resolve_weights("bafnet", "isprs-synthetic") == str(tags[0].path)
    assert bundled.resolve_weights("bafnet", "random") == "random"


def test_unknown_tag_names_the_tags_there_are():
    with pytest.raises(ModelError, match="isprs-synthetic") as err:
        bundled.resolve_weights("bafnet", "no-such-tag")
    assert "no-such-tag" in str(err.value) and "bafnet" in str(err.value)


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    """A copy of the shipped folder plus a new 3-band dubai-aerial checkpoint for NET:
    picked up with no code change, as the real-imagery weights will be."""
    folder = tmp_path / "weights"
    shutil.copytree(bundled._folder(), folder, ignore=shutil.ignore_patterns("*.py", "__*"))
    scheme = load_scheme("dubai-aerial")
    torch.manual_seed(0)
    model = create_model(NET, in_channels=3, num_classes=scheme.num_classes)
    Checkpoint.from_model(model, classes=scheme,
                          bands=Normalization(["R", "G", "B"], [0.0] * 3, [1.0] * 3),
                          note="test weights").save(folder / f"{NET}.dubai-aerial.pt", half=True)
    (folder / f"{NET}.dubai-aerial.json").write_text(json.dumps(
        {"model": NET, "tag": "dubai-aerial", "trained_on": "Dubai aerial tiles 1-6",
         "gsd_m": None, "metrics": {"miou": 0.5, "oa": 0.7}}))
    monkeypatch.setattr(bundled, "_folder", lambda: folder)
    bundled.describe_checkpoint.cache_clear()
    yield folder
    bundled.describe_checkpoint.cache_clear()


def test_a_new_tag_is_listed_with_its_card(weights_folder):
    record = describe(NET)
    by_tag = {w["tag"]: w for w in record["weights"]}
    # default first, then by name (the shipped held-out weights beside the test's)
    assert list(by_tag) == ["isprs-synthetic", "dubai-aerial", "dubai-aerial-holdout7"]
    assert by_tag["isprs-synthetic"]["default"] and not by_tag["dubai-aerial"]["default"]
    real = by_tag["dubai-aerial"]
    assert real["classes"] == ["building", "land", "road", "vegetation", "water"]
    assert real["bands"] == ["R", "G", "B"] and real["trained_on"] == "Dubai aerial tiles 1-6"
    assert real["metrics"] == {"miou": 0.5, "oa": 0.7}
    text = format_table([record])
    assert "dubai-aerial" in text and "classes: building, land, road" in text
    assert "isprs-synthetic*" in text


def test_a_card_can_make_its_tag_the_default(weights_folder):
    card = weights_folder / f"{NET}.dubai-aerial.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "default": True}))
    assert bundled.find_tag(NET).tag == "dubai-aerial"
    assert bundled.bundled_tags(NET)[0].tag == "dubai-aerial"


def test_band_mismatch_names_the_tags_that_fit(weights_folder):
    from rsseg.predict.load import load_predictor

    with pytest.raises(ModelError, match=f"{NET} --weights dubai-aerial") as err:
        load_predictor(NET, None, channels=3, device="cpu")  # the default tag takes 4 bands
    assert "expects 4 bands" in str(err.value)
    resolved = load_predictor(NET, "dubai-aerial", channels=3, device="cpu")
    assert resolved.classes.names == ("building", "land", "road", "vegetation", "water")
    assert resolved.classes.colours[0] == (0x3C, 0x10, 0x98)


def test_models_cli_lists_tags(capsys):
    from rsseg.cli import run

    assert run(["models", "bafnet", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    weights = record["weights"]
    assert [w["tag"] for w in weights] == ["isprs-synthetic"] and weights[0]["default"]
    assert set(weights[0]) >= {"tag", "default", "classes", "bands", "trained_on", "metrics"}
    assert weights[0]["bands"] == ["IR", "R", "G", "DSM"] and 0 < weights[0]["metrics"]["miou"] <= 1


def test_a_card_without_validation_scores_says_why(weights_folder):
    card = weights_folder / f"{NET}.dubai-aerial.json"
    split = "trained on every released tile: no unseen area left"
    card.write_text(json.dumps({**json.loads(card.read_text()),
                                "metrics": {"split": split, "seen_miou": 0.9}}))
    text = format_table([describe(NET)])
    assert f"validation: - ({split})" in text and "0.900" not in text  # a seen score is no score
