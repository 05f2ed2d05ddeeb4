"""``rsseg demo``: the whole pipeline on a synthetic scene with the bundled weights.

Synthesise a scene and its labels, predict a class raster (COG) with the
bundled network, polygonize it into a GeoPackage, score it against the labels
and draw a quicklook (image | prediction | labels). Every stage is the same
library code the commands use, streamed window by window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.atomic import check_folder_creatable, make_folders
from rsseg.errors import OutputError

DEMO_SEED = 7  # not among the seeds the bundled weights were trained or validated on
QUICKLOOK_PX = 600  # longest side of each quicklook panel


@dataclass
class DemoFiles:
    out_dir: Path
    scene: Path = field(init=False)
    labels: Path = field(init=False)
    classes: Path = field(init=False)
    vectors: Path = field(init=False)
    score_json: Path = field(init=False)
    quicklook: Path = field(init=False)

    def __post_init__(self):
        d = self.out_dir
        self.scene, self.labels = d / "scene.tif", d / "labels.tif"
        self.classes, self.vectors = d / "classes.tif", d / "classes.gpkg"
        self.score_json, self.quicklook = d / "score.json", d / "quicklook.png"


def run_demo(out_dir: str | Path, model: str = "bafnet", weights: str | None = None,
             size: int = 1024, seed: int = DEMO_SEED, device: str = "auto",
             progress: str = "bar", say: Callable[[str], None] = print) -> dict:
    """Run every stage into ``out_dir`` (created; the demo's own files are replaced).

    ``weights`` None uses the weights bundled for ``model``. Returns a summary
    with the paths, the score report and the checkpoint note.
    """
    _check_model(model, weights)  # a bad name or checkpoint fails before anything is written
    files = _prepare_dir(Path(out_dir))
    from rsseg.synth.scene import write_synthetic_scene

    say(f"1/5 synthesising a {size}x{size} scene (seed {seed}) -> {files.scene}")
    write_synthetic_scene(files.scene, size, size, seed=seed, labels_path=files.labels,
                          overwrite=True, progress=progress)
    predictor = _predict(files, model, weights, device, progress, say)
    from rsseg.vectorize.streaming import vectorize_raster

    say(f"3/5 vectorizing -> {files.vectors}")
    vectors = vectorize_raster(files.classes, files.vectors, overwrite=True, progress=progress)
    from rsseg.score.rasters import score_rasters
    from rsseg.score.report import format_table, write_json

    say(f"4/5 scoring against the synthetic labels -> {files.score_json}")
    # The ISPRS papers' convention: clutter is scored (OA) but left out of the means.
    report = score_rasters(files.classes, files.labels, exclude=("clutter",),
                           progress_mode=progress)
    write_json(report, files.score_json)
    say(f"5/5 quicklook (image | prediction | labels) -> {files.quicklook}")
    write_quicklook(files.scene, files.classes, files.labels, files.quicklook, predictor.classes)
    return {"files": {k: str(v) for k, v in vars(files).items()}, "report": report,
            "table": format_table(report), "features": vectors["features"],
            "weights": predictor.source, "note": predictor.note, "model": model}


def _check_model(model: str, weights) -> None:
    from rsseg.checkpoint import load_checkpoint
    from rsseg.predict.load import check_model_name, weights_file

    check_model_name(model)
    path = weights_file(model, weights)  # None: random weights
    if path is not None:
        load_checkpoint(path)


def _prepare_dir(out: Path) -> DemoFiles:
    if out.exists() and not out.is_dir():
        raise OutputError("demo output is a file, not a directory", out)
    check_folder_creatable(out, out)
    make_folders(out)
    return DemoFiles(out)


def _predict(files: DemoFiles, model: str, weights, device, progress, say):
    from rsseg.io.scene import Scene
    from rsseg.predict.engine import predict_scene
    from rsseg.predict.load import load_predictor
    from rsseg.predict.settings import PredictSettings

    scene = Scene(files.scene)
    predictor = load_predictor(model, weights, channels=scene.channels, device=device)
    say(f"2/5 predicting with {model} ({predictor.source}) -> {files.classes}")
    predict_scene(scene, files.classes, predictor,
                  PredictSettings(overwrite=True, progress=progress))
    return predictor


def _read_small(path: Path, bands: list[int], resampling) -> np.ndarray:
    """A decimated read (at most QUICKLOOK_PX on a side): never the full scene in memory."""
    import rasterio

    with rasterio.open(path) as ds:
        scale = min(1.0, QUICKLOOK_PX / max(ds.width, ds.height))
        shape = (len(bands), max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        return ds.read(bands, out_shape=shape, resampling=resampling)


def colourise(ids: np.ndarray, classes: ClassScheme) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in the class colours, nodata black."""
    table = np.zeros((256, 3), np.uint8)
    table[:classes.num_classes] = np.array(classes.colours, np.uint8)
    table[NODATA] = 0
    return table[ids]


def write_quicklook(scene: Path, classes_path: Path, labels: Path, out: Path,
                    classes: ClassScheme) -> Path:
    """PNG with the scene (false colour IR-R-G), the prediction and the labels side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    from rsseg.atomic import atomic_output

    image = _read_small(scene, [1, 2, 3], Resampling.average).astype(np.float32)
    lo, hi = np.percentile(image, 1), np.percentile(image, 99)
    image = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
    pred = colourise(_read_small(classes_path, [1], Resampling.nearest)[0], classes)
    truth = colourise(_read_small(labels, [1], Resampling.nearest)[0], classes)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    for ax, img, title in zip(axes, (image, pred, truth),
                              ("image (IR-R-G)", "prediction", "labels (synthetic truth)")):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    handles = [Patch(facecolor=np.array(c) / 255, edgecolor="0.3", label=n) for n, c in zip(classes.names,
                                                                      classes.colours)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_output(out, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
