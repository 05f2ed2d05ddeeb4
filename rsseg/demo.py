"""``rsseg demo``: the whole pipeline on a synthetic scene, then on a real image.

Synthesise a scene and its labels, predict a class raster (COG) with the
bundled network, polygonize it into a GeoPackage, score it against the labels
and draw a quicklook (image | prediction | labels). Then the same predict,
score and quicklook on the real satellite image shipped in ``rsseg/data/`` (a
crop of Dubai tile 7, credit Humans in the Loop / MBRSC) with the bundled
real-imagery weights trained without that tile (``baff_skipnet``, tag
``dubai-aerial-holdout7``; the ``dubai-aerial`` weights for users saw every tile, this
one included), so the score shown is one on an area the network never saw. Every
stage is the same library code the commands use, streamed window by window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.atomic import check_folder_creatable, make_folders
from rsseg.errors import ModelError, OutputError

DEMO_SEED = 7  # not among the seeds the bundled weights were trained or validated on
QUICKLOOK_PX = 600  # longest side of each quicklook panel
REAL_MODEL, REAL_TAG = "baff_skipnet", "dubai-aerial-holdout7"  # never saw tile 7
REAL_IMAGE = "dubai_tile7_part005.jpg"  # in rsseg/data/, with CREDIT.txt
REAL_MASK = "dubai_tile7_part005_mask.png"
REAL_CREDIT = "Humans in the Loop / MBRSC, CC0 1.0"


@dataclass
class DemoFiles:
    out_dir: Path
    scene: Path = field(init=False)
    labels: Path = field(init=False)
    classes: Path = field(init=False)
    vectors: Path = field(init=False)
    score_json: Path = field(init=False)
    quicklook: Path = field(init=False)
    real_labels: Path = field(init=False)
    real_classes: Path = field(init=False)
    real_score_json: Path = field(init=False)
    real_quicklook: Path = field(init=False)

    def __post_init__(self):
        d = self.out_dir
        self.scene, self.labels = d / "scene.tif", d / "labels.tif"
        self.classes, self.vectors = d / "classes.tif", d / "classes.gpkg"
        self.score_json, self.quicklook = d / "score.json", d / "quicklook.png"
        self.real_labels, self.real_classes = d / "real_labels.tif", d / "real_classes.tif"
        self.real_score_json = d / "real_score.json"
        self.real_quicklook = d / "real_quicklook.png"


def run_demo(out_dir: str | Path, model: str = "bafnet", weights: str | None = None,
             size: int = 1024, seed: int = DEMO_SEED, device: str = "auto",
             progress: str = "bar", say: Callable[[str], None] = print,
             real: bool = True) -> dict:
    """Run every stage into ``out_dir`` (created; the demo's own files are replaced).

    ``weights`` None uses the weights bundled for ``model``. ``real`` adds the
    shipped real image segmented by the bundled real-imagery weights. Returns a
    summary with the paths, the score reports and the checkpoint notes.
    """
    _check_model(model, weights)  # a bad name or checkpoint fails before anything is written
    real_weights = _real_weights() if real else None
    files = _prepare_dir(Path(out_dir))
    step = _Steps(8 if real else 5, say)
    from rsseg.synth.scene import write_synthetic_scene

    step(f"synthesising a {size}x{size} scene (seed {seed}) -> {files.scene}")
    write_synthetic_scene(files.scene, size, size, seed=seed, labels_path=files.labels,
                          overwrite=True, progress=progress)
    resolved = _predict(files.scene, files.classes, model, weights, device, progress, step)
    from rsseg.vectorize.streaming import vectorize_raster

    step(f"vectorizing -> {files.vectors}")
    vectors = vectorize_raster(files.classes, files.vectors, overwrite=True, progress=progress)
    from rsseg.score.rasters import score_rasters
    from rsseg.score.report import format_table, write_json

    step(f"scoring against the synthetic labels -> {files.score_json}")
    # The ISPRS papers' convention: clutter is scored (OA) but left out of the means.
    report = score_rasters(files.classes, files.labels, exclude=("clutter",),
                           progress_mode=progress)
    write_json(report, files.score_json)
    step(f"quicklook (image | prediction | labels) -> {files.quicklook}")
    write_quicklook(files.scene, files.classes, files.labels, files.quicklook, resolved.classes)
    summary = {"files": {k: str(v) for k, v in vars(files).items()}, "report": report,
               "table": format_table(report), "features": vectors["features"],
               "weights": resolved.source, "note": resolved.note, "model": model}
    if real:
        summary["real"] = _real_demo(files, real_weights, device, progress, step)
    return summary


class _Steps:
    """Numbered progress lines: ``3/8 vectorizing ...``."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.done, self.say = total, 0, say

    def __call__(self, message: str) -> None:
        self.done += 1
        self.say(f"{self.done}/{self.total} {message}")


def real_image_files() -> tuple[Path, Path, Path]:
    """The shipped real image, its colour-coded mask and its credit file."""
    from importlib import resources

    folder = Path(str(resources.files("rsseg") / "data"))
    return folder / REAL_IMAGE, folder / REAL_MASK, folder / "CREDIT.txt"


def _real_weights() -> Path:
    from rsseg.checkpoint import load_checkpoint
    from rsseg.weights.bundled import bundled_weights

    path = bundled_weights(REAL_MODEL, REAL_TAG)
    if path is None:
        raise ModelError(f"the real-imagery weights {REAL_MODEL}.{REAL_TAG}.pt are not "
                         "installed; run with --no-real")
    load_checkpoint(path)
    return path


def _real_demo(files: DemoFiles, weights: Path, device, progress, step) -> dict:
    """Predict the shipped real image, score it against its mask, draw the quicklook."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        # Known and expected: the JPEG and its mask have no georeferencing, so every
        # output keeps the pixel grid (said once in the summary instead of per file).
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.filterwarnings("ignore", message=".*no CRS; the output keeps the pixel grid")
        return _real_stages(files, weights, device, progress, step)


def _real_stages(files: DemoFiles, weights: Path, device, progress, step) -> dict:
    from rsseg.score.rasters import score_rasters
    from rsseg.score.report import format_table, write_json

    image, mask, credit = real_image_files()
    resolved = _predict(image, files.real_classes, REAL_MODEL, weights, device, progress, step)
    step(f"scoring the real image against its mask -> {files.real_score_json}")
    write_index_labels(mask, files.real_labels, resolved.classes)
    report = score_rasters(files.real_classes, files.real_labels, progress_mode=progress)
    write_json(report, files.real_score_json)
    step(f"quicklook of the real image (image | prediction | label) -> {files.real_quicklook}")
    write_quicklook(image, files.real_classes, files.real_labels, files.real_quicklook,
                    resolved.classes, titles=("image (RGB, Dubai tile 7)", "prediction",
                                              "label (Humans in the Loop)"))
    return {"report": report, "table": format_table(report), "weights": str(weights),
            "note": resolved.note, "image": str(image),
            "credit": f"image and label: {REAL_CREDIT}; see {credit}"}


def write_index_labels(mask: Path, out: Path, classes: ClassScheme) -> Path:
    """Decode a colour-coded mask (class colours; any other colour -> 255) to a GeoTIFF."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from rsseg.atomic import atomic_output
    from rsseg.io.colour_labels import read_colour_labels

    ids = read_colour_labels(mask, classes)
    profile = {"driver": "GTiff", "width": ids.shape[1], "height": ids.shape[0], "count": 1,
               "dtype": "uint8", "nodata": NODATA, "compress": "deflate"}
    with atomic_output(out, overwrite=True) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a mask may have no grid
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(ids, 1)
            dst.write_colormap(1, classes.colormap())
    return out


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


def _predict(image: Path, out: Path, model: str, weights, device, progress, step):
    from rsseg.io.scene import Scene
    from rsseg.predict.engine import predict_scene
    from rsseg.predict.load import load_predictor
    from rsseg.predict.settings import PredictSettings

    scene = Scene(image)
    resolved = load_predictor(model, weights, channels=scene.channels, device=device)
    step(f"predicting {image.name} with {model} ({resolved.source}) -> {out}")
    predict_scene(scene, out, resolved, PredictSettings(overwrite=True, progress=progress))
    return resolved


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


SYNTH_TITLES = ("image (IR-R-G)", "prediction", "labels (synthetic truth)")


def write_quicklook(scene: Path, classes_path: Path, labels: Path, out: Path,
                    classes: ClassScheme, titles: tuple[str, str, str] = SYNTH_TITLES) -> Path:
    """PNG with the scene (its first three bands), the prediction and the labels side by side."""
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
    for ax, img, title in zip(axes, (image, pred, truth), titles):
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
