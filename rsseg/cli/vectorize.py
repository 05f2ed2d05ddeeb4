"""``rsseg vectorize``: class raster -> styled GeoPackage of class polygons."""

from __future__ import annotations

import click

from rsseg.cli.options import common_options, rate, report_done, stac_option


def _parse_classes(ctx, param, value):
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("expected comma-separated class names or ids, e.g. building,car")
    return names


@click.command(short_help="Polygonize a class raster into a styled GeoPackage.")
@click.argument("class_raster", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="GeoPackage to write (a .qml style sidecar is written next to it).")
@click.option("--layer", default="classes", show_default=True, help="Layer name.")
@click.option("--probs", type=click.Path(dir_okay=False), default=None,
              help="uint8 confidence raster (0-255) on the same grid; adds mean_confidence.")
@click.option("--simplify", type=click.FloatRange(min=0), default=None, metavar="TOL",
              help="Coverage simplification tolerance in map units (no gaps, no overlaps).")
@click.option("--min-area", type=click.FloatRange(min=0), default=None, metavar="M2",
              help="Merge polygons smaller than this (m²) into the neighbour with the "
                   "longest shared border.")
@click.option("--classes", callback=_parse_classes, default=None, metavar="NAMES",
              help="Keep only these classes (names or ids, comma-separated), e.g. building,car.")
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="Pixel connectivity of a polygon (4: edges, GDAL's default; 8: corners too).")
@click.option("--block-size", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Side of the square processing blocks in pixels (memory ~ one block per "
                   "worker plus the polygons crossing the current row of blocks).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes polygonizing blocks in parallel; 0 = automatic (1 below "
                   "16 Mpx, else the idle CPUs, at most 4). The output does not depend on it.")
@stac_option
@common_options
def vectorize(class_raster, output, layer, probs, simplify, min_area, classes, connectivity,
              block_size, workers, stac, overwrite, progress, progress_json):
    """Polygonize CLASS_RASTER (e.g. from `rsseg predict`) into the GeoPackage OUTPUT.

    One layer with class_id, class_name, area_m2, perimeter_m (and mean_confidence with
    --probs), styled for QGIS by class colour. Polygons are exactly those of a
    whole-raster polygonization, although the raster is processed in blocks.
    """
    import warnings

    from rsseg.progress import progress_mode
    from rsseg.vectorize.streaming import vectorize_raster

    mode = progress_mode(progress, progress_json)
    if stac:
        from rsseg.io.stac import check_item_path

        check_item_path(output, overwrite, classes=class_raster)
    with warnings.catch_warnings(record=True) as caught:  # e.g. no CRS: said once, on stderr
        warnings.simplefilter("always")
        summary = vectorize_raster(class_raster, output, layer=layer, probs=probs,
                                   simplify=simplify, min_area=min_area, classes=classes,
                                   connectivity=int(connectivity), block_size=block_size,
                                   overwrite=overwrite, progress=mode, workers=workers)
    for w in caught:
        if issubclass(w.category, UserWarning):
            click.echo(f"rsseg: warning: {w.message}", err=True)
    if stac:
        from rsseg.io.stac import write_output_item

        summary["stac"] = str(write_output_item(output, classes_raster=class_raster,
                                                confidence=probs, vector=output,
                                                overwrite=overwrite, extend=True))
    counts = ", ".join(f"{name} {n}" for name, n in summary["per_class"].items()) or "none"
    report_done(f"wrote {summary['features']} polygons to {summary['output']} "
                f"(layer {summary['layer']}; {counts}) in "
                f"{rate(summary['megapixels'], summary['seconds'])}", mode, **summary)
