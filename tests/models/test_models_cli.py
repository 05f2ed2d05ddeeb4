"""``rsseg models``: the table, the JSON records and the error contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rsseg.models import create_model, list_models, model_entry
from rsseg.models._complexity import count_params

import rsseg
from rsseg.cli import cli, run

KEYS = {"name": str, "params": int, "macs_512": int, "bundled_weights": bool, "paper": str,
        "paper_figures": dict, "paper_config": dict}


@pytest.fixture(scope="module")
def records():
    """``rsseg models --json`` run once: counting every network is the slow part."""
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_lists_every_network_with_every_key(records):
    assert [r["name"] for r in records] == list_models()
    for record in records:
        for key, kind in KEYS.items():
            assert isinstance(record[key], kind), (record["name"], key)
        assert record["params"] > 0 and record["macs_512"] > 0
        entry = model_entry(record["name"])
        assert record["paper_figures"] == entry.paper_figures
        assert record["paper_config"] == entry.paper_config


def test_json_bundled_weights_reflect_the_package_folder(records):
    folder = Path(rsseg.__file__).parent / "weights"
    for record in records:
        tagged = sorted(folder.glob(f"{record['name']}.*.pt"))
        assert record["bundled_weights"] == bool(tagged)
        assert sorted(w["file"] for w in record["weights"]) == [p.name for p in tagged]


@pytest.mark.parametrize("name", ["lsa_binet", "baff_skipnet", "canet"])
def test_json_params_are_those_of_the_3_band_6_class_network(records, name):
    record = next(r for r in records if r["name"] == name)
    assert record["params"] == count_params(create_model(name, in_channels=3, num_classes=6))


def test_json_macs_of_known_networks(records):
    by_name = {r["name"]: r for r in records}
    # Counted with torch.utils.flop_counter at 1x3x512x512, 6 classes (see the model cards).
    assert by_name["lsa_binet"]["macs_512"] == 13_120_697_792
    assert by_name["canet"]["macs_512"] == 9_745_825_792
    assert by_name["baff_skipnet"]["macs_512"] == 542_470_144
    assert by_name["bafnet"]["macs_512"] == 12_221_875_456
    assert by_name["lwganet_l0"]["macs_512"] == 3_145_900_544
    assert by_name["lwganet_l2"]["macs_512"] == 12_067_396_224


def test_json_params_of_bafnet_and_lwganet(records):
    by_name = {r["name"]: r for r in records}
    assert by_name["bafnet"]["params"] == 6_384_379
    # The listed LWGANets are built without the training-only auxiliary head.
    assert by_name["lwganet_l2"]["params"] == 12_544_662
    assert by_name["lwganet_l2"]["paper_config"]["aux_head"] is True


def test_names_select_networks_in_the_order_given():
    result = CliRunner().invoke(cli, ["models", "--json", "canet", "baff_skipnet"])
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.output)] == ["canet", "baff_skipnet"]


def test_table_has_a_header_and_one_row_per_network():
    names = ["baff_skipnet", "lsa_binet"]
    result = CliRunner().invoke(cli, ["models", *names])
    assert result.exit_code == 0, result.output
    table, _, tags = result.output.partition("\n\n")  # the table, then the bundled tags
    lines = table.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "params", "MACs@512", "weights"]
    assert "baff_skipnet isprs-synthetic (default)" in tags
    assert [line.split()[0] for line in lines[1:]] == names
    lsa = lines[2].split()
    assert lsa[1:5] == ["1.84", "M", "13.12", "G"]


def test_unknown_model_is_one_error_line_and_exit_1(capsys):
    assert run(["models", "no_such_net"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown model 'no_such_net'" in err[0] and "canet" in err[0]


def test_predict_refuses_a_backbone_classifier(tmp_path, capsys):
    """``lwganet_l0_cls`` is registered (to check the backbone's size) but gives one
    vector per image: predict must refuse it up front, not fail inside the pipeline."""
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    scene, out = tmp_path / "scene.tif", tmp_path / "classes.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=40, height=30, count=3, dtype="uint8",
                       crs="EPSG:32632", transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000)) as ds:
        ds.write(np.zeros((3, 30, 40), np.uint8))
    assert model_entry("lwganet_l0_cls").task == "classification"
    assert all(model_entry(n).task == "segmentation" for n in list_models())
    code = run(["predict", str(scene), "--model", "lwganet_l0_cls", "--weights", "random",
                "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "is an image classifier" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_models_is_listed_in_help():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output
