"""Run every fenced shell command of README.md and docs/ on generated data.

A documented command that fails breaks CI (`.ci/run` runs this script), so the docs cannot
drift from the code again.

Conventions for the Markdown files:

* A block fenced as ``sh``, ``bash`` or ``console`` is run: each page's blocks run in order
  as bash scripts (``set -e``) in one temporary folder per page, so a block can use what an
  earlier one wrote. In ``console`` blocks only the ``$ `` lines are commands (the rest is
  output). Every command must succeed, except where a ``console`` block shows the error
  itself (a ``rsseg: error:`` line right after the command): such a command must fail.
* ``text`` blocks (synopses, output, diagrams) are not run. An untagged block that holds a
  command line is an error: tag it ``sh`` or ``text``.
* ``<!-- docs-check: skip REASON -->`` on the line before a fence skips that block; the
  reason is printed (a GPU, the QGIS GUI, a cluster of other machines, data sets not shipped).

Before a page runs, its folder is filled with the small files the docs name (scene.tif,
labels.tif, rgb.tif + ir.tif + dsm.tif, image.jpg (the shipped real crop), imgs/ + gts/ +
val/, city/ tiles, a trained checkpoint at run/best.pt, runs/x/best.pt and w.pt,
model.onnx). To keep the check to a few minutes, sizes and epochs are scaled down (``SPEED_UPS``): the commands and options are the
documented ones.

    python scripts/docs_check.py [FILE.md ...] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGS = {"sh", "bash", "shell", "console"}
COMMAND = re.compile(r"^\s*(\$ )?(rsseg|python3?|make|gdalinfo|ogrinfo|dask|qgis_process)(?=\s)")
SKIP = re.compile(r"<!--\s*docs-check:\s*skip\s+(.+?)\s*-->")
IN_CHECKOUT = re.compile(r"<!--\s*docs-check:\s*in-checkout\s*-->")

# Scale work down, not the interface: the same options with smaller values.
SPEED_UPS = [
    (re.compile(r"--epochs \d+"), "--epochs 1"),
    (re.compile(r"--size (\d+)x(\d+)"), lambda m: "--size {}x{}".format(
        *(min(int(v), 1024) for v in m.groups()))),
    (re.compile(r"--size (\d+)(?!x)\b"), lambda m: f"--size {min(int(m.group(1)), 512)}"),
    (re.compile(r"--crop \d+"), "--crop 64"),
    (re.compile(r"--batch-size \d+"), "--batch-size 2"),
    # make targets run in the checkout, not in the page's folder
    (re.compile(r"^(\s*)make ", re.M), r'\1make -s -C "$RSSEG_ROOT" '),
]


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    skip: str | None
    in_checkout: bool = False  # install/build steps: run in the checkout, not a scratch folder


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"),
                   len(lines))
        before = lines[start - 1] if start > 0 else ""
        skip = SKIP.search(before)
        body = "\n".join(row[len(fence.group(1)):] if row.startswith(fence.group(1)) else row
                         for row in lines[start + 1:end])  # fences indented in a list item
        found.append(Block(page, start + 1, lang, body, skip.group(1) if skip else None,
                           bool(IN_CHECKOUT.search(before))))
        i = end + 1
    return found


def script_of(block: Block) -> str:
    """The bash the block runs; console blocks: ``$`` lines, expected failures inverted."""
    if block.lang != "console":
        body = block.body
    else:
        body_lines, rows = [], block.body.splitlines()
        for k, row in enumerate(rows):
            if not row.startswith("$ "):
                continue
            command = row[2:]
            while command.endswith("\\") and k + 1 < len(rows):
                k += 1
                command = command[:-1] + " " + rows[k].strip()
            shows_error = k + 1 < len(rows) and rows[k + 1].startswith("rsseg: error:")
            body_lines.append(f"! {command}" if shows_error else command)
        body = "\n".join(body_lines)
    for pattern, replacement in SPEED_UPS:
        body = pattern.sub(replacement, body)
    return body


def untagged_commands(block: Block) -> bool:
    return block.lang == "" and any(COMMAND.match(row) for row in block.body.splitlines())


OUTPUT_OPTIONS = {"-o", "--output", "--out", "--labels", "--labels-rgb", "--dsm-out", "--probs"}


def written_by(blocks: list[Block]) -> set[str]:
    """Paths the page's own commands write: the page makes them, so no fixture stands there."""
    paths = set()
    for block in blocks:
        words = script_of(block).replace("\\\n", " ").split()
        paths.update(os.path.normpath(w.strip("'\"")) for option, w in zip(words, words[1:])
                     if option in OUTPUT_OPTIONS)
    return paths


