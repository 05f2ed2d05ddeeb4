"""Bad-input matrix over every command, through the real CLI (issue 9).

Each row runs one command on one bad (or awkward) input. Error rows must give
a non-zero exit, exactly one stderr line naming the file and the problem, no
traceback, and leave nothing behind: no file at the final output path and no
temporary file in its directory. A few rows are documented successes (a scene
without CRS, smaller than a tile, all nodata, with NaN/inf): they check the
documented result instead. Rows run in-process through
:func:`rsseg.cli.run`; signals and --debug, through a real process, are in
test_process_stops.py. Their rows together put the line
"N cases, N clear errors, 0 partial outputs" in pytest's terminal summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import rasterio

from conftest import PLACES_PROPERTY, RSSEG, in_ci, record_reliability, rsseg_env
from reliability_inputs import (FAST_NET, PREDICT_FAST, full_disk, make_input_files,
                                read_only_dir)

# libtiff's default handler writes "_tiffWriteProc: No space left on device." straight to
# the C stderr when a GeoTIFF write hits a full disk (GDAL installs no handler there).
LIBTIFF_OWN_LINE = re.compile(r"^_?TIFF\w*: |^_tiff\w+: ")
SENTINEL = b"an older output that must survive\n"
# torch.load warns about the protocol of the malicious pickles before refusing them.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # case id -> {"error": bool, "clear": bool, "partial": bool}


@dataclass(frozen=True)
class Case:
    """One row: ``argv`` and ``says``/``outputs`` are templates over the input names plus
    ``out`` (a fresh directory), ``ro`` (read-only) and ``full`` (a full file system)."""

    id: str
    argv: tuple
    says: tuple = ()          # substrings of the error line: the file and the problem
    outputs: tuple = ()       # final output paths: absent after an error
    ok: Callable | None = None  # a documented success: checks the result instead
    exists: bool = False      # the first output exists beforehand (no --overwrite)
    marker: str | None = None  # a file whose existence would prove code ran
    # (evil.pt is a raw pickle: refused as "not a checkpoint"; evil_zip.pt, saved by
    # torch.save, as "refused: ... would need to run code". Neither runs its code.)
    process: bool = False     # run ``rsseg`` as a subprocess (GDAL prints from C there too)

    def __post_init__(self):
        if not all(isinstance(v, tuple) for v in (self.argv, self.says, self.outputs)):
            raise TypeError(f"{self.id}: argv, says and outputs must be tuples")


def _predict(src, out="{out}/c.tif", *more):
    return ("predict", src, "-o", out, *PREDICT_FAST, *more)


def _weights(src, model, weights):
    return ("predict", src, "-o", "{out}/c.tif", "--model", model, "--weights", weights,
            "--no-progress")


TRAIN = ("--model", FAST_NET, "--crop", "32", "--batch-size", "2", "--epochs", "1",
         "--steps-per-epoch", "1", "--min-class-pixels", "0", "--device", "cpu", "--no-progress")
BATCH = ("--model", FAST_NET, "--weights", "random", "--tile", "32", "--overlap", "8",
         "--workers", "1", "--no-progress")


def _train(images="{scene}", labels="{labels}", out="{out}/run", *more):
    """Validation on the training pair itself: one bad file is enough."""
    return ("train", "--images", images, "--labels", labels, "--val-images", images,
            "--val-labels", labels, "-o", out, *TRAIN, *more)


# ---- checks of the documented successes -------------------------------------------------------

def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.crs, ds.transform, ds.nodata


def no_crs_kept_grid(f, paths, err):
    data, crs, transform, _ = _read(paths[0])
    with rasterio.open(f["nocrs"]) as src:
        assert crs is None and transform == src.transform and data.shape == src.shape
    assert data.max() < 6 and "no CRS" in err


def nan_inf_masked(f, paths, err):
    data, _, _, nodata = _read(paths[0])
    assert nodata == 255
    for rows, cols in ((slice(0, 4), slice(0, 4)), (slice(10, 14), slice(20, 24)),
                       (slice(20, 22), slice(30, 32))):
        assert (data[rows, cols] == 255).all()
    assert (data == 255).sum() == 16 + 16 + 4 and data[data != 255].max() < 6


def all_nodata_out(f, paths, err):
    data, _, _, nodata = _read(paths[0])
    assert nodata == 255 and (data == 255).all()


def shape_of(name):
    def check(f, paths, err):
        data, crs, transform, _ = _read(paths[0])
        with rasterio.open(f[name]) as src:
            assert (data.shape, crs, transform) == (src.shape, src.crs, src.transform)
        assert data.max() < 6
    return check


def pixel_polygons(f, paths, err):
    """A class raster without CRS: polygons in its own coordinates, said once on stderr."""
    import pyogrio

    info = pyogrio.read_info(paths[0], layer="classes")
    assert info["features"] > 0 and info["crs"] is None
    assert err.count("no CRS") == 1


def polygons(count):
    def check(f, paths, err):
        import pyogrio

        info = pyogrio.read_info(paths[0], layer="classes")
        assert info["features"] == count and info["crs"] is not None
    return check


# ---- the matrix -------------------------------------------------------------------------------

def output_cases(cmd: str, argv: Callable, name: str) -> list[Case]:
    """Output directory missing / read-only / full, and output existing without --overwrite."""
    return [
        Case(f"{cmd}/output-folder-under-a-file", argv(f"{{not_a_dir}}/sub/{name}"),
             ("NOT_A_DIR", "is a file"), (f"{{not_a_dir}}/sub/{name}",)),
        Case(f"{cmd}/output-dir-read-only", argv(f"{{ro}}/{name}"), (name,),
             (f"{{ro}}/{name}",)),
        Case(f"{cmd}/output-exists", argv(f"{{out}}/{name}"), (name, "--overwrite"),
             (f"{{out}}/{name}",), exists=True),
        Case(f"{cmd}/disk-full", argv(f"{{full}}/{name}"), (name, "space"),
             (f"{{full}}/{name}",)),
    ]


def input_cases(cmd: str, argv: Callable, out: str, truncated: str) -> list[Case]:
    """The four unreadable inputs: missing, empty, text named .tif, truncated GeoTIFF
    (``truncated``: the truncated copy of the file the command expects)."""
    return [Case(f"{cmd}/{name}", argv(f"{{{key}}}"), (f"{{{key}}}", problem), (out,),
                 process=name == "truncated")
            for name, key, problem in (("missing", "missing", "not found"),
                                       ("empty", "empty", "not a"), ("text", "text", "not a"),
                                       ("truncated", truncated, "truncated"))]


def predict_cases() -> list[Case]:
    out = ("{out}/c.tif",)
    return [
        *input_cases("predict", _predict, "{out}/c.tif", "truncated"),
        Case("predict/truncated-small", _predict("{truncated_scene}"),
             ("{truncated_scene}", "truncated"), out),
        Case("predict/corrupt-block", _predict("{corrupt_scene}"),
             ("{corrupt_scene}", "cannot read"), out),
        Case("predict/no-crs", _predict("{nocrs}"), outputs=out, ok=no_crs_kept_grid),
        Case("predict/nan-inf", _predict("{nan_inf}"), outputs=out, ok=nan_inf_masked),
        Case("predict/all-nodata", _predict("{all_nodata}"), outputs=out, ok=all_nodata_out),
        Case("predict/smaller-than-tile", _predict("{small}"), outputs=out, ok=shape_of("small")),
        Case("predict/one-pixel", _predict("{one_pixel}"), outputs=out,
             ok=shape_of("one_pixel")),
        Case("predict/wrong-band-count", _weights("{four_bands}", FAST_NET, "{ckpt_3bands}"),
             ("{ckpt_3bands}", "3 bands", "provides 4"), out),
        Case("predict/dsm-other-grid", _predict("{scene}", "{out}/c.tif", "--dsm",
                                                "{dsm_other_grid}"),
             ("{dsm_other_grid}", "grid"), out),
        Case("predict/unknown-model", _weights("{scene}", "no_such_net", "random"),
             ("no_such_net", "unknown model"), out),
        Case("predict/checkpoint-other-network", _weights("{scene}", "bafnet", "{ckpt_3bands}"),
             ("{ckpt_3bands}", FAST_NET), out),
        Case("predict/checkpoint-other-class-count", _weights("{scene}", FAST_NET,
                                                              "{ckpt_misfit}"),
             ("{ckpt_misfit}", "do not fit"), out),
        Case("predict/checkpoint-class-names-mismatch", _weights("{scene}", FAST_NET,
                                                                 "{ckpt_4names}"),
             ("{ckpt_4names}", "class"), out),
        Case("predict/not-a-checkpoint", _weights("{scene}", FAST_NET, "{not_ckpt}"),
             ("{not_ckpt}", "not a checkpoint"), out),
        Case("predict/pickle-runs-code", _weights("{scene}", FAST_NET, "{evil}"),
             ("{evil}", "checkpoint"), out, marker="PWNED"),
        Case("predict/pickle-runs-code-zip", _weights("{scene}", FAST_NET, "{evil_zip}"),
             ("{evil_zip}", "refused"), out, marker="PWNED"),
        Case("predict/unknown-weights-tag", _weights("{scene}", FAST_NET, "no-such-tag"),
             ("no-such-tag", "isprs-synthetic"), out),
        Case("predict/onnx-not-a-model", ("predict", "{scene}", "-o", "{out}/c.tif", "--backend",
                                          "onnx", "--weights", "{not_onnx}", "--no-progress"),
             ("{not_onnx}", "ONNX"), out),
        *output_cases("predict", lambda o: _predict("{scene}", o), "c.tif"),
    ]


def vectorize_cases() -> list[Case]:
    def vec(src, out="{out}/v.gpkg", *more):
        return ("vectorize", src, "-o", out, "--no-progress", *more)

    out = ("{out}/v.gpkg",)
    return [
        *input_cases("vectorize", vec, "{out}/v.gpkg", "truncated_classes"),
        Case("vectorize/corrupt-block", vec("{corrupt_classes}"), ("corrupt_classes.tif",
                                                                  "failed"), out),
        Case("vectorize/float-raster", vec("{float_raster}"), ("{float_raster}", "integer"), out),
        Case("vectorize/no-crs", vec("{classes_nocrs}"), outputs=out, ok=pixel_polygons),
        Case("vectorize/all-nodata", vec("{classes_all_nodata}"), outputs=out, ok=polygons(0)),
        Case("vectorize/one-pixel", vec("{classes_one_pixel}"), outputs=out, ok=polygons(1)),
        Case("vectorize/probs-other-grid", vec("{classes}", "{out}/v.gpkg", "--probs",
                                               "{probs_other_grid}"),
             ("{probs_other_grid}", "pixels"), out),
        *output_cases("vectorize", lambda o: vec("{classes}", o), "v.gpkg"),
    ]


def score_cases() -> list[Case]:
    def score(pred="{classes}", label="{labels}", *more):
        return ("score", pred, label, "--json", "{out}/r.json", "--no-progress", *more)

    out = ("{out}/r.json",)
    return [
        *input_cases("score-prediction", lambda p: score(p), "{out}/r.json",
                      "truncated_classes"),
        *input_cases("score-label", lambda p: score("{classes}", p), "{out}/r.json",
                     "truncated_labels"),
        Case("score/corrupt-block", score("{corrupt_classes}"), ("corrupt_classes.tif", "failed"),
             out),
        Case("score/label-other-grid", score("{classes}", "{labels_other_grid}"),
             ("{labels_other_grid}", "grid"), out),
        Case("score/label-unknown-values", score("{classes}", "{labels_unknown}"),
             ("{labels_unknown}", "no class"), out),
        Case("score/label-unknown-colours", score("{classes}", "{labels_rgb_unknown}",
                                                  "--label-format", "isprs-rgb"),
             ("{labels_rgb_unknown}", "no class"), out),
        Case("score/scheme-not-json", score("{classes}", "{labels}", "--classes",
                                            "{scheme_not_json}"),
             ("{scheme_not_json}", "not valid JSON"), out),
        Case("score/unknown-scheme-name", score("{classes}", "{labels}", "--classes", "no_such"),
             ("no_such", "unknown class scheme"), out),
        Case("score/all-nodata-prediction", score("{classes_all_nodata}"),
             ("{classes_all_nodata}", "nodata"), out),
        *output_cases("score", lambda o: ("score", "{classes}", "{labels}", "--json", o,
                                          "--no-progress"), "r.json"),
    ]


def export_cases() -> list[Case]:
    def export(ckpt, out="{out}/m.onnx"):
        return ("export", ckpt, "-o", out, "--no-progress")

    out = ("{out}/m.onnx",)
    return [
        Case("export/missing", export("{missing}"), ("{missing}", "not found"), out),
        Case("export/empty", export("{empty}"), ("{empty}", "not a checkpoint"), out),
        Case("export/not-a-checkpoint", export("{not_ckpt}"), ("{not_ckpt}", "not a checkpoint"),
             out),
        Case("export/pickle-runs-code", export("{evil}"), ("{evil}", "checkpoint"), out,
             marker="PWNED"),
        Case("export/checkpoint-other-class-count", export("{ckpt_misfit}"),
             ("{ckpt_misfit}", "do not fit"), out),
        Case("export/checkpoint-class-names-mismatch", export("{ckpt_4names}"),
             ("{ckpt_4names}", "class"), out),
        *output_cases("export", lambda o: export("{ckpt_3bands}", o), "m.onnx"),
    ]


def synth_cases() -> list[Case]:
    return output_cases("synth", lambda o: ("synth", "-o", o, "--size", "40x30",
                                            "--no-progress"), "s.tif")


def train_cases() -> list[Case]:
    out = ("{out}/run/best.pt",)
    return [
        Case("train/missing-image", _train("{missing}"), ("{missing}", "not found"), out),
        Case("train/text-image", _train("{text}"), ("{text}", "raster"), out),
        Case("train/truncated-image", _train("{truncated_scene}"),
             ("{truncated_scene}", "truncated"), out),
        Case("train/truncated-label", _train("{scene}", "{truncated_labels}"),
             ("{truncated_labels}", "truncated"), out, process=True),
        Case("train/label-other-grid", _train("{scene}", "{labels_other_grid}"),
             ("{labels_other_grid}", "grid"), out),
        Case("train/label-unknown-values", _train("{scene}", "{labels_unknown}"),
             ("{labels_unknown}", "not class"), out),
        Case("train/label-unknown-colours", _train("{scene}", "{labels_rgb_unknown}",
                                                   "{out}/run", "--label-format", "isprs-rgb"),
             ("{labels_rgb_unknown}", "colour"), out),
        Case("train/label-other-size", _train("{scene}", "{labels_smaller}"),
             ("{labels_smaller}", "{scene}", "64x40 px"), out),
        Case("train/scheme-not-json", _train() + ("--classes", "{scheme_not_json}"),
             ("{scheme_not_json}", "not valid JSON"), out),
        Case("train/scheme-duplicate-names", _train() + ("--classes", "{scheme_dup_names}"),
             ("{scheme_dup_names}", "duplicate class name"), out),
        Case("train/scheme-duplicate-colours", _train() + ("--classes", "{scheme_dup_colours}"),
             ("{scheme_dup_colours}", "duplicate class colour"), out),
        Case("train/scheme-too-many-classes", _train() + ("--classes", "{scheme_too_many}"),
             ("{scheme_too_many}", "at most 255"), out),
        Case("train/label-unknown-colours-in-scheme",
             _train("{scene}", "{labels_rgb_unknown}", "{out}/run", "--classes", "isprs",
                    "--label-format", "rgb"),
             ("{labels_rgb_unknown}", "#0C2238", "25 px"), out),
        Case("train/empty-dataset-folder", ("train", "--data", "{empty_dataset}",
                                            "--val-pattern", "x*", "-o", "{out}/run", *TRAIN),
             ("empty_dataset", "no training images"), out),
        Case("train/unknown-model", _train() + ("--model", "no_such_net"),
             ("no_such_net", "unknown model"), out),
        Case("train/pretrained-pickle-runs-code", _train() + ("--pretrained", "{evil}"),
             ("{evil}", "safely"), out, marker="PWNED"),
        Case("train/run-dir-under-a-file", _train(out="{not_a_dir}/run"), ("NOT_A_DIR",),
             ("{not_a_dir}/run",)),
        Case("train/run-dir-read-only", _train(out="{ro}/run"), ("run",), ("{ro}/run",)),
    ]


def batch_cases() -> list[Case]:
    def batch(inputs, out="{out}/b", *more):
        return ("batch", inputs, "-o", out, *BATCH, *more)

    return [
        Case("batch/glob-matches-nothing", batch("{out}/nothing*.tif"),
             ("nothing*.tif", "matches no file"), ("{out}/b",)),
        Case("batch/only-unreadable-tiles", batch("{text}"), ("text.tif",), ("{out}/b",)),
        Case("batch/unknown-model", batch("{scene}", "{out}/b", "--model", "no_such_net"),
             ("no_such_net", "unknown model"), ("{out}/b/scene.tif",)),
        Case("batch/pickle-runs-code", ("batch", "{scene}", "-o", "{out}/b", "--model", FAST_NET,
                                        "--weights", "{evil}", "--no-progress"),
             ("{evil}", "checkpoint"), ("{out}/b/scene.tif",), marker="PWNED"),
        Case("batch/output-under-a-file", batch("{scene}", "{not_a_dir}/b"),
             ("NOT_A_DIR", "is a file"), ("{not_a_dir}/b",)),
        Case("batch/output-read-only", batch("{scene}", "{ro}/b"), ("b",), ("{ro}/b",)),
        # --band-file/--dsm as predict takes them: predict's messages for the same mistakes
        Case("batch/dsm-pattern-finds-no-file",
             batch("{scene}", "{out}/b", "--dsm", "{out}/dsm/{{stem}}_dsm.tif"),
             ("{out}/dsm/scene_dsm.tif", "DSM file not found"), ("{out}/b",)),
        Case("batch/dsm-other-grid", batch("{scene}", "{out}/b", "--dsm", "{dsm_other_grid}"),
             ("{dsm_other_grid}", "--align"), ("{out}/b",)),
        Case("batch/band-file-band-missing", batch("{scene}", "{out}/b", "--band-file",
                                                   "{four_bands}:7"),
             ("{four_bands}", "band 7 does not exist"), ("{out}/b",)),
        Case("batch/scheduler-refused", batch("{scene}", "{out}/b", "--scheduler",
                                              "tcp://127.0.0.1:1"),
             ("tcp://127.0.0.1:1", "connection refused"), ("{out}/b",)),
    ] + ([] if _has_gpu() else [
        Case("batch/device-cuda-without-gpu", batch("{scene}", "{out}/b", "--device", "cuda"),
             ("--device cuda", "no CUDA GPU"), ("{out}/b",))])


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def other_cases() -> list[Case]:
    return [
        Case("models/unknown-model", ("models", "no_such_net"), ("no_such_net", "unknown model")),
        Case("demo/unknown-model", ("demo", "--out", "{out}/d", "--model", "no_such_net",
                                    "--size", "64", "--no-progress"),
             ("no_such_net", "unknown model"), ("{out}/d/classes.tif",)),
        Case("demo/not-a-checkpoint", ("demo", "--out", "{out}/d", "--model", FAST_NET,
                                       "--weights", "{not_ckpt}", "--size", "64", "--no-progress"),
             ("{not_ckpt}", "not a checkpoint"), ("{out}/d/classes.tif",)),
        Case("demo/out-under-a-file", ("demo", "--out", "{not_a_dir}/d", "--size", "64",
                                       "--no-progress"), ("NOT_A_DIR",), ("{not_a_dir}/d",)),
    ]


CASES = (predict_cases() + vectorize_cases() + score_cases() + export_cases() + synth_cases()
         + train_cases() + batch_cases() + other_cases())


# ---- running a row ----------------------------------------------------------------------------

@dataclass
class Places:
    read_only: object
    full: object  # None where no tmpfs can be mounted: ENOSPC is injected instead

    def described(self) -> dict[str, str]:
        return {"read_only": self.read_only.how, "full": self.full.how if self.full else
                "ENOSPC injected into the raw writer"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_input_files(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("places")
    made = Places(read_only_dir(base), full_disk(base))
    yield made
    for place in (made.read_only, made.full):
        if place is not None:
            place.release()


def _listing(d: Path) -> set[str]:
    return set(os.listdir(d)) if d.is_dir() else set()


def _named(text: str) -> str:
    """What an error line must contain to name ``text``: a path's file name."""
    return Path(text).name if os.sep in text else text


