"""``rsseg predict`` as one library call: check, open, load, predict (and vectorize).

:func:`predict_file` is what the command runs (and so what the QGIS plugin runs,
through the command): the output paths are checked before anything is read, the
scene is opened with its band selection, the predictor is loaded by
:func:`rsseg.predict.load.load_predictor`, and
:func:`rsseg.predict.engine.run_checked` writes the outputs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Callable, Iterator

from rsseg.errors import InputError

from .engine import PredictResult, run_checked
from .load import load_predictor, set_zoom
from .settings import AUTO, PredictSettings, check_outputs, check_settings
from .zoom import auto_zoom


def predict_file(input, output, settings: PredictSettings, *, model: str | None = None,
                 weights: str | os.PathLike | None = None, backend: str | None = None,
                 device: str = "auto", seed: int = 0, bands: list[int] | None = None,
                 band_files=(), dsm=None, align: bool = False, stac: bool = False,
                 tta: str = "none", zoom: float | str = 1.0,
                 say: Callable[[str], None] = print) -> PredictResult:
    """Predict ``input`` into ``output`` (and ``settings.probs``/``settings.vector``).

    ``bands``/``band_files``/``dsm``/``align`` choose and stack the bands as
    :class:`rsseg.io.scene.Scene` does; ``model``/``weights``/``backend``/``device``/
    ``seed``/``tta``/``zoom`` go to :func:`~rsseg.predict.load.load_predictor`; ``zoom``
    ``"auto"`` is the scene's pixel size over the one the checkpoint was trained on
    (:func:`rsseg.predict.zoom.auto_zoom`; 1, with a note, when either is unknown).
    ``stac`` also writes a STAC Item beside the output (:mod:`rsseg.io.stac`). ``say`` receives the notes a
    user should read (what the weights are, warnings) as single lines.
    """
    from rsseg.io.scene import Scene, pixel_size_m

    check_settings(settings)
    inputs = [input, dsm] + [getattr(f, "path", f) for f in band_files]
    check_outputs(output, settings, inputs)
    if stac:
        from rsseg.io.stac import check_item_path

        check_item_path(output, settings.overwrite)
    with relay_warnings(say, "always"):  # every one: they describe this input
        scene = Scene(input, bands=bands, dsm=dsm, align=align, band_files=band_files)
    predictor = load_predictor(model, weights, channels=scene.channels, device=device,
                               backend=backend, seed=seed, input_bands=scene.names, tta=tta,
                               zoom=1.0 if zoom == AUTO else zoom)
    if zoom == AUTO:
        try:
            zoom, line = auto_zoom(pixel_size_m(scene.crs, scene.transform), predictor.gsd_m)
        except ValueError as exc:
            raise InputError(str(exc), input) from None
        say(line)
        set_zoom(predictor, zoom)
    for note in predictor.notes:
        say(note)
    with relay_warnings(say, "default"):  # once each: reader threads reopen the files
        result = run_checked(scene, output, predictor, settings)
    result.tta, result.zoom = tta, zoom
    if stac:
        from rsseg.io.stac import provenance, write_output_item

        result.stac = write_output_item(
            output, classes_raster=output, confidence=settings.probs, vector=settings.vector,
            classes=predictor.classes, overwrite=settings.overwrite,
            provenance=provenance(predictor.model_name, weights, input, tta, zoom))
    return result


@contextlib.contextmanager
def relay_warnings(say: Callable[[str], None], action: str) -> Iterator[None]:
    """Library warnings raised inside, each as one ``warning: ...`` line through ``say``."""
    with warnings.catch_warnings():
        warnings.simplefilter(action)
        warnings.showwarning = lambda message, *rest, **kw: say(f"warning: {message}")
        yield
