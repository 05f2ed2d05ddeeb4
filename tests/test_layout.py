"""The package layout's rules, read from the source with ``ast`` (not grep).

- ``tiling/`` (pure NumPy) and ``models/`` (pure torch) never import ``rsseg``;
- ``qgis_plugin/`` never imports torch or rsseg (it runs the CLI);
- each subpackage's public names import;
- the CLI's start-up imports neither torch nor rasterio (``rsseg --help`` stays fast).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("io", "predict", "export", "vectorize", "score", "batch", "synth", "training",
               "weights")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``import a.b``, ``from a.b import c``);
    relative imports stay inside their own folder and are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def offending_imports(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_imported_modules_sees_every_form_of_import(tmp_path):
    """The checker itself: nested, aliased, from- and function-level imports are found."""
    src = tmp_path / "m.py"
    src.write_text("import os.path as p\nfrom rsseg.io import scene\n"
                   "def f():\n    import torch\n    from . import sibling\n", encoding="utf-8")
    assert imported_modules(src) == {"os.path", "rsseg.io", "torch"}


@pytest.mark.parametrize("folder", ["tiling", "models"])
def test_tiling_and_models_never_import_rsseg(folder):
    assert list((ROOT / folder).rglob("*.py")), folder
    assert offending_imports(folder, ("rsseg",)) == []


def test_qgis_plugin_never_imports_torch_or_rsseg():
    assert list((ROOT / "qgis_plugin").rglob("*.py"))
    assert offending_imports("qgis_plugin", ("torch", "rsseg")) == []


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_public_names_import(name):
    package = importlib.import_module(f"rsseg.{name}")
    assert package.__all__, f"rsseg.{name} declares no public names"
    for public in package.__all__:
        assert getattr(package, public) is not None, (name, public)
    with pytest.raises(AttributeError):
        getattr(package, "no_such_name")


def test_library_entry_points_at_top_level():
    import rsseg
    from rsseg.predict.engine import predict_scene
    from rsseg.predict.load import load_predictor
    from rsseg.predict.settings import PredictSettings

    assert rsseg.predict_scene is predict_scene
    assert rsseg.load_predictor is load_predictor
    assert rsseg.PredictSettings is PredictSettings


def test_cli_start_up_imports_no_torch_or_rasterio():
    code = ("import sys\nfrom rsseg.cli import cli\nimport rsseg.cli.predict, rsseg.cli.batch\n"
            "print(sorted(m for m in ('torch', 'rasterio', 'dask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
