"""rsseg:predict, rsseg:vectorize and rsseg:score run with processing.run in real QGIS,
checked against the rsseg CLI run directly with the same settings."""

import json
import os

import numpy as np
import pytest
from qgis.core import (QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsVectorLayer)

import processing
from osgeo import gdal, osr
from qgis_helpers import (EPSG, ISPRS_COLOURS, ISPRS_NAMES, MODEL, ORIGIN, OVERLAP, PIXEL, TILE,
                          assert_class_style, class_pattern, grid, make_scene, predict_params,
                          read_band, run_cli, write_classes_like)


class RecordingFeedback(QgsProcessingFeedback):
    """A real feedback that also keeps what the algorithm reported."""

    def __init__(self, cancel_after_progress=False):
        super().__init__()
        self.progress = []
        self.infos = []
        self.debug = []
        self.commands = []
        self.cancel_after_progress = cancel_after_progress
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value):
        self.progress.append(value)
        if self.cancel_after_progress and 0 < value < 100:
            self.cancel()

    def pushInfo(self, info):  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)

    def pushDebugInfo(self, info):  # noqa: N802
        self.debug.append(info)
        super().pushDebugInfo(info)

    def pushCommandInfo(self, info):  # noqa: N802
        self.commands.append(info)
        super().pushCommandInfo(info)


@pytest.fixture(scope="module")
def class_raster(scene, tmp_path_factory):
    """A many-class raster on the scene's grid (an untrained network predicts ~one class)."""
    return write_classes_like(tmp_path_factory.mktemp("classes") / "classes.tif", scene,
                              class_pattern())


def class_names_of(path):
    """{id: name} from the CLASS_<id> items rsseg writes into band 1's metadata."""
    dataset = gdal.Open(str(path))  # keep it referenced while its band is used
    metadata = dataset.GetRasterBand(1).GetMetadata()
    return {int(k[6:]): v for k, v in metadata.items() if k.startswith("CLASS_")}


def assert_scene_crs(layer):
    assert layer.isValid(), layer.source()
    assert layer.crs().authid() == f"EPSG:{EPSG}"


def test_provider_lists_the_three_algorithms(provider):
    ids = sorted(a.id() for a in provider.algorithms())
    assert ids == ["rsseg:predict", "rsseg:score", "rsseg:vectorize"]
    predict = provider.algorithm("predict")
    names = [p.name() for p in predict.parameterDefinitions()]
    assert names == ["INPUT", "MODEL", "WEIGHTS", "DSM", "TILE", "OVERLAP", "TTA", "ZOOM",
                     "OUTPUT", "VECTOR_OUTPUT"]
    assert predict.parameterDefinition("TTA").options() == ["none", "flip", "d4"]
    zoom = predict.parameterDefinition("ZOOM")
    assert (zoom.defaultValue(), zoom.minimum(), zoom.maximum()) == (1.0, 0.0, 4.0)  # 0: auto
    assert "lwganet_l0" in predict.parameterDefinition("MODEL").options()


@pytest.fixture(scope="module")
def plugin_prediction(provider, scene, tmp_path_factory):
    """One rsseg:predict run through Processing, results loaded into the project as
    QGIS does after a run from the toolbox."""
    out = tmp_path_factory.mktemp("plugin") / "classes.tif"
    feedback = RecordingFeedback()
    project = QgsProject.instance()
    project.clear()
    result = processing.runAndLoadResults("rsseg:predict", predict_params(scene, out),
                                          feedback=feedback)
    # What the project holds, noted before the layers go with project.clear().
    layers = [{"source": l.source(), "raster": isinstance(l, QgsRasterLayer),
               "valid": l.isValid(), "crs": l.crs().authid(),
               "size": (l.width(), l.height()) if isinstance(l, QgsRasterLayer) else None,
               "renderer": l.renderer().type(),
               "classes": [(e.value, e.color.name(), e.color.alpha(), e.label)
                           for e in getattr(l.renderer(), "classes", lambda: [])()]}
              for l in project.mapLayers().values()]
    project.clear()
    return {"result": result, "out": out, "feedback": feedback, "layers": layers}


