#!/usr/bin/env python3
"""Build the installable QGIS plugin zip (``make qgis-plugin``).

The zip holds one top folder, ``rsseg_qgis/`` (the plugin's Python package name in
QGIS), with the files of ``qgis_plugin/`` minus caches. Entries are sorted and
carry a fixed timestamp, so the same sources give the same bytes. QGIS: Plugins > Manage and Install Plugins > Install from ZIP.
"""

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "qgis_plugin"
PLUGIN_NAME = "rsseg_qgis"
DEFAULT_OUTPUT = REPO / "dist" / "rsseg_qgis_plugin.zip"
REQUIRED = ("metadata.txt", "__init__.py", "icon.png")
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
FIXED_DATE = (2024, 1, 1, 0, 0, 0)  # zip timestamps: reproducible archives


def plugin_files(source=SOURCE):
    """Files to ship, as paths relative to ``source``, sorted."""
    files = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in EXCLUDED_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in EXCLUDED_SUFFIXES:
            files.append(rel)
    return files


def plugin_folders(source=SOURCE):
    """The top folder and every folder holding a shipped file, sorted."""
    return sorted({rel.parent.as_posix() for rel in plugin_files(source)})


def check_metadata(source=SOURCE):
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"{source}: missing {', '.join(missing)}")
    meta = configparser.ConfigParser()
    meta.read(source / "metadata.txt", encoding="utf-8")
    for key in ("name", "qgisMinimumVersion", "description", "version", "author"):
        if not meta.get("general", key, fallback="").strip():
            raise SystemExit(f"{source / 'metadata.txt'}: [general] {key} is empty")
    return meta["general"]


def build(output=DEFAULT_OUTPUT, source=SOURCE):
    """Write the zip (atomically: a temporary name renamed when complete)."""
    general = check_metadata(source)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for folder in plugin_folders(source):  # explicit entries help some unzippers
                info = zipfile.ZipInfo(f"{PLUGIN_NAME}/{folder}/".replace("/./", "/"), FIXED_DATE)
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            for rel in plugin_files(source):
                info = zipfile.ZipInfo(f"{PLUGIN_NAME}/{rel.as_posix()}", FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, (source / rel).read_bytes())
        tmp.replace(output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return output, general["version"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT),
                        help=f"zip to write (default: {DEFAULT_OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    output, version = build(args.output)
    print(f"{output} (rsseg QGIS plugin {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
