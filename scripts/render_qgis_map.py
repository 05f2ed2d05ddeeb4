#!/usr/bin/python3
"""Render rsseg outputs the way QGIS draws them, with real headless QGIS, to a PNG.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/render_qgis_map.py demo_out \
        -o docs/img/qgis_demo.png

Left panel: the class raster (``classes.tif``, a COG) with the paletted renderer
QGIS builds from its colour table; right panel: the polygons (``classes.gpkg``,
layer ``classes``) with the style embedded in the GeoPackage's ``layer_styles``
table. Nothing is styled here: what QGIS picks up from the files is what is drawn.
The background is light grey, a colour no rsseg class uses, so no-data shows.

Run it with the Python that has PyQGIS (Debian: /usr/bin/python3), not rsseg's
venv; it imports neither torch nor rsseg. ``tests/qgis/test_render_map.py`` runs
it on a small demo and checks that the rendered colours are the palette's. The
process ends with ``os._exit``: PyQGIS can crash in its exit handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BACKGROUND = (240, 240, 240)
GAP = 12  # pixels between the two panels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a `rsseg demo` output folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--raster", default="classes.tif", help="class raster in FOLDER")
    parser.add_argument("--vector", default="classes.gpkg", help="GeoPackage in FOLDER")
    parser.add_argument("--panel", type=int, default=0,
                        help="panel width in pixels (default: the raster's, at most 600)")
    return parser.parse_args(argv)


def start_qgis():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    return app


def load_layers(raster: Path, vector: Path):
    """The layers as QGIS opens the files, with their own styles; errors name the file."""
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer, QgsVectorLayer

    classes = QgsRasterLayer(str(raster), "classes")
    if not classes.isValid():
        raise SystemExit(f"render_qgis_map: {raster}: QGIS cannot open it")
    if not isinstance(classes.renderer(), QgsPalettedRasterRenderer):
        raise SystemExit(f"render_qgis_map: {raster}: QGIS did not pick a paletted renderer "
                         f"(got {type(classes.renderer()).__name__}); no colour table?")
    polygons = QgsVectorLayer(f"{vector}|layername=classes", "polygons", "ogr")
    if not polygons.isValid():
        raise SystemExit(f"render_qgis_map: {vector}: QGIS cannot open layer 'classes'")
    renderer = polygons.renderer()
    if renderer is None or renderer.type() != "categorizedSymbol":
        raise SystemExit(f"render_qgis_map: {vector}: QGIS did not apply the embedded style "
                         f"(renderer {renderer.type() if renderer else None})")
    return classes, polygons


def render(layer, extent, width: int, height: int):
    """One layer drawn by QGIS's map renderer into a ``width`` x ``height`` QImage."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(*BACKGROUND))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def compose(left, right, path: Path) -> None:
    """The two panels side by side with a gap, saved as PNG."""
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    image = QImage(left.width() + GAP + right.width(), max(left.height(), right.height()),
                   QImage.Format_RGB32)
    image.fill(QColor(64, 64, 64))  # the gap: darker than any class colour
    painter = QPainter(image)
    painter.drawImage(0, 0, left)
    painter.drawImage(left.width() + GAP, 0, right)
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part.png")
    if not image.save(str(tmp), "PNG"):
        raise SystemExit(f"render_qgis_map: {path}: cannot write the PNG")
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    app = start_qgis()  # noqa: F841 - kept alive until os._exit (exitQgis can crash)
    classes, polygons = load_layers(args.folder / args.raster, args.folder / args.vector)
    extent = classes.extent()
    width = args.panel or min(classes.width(), 600)
    height = max(1, round(width * extent.height() / extent.width()))
    compose(render(classes, extent, width, height), render(polygons, extent, width, height),
            args.output)
    print(f"render_qgis_map: wrote {args.output} ({2 * width + GAP}x{height}: "
          f"{args.raster} | {args.vector})")
    return 0


if __name__ == "__main__":
    try:
        status = main()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            status = 1
        else:
            status = exc.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