def test_predict_matches_the_cli(plugin_prediction, cli_prediction, scene):
    result, out = plugin_prediction["result"], plugin_prediction["out"]
    assert result["OUTPUT"] == str(out)
    assert result["VECTOR_OUTPUT"] is None
    np.testing.assert_array_equal(read_band(out), read_band(cli_prediction))
    assert grid(out) == grid(cli_prediction) == grid(scene)


def test_predict_output_is_added_to_the_project_with_class_colours(plugin_prediction):
    layers = plugin_prediction["layers"]
    assert [l["source"] for l in layers] == [str(plugin_prediction["out"])]
    raster = layers[0]
    assert raster["raster"] and raster["valid"]
    assert raster["crs"] == f"EPSG:{EPSG}"
    assert raster["size"] == (300, 200)
    assert raster["renderer"] == "paletted"
    # rsseg's classes only (not the 256 colour table entries), each with its colour
    # and its name from the COG's metadata.
    names = class_names_of(plugin_prediction["out"])
    assert len(names) >= 2
    assert [(value, label) for value, _, _, label in raster["classes"]] == sorted(names.items())
    assert len({colour for _, colour, _, _ in raster["classes"]}) == len(names)
    assert all(alpha == 255 for _, _, alpha, _ in raster["classes"])


def test_predict_progress_comes_from_rsseg(plugin_prediction):
    feedback = plugin_prediction["feedback"]
    assert max(feedback.progress) == 100
    assert any(0 < p < 100 for p in feedback.progress)
    assert any(info.startswith("rsseg predict: done") for info in feedback.infos)


def test_predict_vector_output_is_loaded_styled(provider, scene, tmp_path):
    out, polygons = tmp_path / "classes.tif", tmp_path / "classes.gpkg"
    project = QgsProject.instance()
    project.clear()
    result = processing.runAndLoadResults(
        "rsseg:predict", predict_params(scene, out, VECTOR_OUTPUT=str(polygons)),
        feedback=RecordingFeedback())
    assert result["VECTOR_OUTPUT"].split("|")[0] == str(polygons)
    layers = list(project.mapLayers().values())
    vectors = [l for l in layers if isinstance(l, QgsVectorLayer)]
    assert len(layers) == 2 and len(vectors) == 1, [l.source() for l in layers]
    assert vectors[0].source() == result["VECTOR_OUTPUT"]
    assert_scene_crs(vectors[0])
    assert vectors[0].featureCount() > 0
    assert vectors[0].geometryType() == 2  # polygons
    assert_class_style(vectors[0])  # the GeoPackage's class style
    project.clear()


