"""The shared contracts: atomic outputs, checkpoints, CLI error mapping, progress lines."""

from __future__ import annotations

import io
import json
import os
import pickle

import pytest
import torch
from rsseg.models import create_model, register_model, unregister_model

from rsseg.atomic import atomic_output
from rsseg.checkpoint import Checkpoint, Normalization, load_checkpoint
from rsseg.classes import ISPRS
from rsseg.cli import run
from rsseg.errors import ModelError, OutputError
from rsseg.progress import Progress


@pytest.fixture
def tiny_model_name():
    name = "_test_core_tiny"

    @register_model(name, listed=False)
    def _build(in_channels, num_classes, width=4):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1),
                                   torch.nn.ReLU(), torch.nn.Conv2d(width, num_classes, 1))

    yield name
    unregister_model(name)


def test_atomic_output_renames_on_success(tmp_path):
    final = tmp_path / "out.txt"
    with atomic_output(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_text("done")
        assert not final.exists()
    assert final.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_existing_without_overwrite(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_output(final):
            pass
    with atomic_output(final, overwrite=True) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"


def test_atomic_output_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_output(tmp_path / "nope" / "out.tif"):
            pass


def test_checkpoint_roundtrip_weights_only(tmp_path, tiny_model_name):
    torch.manual_seed(0)
    model = create_model(tiny_model_name, in_channels=4, num_classes=6, width=5)
    norm = Normalization(["IR", "R", "G", "DSM"], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])
    ckpt = Checkpoint.from_model(model, classes=ISPRS, bands=norm, note="synthetic")
    path = tmp_path / "m.pt"
    ckpt.save(path)
    raw = torch.load(path, weights_only=True)  # must not need any class to unpickle
    assert raw["model"] == {"name": tiny_model_name,
                            "config": {"in_channels": 4, "num_classes": 6, "width": 5}}
    back = load_checkpoint(path)
    assert back.bands == norm and back.classes == ISPRS and back.note == "synthetic"
    rebuilt = back.build_model()
    x = torch.randn(1, 4, 8, 8)
    model.eval()
    assert torch.equal(model(x), rebuilt(x))


def test_checkpoint_refuses_code_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_rejects_non_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ModelError, match="not an rsseg checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_of_other_shape_is_a_clear_error(tmp_path, tiny_model_name):
    model = create_model(tiny_model_name, in_channels=3, num_classes=6)
    ckpt = Checkpoint.from_model(model)
    ckpt.model_config["num_classes"] = 7
    with pytest.raises(ModelError, match="weights do not fit"):
        ckpt.build_model()


def test_cli_version_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        from rsseg.cli import main

        main(["--version"])
    assert exc.value.code == 0
    assert "rsseg, version" in capsys.readouterr().out
    assert run(["no-such-command"]) == 2


def test_progress_json_lines():
    buf = io.StringIO()
    with Progress(3, "predict", mode="json", unit="window", stream=buf) as p:
        for _ in range(3):
            p.update()
        p.log("hello")
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0] == {"event": "start", "task": "predict", "total": 3, "unit": "window"}
    assert any(e["event"] == "progress" and e["done"] == 3 and e["fraction"] == 1.0 for e in events)
    assert {"event": "log", "message": "hello"} in events
    assert events[-1]["event"] == "end" and events[-1]["done"] == 3


def test_cli_blend_names_are_the_tiling_modes():
    from rsseg.tiling import BLEND_MODES

    from rsseg.cli.options import BLENDS

    assert tuple(BLENDS) == tuple(BLEND_MODES)