def _inject_enospc(monkeypatch):
    """Fallback without a tmpfs: the raw band writer hits a full disk."""
    import errno

    import rsseg.predict.sinks as pw

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pw.os, "pwrite", full)


def error_lines(err: str) -> list[str]:
    """stderr lines, less those libtiff prints itself (on a full disk) that Python cannot catch."""
    return [line for line in err.splitlines()
            if line.strip() and not LIBTIFF_OWN_LINE.match(line)]


def _check_error(case, rc, err, outputs, before, fmt) -> tuple[bool, bool]:
    """(clear, partial) for an error row."""
    lines = error_lines(err)
    says = [_named(fmt(s)) for s in case.says if fmt(s)]
    clear = (rc != 0 and len(lines) == 1 and "Traceback" not in err
             and lines[0].startswith("rsseg: error: ")
             and all(s.lower() in lines[0].lower() for s in says))
    left = {d: _listing(d) - names for d, names in before.items()}
    partial = any(left.values()) or any(o.exists() for o in outputs[1 if case.exists else 0:])
    if case.exists:
        partial |= outputs[0].read_bytes() != SENTINEL
    return clear, partial


def _run_case(case, files, places, tmp_path, capfd, monkeypatch):
    from rsseg.cli import run

    out = tmp_path / "out"
    out.mkdir()
    full = places.full.path if places.full is not None else out
    if places.full is None and "{full}" in " ".join(case.argv):
        if case.argv[0] != "predict":
            why = "no tmpfs can be mounted here; ENOSPC is injected for predict only"
            if in_ci():  # CI must run every row: give its runner root and CAP_SYS_ADMIN
                pytest.fail(f"{why} (CI=true: a skipped row is a failure)")
            pytest.skip(why)
        _inject_enospc(monkeypatch)
    ns = {k: str(v) for k, v in files.items()}
    ns.update(out=str(out), ro=str(places.read_only.path), full=str(full))

    def fmt(s):
        return str(s).format(**ns)

    argv = [fmt(a) for a in case.argv]
    outputs = [Path(fmt(o)) for o in case.outputs]
    if case.exists:
        outputs[0].write_bytes(SENTINEL)
    watched = {out, Path(ns["ro"]), full, Path(ns["scene"]).parent}
    watched |= {o.parent for o in outputs if o.parent.is_dir()}
    before = {d: _listing(d) for d in watched}
    if case.process:
        done = subprocess.run(RSSEG + argv, capture_output=True, text=True, env=rsseg_env(),
                              timeout=300)
        return done.returncode, done.stderr, outputs, before, fmt
    capfd.readouterr()
    rc = run(argv)
    _, err = capfd.readouterr()
    return rc, err, outputs, before, fmt


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(case, files, places, tmp_path, capfd, monkeypatch, record_property):
    record_property(PLACES_PROPERTY, json.dumps(places.described()))
    rc, err, outputs, before, fmt = _run_case(case, files, places, tmp_path, capfd, monkeypatch)
    if case.ok is not None:
        record_reliability(record_property, case.id, error=False, clear=False, partial=False)
        assert rc == 0, err
        assert "Traceback" not in err
        assert all(o.exists() for o in outputs)
        assert not any(".part" in n for d in before for n in _listing(d)), "temporary files left"
        case.ok(files, outputs, err)
        record_reliability(record_property, case.id, error=False, clear=True, partial=False)
        return
    clear, partial = _check_error(case, rc, err, outputs, before, fmt)
    record_reliability(record_property, case.id, error=True, clear=clear, partial=partial,
            line=" | ".join(error_lines(err)))
    assert rc not in (0, None), "an error row exited 0"
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert clear, f"unclear message {lines[0]!r}; expected it to name {case.says}"
    assert not partial, {str(d): sorted(_listing(d) - n) for d, n in before.items()}
    if case.marker:
        assert not (Path(files["evil"]).parent / case.marker).exists(), "the pickle ran code"