def test_raster_and_polygons_of_one_run_load_styled(provider, cli_prediction, rsseg_exe,
                                                    tmp_path):
    """What rsseg:predict does with OUTPUT and VECTOR_OUTPUT after rsseg has written
    them, fed to Processing's own result handling (independent of `predict --vector`)."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsProcessingContext

    polygons = tmp_path / "classes.gpkg"
    run_cli(rsseg_exe, "vectorize", cli_prediction, "-o", polygons)
    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    for path in (cli_prediction, str(polygons)):
        context.addLayerToLoadOnCompletion(
            path, QgsProcessingContext.LayerDetails("output", project, "output"))
    algorithm = provider.algorithm("predict").create()
    uris = algorithm.load_outputs_styled(context, raster=cli_prediction, vectors=[str(polygons)])
    assert uris == [f"{polygons}|layername={polygon_layer(polygons)}"]
    assert handleAlgorithmResults(algorithm, context, QgsProcessingFeedback())
    layers = {l.source(): l for l in project.mapLayers().values()}
    assert sorted(layers) == sorted([cli_prediction, uris[0]])
    raster = layers[cli_prediction]
    assert raster.renderer().type() == "paletted"
    assert [c.label for c in raster.renderer().classes()] == ISPRS_NAMES
    assert [c.color.getRgb()[:3] for c in raster.renderer().classes()] == ISPRS_COLOURS
    assert_class_style(layers[uris[0]])
    project.clear()


def polygon_layer(path):
    dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    return [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())
            if dataset.GetLayer(i).GetGeomType() != 0][0]


def test_vectorize_matches_the_cli(provider, class_raster, rsseg_exe, tmp_path):
    reference = tmp_path / "cli.gpkg"
    run_cli(rsseg_exe, "vectorize", class_raster, "-o", reference)
    out = tmp_path / "plugin.gpkg"
    project = QgsProject.instance()
    project.clear()
    result = processing.runAndLoadResults("rsseg:vectorize",
                                          {"INPUT": class_raster, "OUTPUT": str(out)},
                                          feedback=RecordingFeedback())
    assert result["OUTPUT"].split("|")[0] == str(out)
    layer = QgsVectorLayer(result["OUTPUT"], "polygons", "ogr")
    ref = QgsVectorLayer(result["OUTPUT"].replace(str(out), str(reference)), "reference", "ogr")
    assert_scene_crs(layer)
    assert layer.featureCount() == ref.featureCount() > 6
    assert layer.fields().names() == ref.fields().names()
    assert layer.extent() == ref.extent()
    loaded = list(project.mapLayers().values())
    assert [l.source() for l in loaded] == [result["OUTPUT"]]
    assert_class_style(loaded[0])  # the class colours
    project.clear()


def test_vectorize_passes_simplify_and_min_area(provider, class_raster, rsseg_exe, tmp_path):
    plain, reference = tmp_path / "plain.gpkg", tmp_path / "cli.gpkg"
    run_cli(rsseg_exe, "vectorize", class_raster, "-o", plain)
    run_cli(rsseg_exe, "vectorize", class_raster, "-o", reference, "--simplify", "1.0",
            "--min-area", "20.0")
    out = tmp_path / "plugin.gpkg"
    result = processing.run("rsseg:vectorize", {"INPUT": class_raster, "OUTPUT": str(out),
                                                "SIMPLIFY": 1.0, "MIN_AREA": 20.0})

    def layer(path):
        return QgsVectorLayer(result["OUTPUT"].replace(str(out), str(path)), path.stem, "ogr")

    def vertices(lyr):
        return sum(len(list(f.geometry().vertices())) for f in lyr.getFeatures())

    filtered = layer(out)
    assert filtered.featureCount() == layer(reference).featureCount()
    assert vertices(filtered) == vertices(layer(reference))
    # The options did something: fewer polygons (small patches dropped), fewer vertices.
    assert filtered.featureCount() < layer(plain).featureCount()
    assert vertices(filtered) < vertices(layer(plain))


def test_score_reports_the_cli_metrics(provider, class_raster, rsseg_exe, tmp_path):
    prediction = read_band(class_raster)
    labels = prediction.copy()
    labels[:50, :] = (labels[:50, :] + 1) % 6  # a quarter of the rows disagree
    label_path = write_classes_like(tmp_path / "labels.tif", class_raster, labels)
    reference = tmp_path / "cli.json"
    run_cli(rsseg_exe, "score", class_raster, label_path, "--json", reference)
    out = tmp_path / "plugin.json"
    result = processing.run("rsseg:score", {"INPUT": class_raster, "LABELS": label_path,
                                            "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    report = json.loads(out.read_text())
    expected = json.loads(reference.read_text())
    assert report == expected
    assert result["OA"] == pytest.approx(float(np.mean(labels == prediction)), abs=1e-9)
    assert result["MIOU"] == pytest.approx(expected["miou"])
    assert result["MF1"] == pytest.approx(expected["mf1"])


def test_rsseg_error_becomes_the_algorithm_error(provider, scene, tmp_path):
    bogus = tmp_path / "not_a_checkpoint.pt"
    bogus.write_text("this is not a checkpoint")
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException) as info:
        processing.run("rsseg:predict", predict_params(scene, out, WEIGHTS=str(bogus)))
    message = str(info.value)
    assert message.startswith("rsseg: error:"), message
    assert "not_a_checkpoint.pt" in message
    assert not out.exists()


def write_dsm(path, pixel, crs=True):
    """A one-band float32 surface (metres) over the scene's extent at ``pixel`` metres."""
    width, height = int(300 * PIXEL / pixel), int(200 * PIXEL / pixel)
    yy, xx = np.mgrid[0:height, 0:width]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((ORIGIN[0], pixel, 0.0, ORIGIN[1], 0.0, -pixel))
    if crs:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(EPSG)
        ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray((250.0 + 8.0 * ((xx // 10 + yy // 10) % 2)).astype("float32"))
    ds.FlushCache()
    ds = None
    return str(path)


def test_dsm_reaches_rsseg_resampled_onto_the_scene_grid(provider, scene, cli_prediction,
                                                         rsseg_exe, tmp_path):
    """A DSM at 1 m beside a 0.5 m orthophoto (the usual case): the plugin passes it with
    --align, and its class raster is what `rsseg predict --dsm --align` writes."""
    dsm = write_dsm(tmp_path / "dsm_1m.tif", pixel=1.0)
    reference = tmp_path / "cli.tif"
    run_cli(rsseg_exe, "predict", scene, "--model", MODEL, "--weights", "random", "--tile",
            TILE, "--overlap", OVERLAP, "--dsm", dsm, "--align", "-o", reference)
    out = tmp_path / "plugin.tif"
    feedback = RecordingFeedback()
    result = processing.run("rsseg:predict", predict_params(scene, out, DSM=dsm),
                            feedback=feedback)
    assert result["OUTPUT"] == str(out)
    np.testing.assert_array_equal(read_band(out), read_band(reference))
    assert grid(out) == grid(scene)
    # the DSM made a difference: a 4-band input, not the 3-band prediction
    assert not np.array_equal(read_band(out), read_band(cli_prediction))
    assert any("--dsm" in info and "--align" in info for info in feedback.commands), \
        feedback.commands


def test_tta_and_zoom_reach_rsseg(provider, scene, rsseg_exe, tmp_path):
    """The plugin's test-time augmentation and zoom are `rsseg predict --tta --zoom`: same
    class raster."""
    reference = tmp_path / "cli.tif"
    run_cli(rsseg_exe, "predict", scene, "--model", MODEL, "--weights", "random", "--tile",
            TILE, "--overlap", OVERLAP, "--tta", "d4", "--zoom", "1.5", "-o", reference)
    out = tmp_path / "plugin.tif"
    feedback = RecordingFeedback()
    processing.run("rsseg:predict", predict_params(scene, out, TTA="d4", ZOOM=1.5),
                   feedback=feedback)
    np.testing.assert_array_equal(read_band(out), read_band(reference))
    assert grid(out) == grid(scene)
    assert any("--tta d4" in info and "--zoom 1.5" in info for info in feedback.commands), \
        feedback.commands
    # 0 is `--zoom auto`; between 0 and 0.25 is refused before rsseg runs
    feedback = RecordingFeedback()
    processing.run("rsseg:predict", predict_params(scene, tmp_path / "auto.tif", ZOOM=0),
                   feedback=feedback)
    assert any("--zoom auto" in info for info in feedback.commands), feedback.commands
    with pytest.raises(QgsProcessingException, match="Zoom must be 0"):
        processing.run("rsseg:predict", predict_params(scene, tmp_path / "bad.tif", ZOOM=0.1))


def test_dsm_rsseg_cannot_use_is_its_error(provider, scene, tmp_path):
    # No CRS: rsseg cannot place the DSM on the scene; its own message names the file.
    dsm = write_dsm(tmp_path / "dsm_nocrs.tif", pixel=1.0, crs=False)
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException) as info:
        processing.run("rsseg:predict", predict_params(scene, out, DSM=dsm))
    message = str(info.value)
    assert message.startswith("rsseg: error:") and "dsm_nocrs.tif" in message, message
    assert not out.exists()


def test_missing_executable_is_a_clear_error(provider, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("RSSEG_EXECUTABLE", str(tmp_path / "no-such-rsseg"))
    with pytest.raises(QgsProcessingException) as info:
        processing.run("rsseg:predict", predict_params(scene, tmp_path / "x.tif"))
    assert "no-such-rsseg" in str(info.value) and "does not exist" in str(info.value)


def test_cancel_stops_rsseg_and_leaves_no_output(provider, tmp_path):
    big = make_scene(tmp_path / "big.tif", width=1500, height=1500, seed=1)
    out = tmp_path / "cancelled.tif"
    feedback = RecordingFeedback(cancel_after_progress=True)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("rsseg:predict", predict_params(big, out), feedback=feedback)
    pids = [int(m.rsplit(" ", 1)[1]) for m in feedback.debug if m.startswith("rsseg process id")]
    assert len(pids) == 1
    assert not os.path.exists(f"/proc/{pids[0]}")  # stopped and reaped
    assert not out.exists()
    # No temporary leftovers (QGIS itself may have written big.tif.aux.xml).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("big.tif")] == []