def make_fixtures(folder: Path, rsseg: str) -> None:
    """The small files the docs' commands read, made once and copied into each page's folder."""
    def run(*args: str) -> None:
        proc = subprocess.run([rsseg, *args, "--no-progress"], cwd=folder,
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"docs check: making fixtures failed: rsseg {' '.join(args)}\n"
                             f"{proc.stderr[-2000:]}")

    for sub in ("imgs", "gts", "val", "city", "run", "runs/x", "runs/rgb", "rgb", "gt",
                "rgb_val", "gt_val"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    run("synth", "-o", "scene.tif", "--size", "640x448", "--seed", "1", "--labels", "labels.tif")
    # A scene in separate files: 3 bands + a 1-band IR file + a DSM on a coarser grid.
    run("synth", "-o", "rgb.tif", "--size", "320x256", "--seed", "2", "--dsm-out", "dsm_fine.tif")
    gdal = dict(cwd=folder, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["gdal_translate", "-q", "-b", "1", "rgb.tif", "ir.tif"], **gdal)
    subprocess.run(["gdalwarp", "-q", "-tr", "0.18", "0.18", "dsm_fine.tif", "dsm.tif"], **gdal)
    shutil.copy(folder / "rgb.tif", folder / "top_rgb.tif")
    shutil.copy(folder / "rgb.tif", folder / "ortho.tif")
    shutil.copy(folder / "ir.tif", folder / "top_ir.tif")
    shutil.copy(folder / "ir.tif", folder / "pan.tif")
    # A real RGB photo without georeferencing: the crop of Dubai tile 7 the package ships.
    shutil.copy(ROOT / "rsseg" / "data" / "dubai_tile7_part005.jpg", folder / "image.jpg")
    # Untrained checkpoints of the band counts the docs use (the docs show the interface).
    checkpoints = ("import torch; from rsseg.models import create_model; "
                   "from rsseg.checkpoint import Checkpoint; torch.manual_seed(0)\n"
                   "for net, bands, path in (('bafnet', 4, 'run/best.pt'), "
                   "('baff_skipnet', 5, 'run/rgbi_dsm.pt'), ('baff_skipnet', 3, 'run/rgb.pt'), "
                   "):\n"
                   "    Checkpoint.from_model(create_model(net, in_channels=bands, "
                   "num_classes=6)).save(path)")
    subprocess.run([sys.executable, "-c", checkpoints], **gdal)
    # Training tiles: seeds whose scenes hold every class (training refuses a class it
    # never sees).
    for k, seed in ((1, 1), (2, 4)):
        run("synth", "-o", f"imgs/t{k}.tif", "--size", "384x384", "--seed", str(seed),
            "--labels", f"gts/t{k}.tif")
    run("synth", "-o", "val/img.tif", "--size", "384x384", "--seed", "3", "--labels",
        "val/gt.tif")
    for k, x in enumerate((496000.0, 496000.0 + 256 * 0.09)):
        run("synth", "-o", f"city/{'ab'[k]}.tif", "--size", "256x256", "--seed", "1",
            "--origin", f"{x},5420000")
    (folder / "tiles.txt").write_text("city/a.tif\ncity/b.tif\n")
    subprocess.run(["gdalbuildvrt", "-q", "city.vrt", "city/a.tif", "city/b.tif"], cwd=folder,
                   check=True)
    run("train", "--images", "imgs/t1.tif", "imgs/t2.tif", "--labels", "gts/t1.tif",
        "gts/t2.tif", "--val-images",
        "val/img.tif", "--val-labels", "val/gt.tif", "--model", "baff_skipnet", "-o", "runs/x",
        "--epochs", "1", "--crop", "64", "--batch-size", "2")
    shutil.copy(folder / "runs/x/best.pt", folder / "w.pt")
    # 3-band (RGB-like) scenes and a trained RGB model (what --for deepness|geodeep takes)
    for name, seed in (("rgb/a", 1), ("rgb/b", 4), ("rgb_val/a", 3)):
        labels = name.replace("rgb", "gt")
        run("synth", "-o", f"{name}.tif", "--size", "384x384", "--seed", str(seed),
            "--labels", f"{labels}.tif", "--dsm-out", f"{name}_dsm.tif")
        (folder / f"{name}_dsm.tif").unlink()
    run("train", "--images", "rgb/a.tif", "rgb/b.tif", "--labels", "gt/a.tif", "gt/b.tif",
        "--val-images", "rgb_val/a.tif", "--val-labels", "gt_val/a.tif", "--model",
        "baff_skipnet", "-o", "runs/rgb", "--epochs", "1", "--crop", "64", "--batch-size", "2")
    run("export", "w.pt", "-o", "model.onnx")


def run_block(block: Block, folder: Path, env: dict) -> tuple[bool, str]:
    script = "set -eo pipefail\n" + script_of(block)
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT if block.in_checkout else folder,
                          env=env, capture_output=True,
                          text=True, timeout=900)
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    pages = [p.resolve() for p in args.pages] or [ROOT / "README.md",
                                                  *sorted((ROOT / "docs").rglob("*.md"))]
    rsseg = shutil.which("rsseg", path=str(Path(sys.executable).parent)) or "rsseg"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RSSEG_ROOT": str(ROOT)}
    env.pop("RSSEG_DEBUG", None)
    work = Path(tempfile.mkdtemp(prefix="rsseg-docs-check."))
    failures, ran, skipped = [], 0, []
    try:
        fixtures = work / "fixtures"
        fixtures.mkdir()
        make_fixtures(fixtures, rsseg)
        for page in pages:
            blocks = blocks_of(page)
            folder = work / page.relative_to(ROOT).as_posix().replace("/", "__")
            shutil.copytree(fixtures, folder)
            # A fixture the page writes itself is removed just before the block that writes it.
            untouched = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                         if p.is_file()}
            for block in blocks:
                where = f"{page.relative_to(ROOT)}:{block.line}"
                if untagged_commands(block):
                    failures.append((where, "untagged block with commands: tag it sh or text"))
                    continue
                if block.lang not in RUN_LANGS:
                    continue
                if block.skip:
                    skipped.append((where, block.skip))
                    continue
                for written in written_by([block]):  # a file, or a folder (-o runs/x)
                    for path in [p for p in untouched
                                 if p == written or p.startswith(written.rstrip("/") + "/")]:
                        (folder / path).unlink()
                        untouched.discard(path)
                started = time.perf_counter()
                ok, output = run_block(block, folder, env)
                ran += 1
                print(f"{'ok  ' if ok else 'FAIL'} {where} ({time.perf_counter() - started:.1f} s)",
                      flush=True)
                if not ok:
                    failures.append((where, output))
    finally:
        if args.keep:
            print(f"folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for where, reason in skipped:
        print(f"skipped {where}: {reason}")
    for where, output in failures:
        print(f"\n---- FAILED {where}\n{output}", file=sys.stderr)
    print(f"docs check: {ran} blocks run, {len(failures)} failed, {len(skipped)} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
