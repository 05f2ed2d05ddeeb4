"""``rsseg synth``: write a synthetic Vaihingen-style scene with labels and DSM."""

from __future__ import annotations

import click

from rsseg.cli.options import common_options, seed_option

EPILOG = """\b
Examples:
  rsseg synth -o scene.tif --size 3000x2000 --seed 1 --labels labels.tif
  rsseg synth -o scene.tif --dsm-out dsm.tif --labels labels.tif \\
      --labels-rgb labels_rgb.tif --nodata-border 64
  rsseg synth -o big.tif --size 20000x20000 --pixel-size 0.09 --origin 496000,5420000
"""


def parse_size(ctx, param, value):
    """'3000x2000' -> (3000, 2000) as (width, height); '512' -> (512, 512)."""
    text = str(value).lower().replace(" ", "")
    parts = text.split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise click.BadParameter(f"expected WIDTHxHEIGHT in pixels, e.g. 3000x2000, not {value!r}")
    return dims[0], dims[1]


def parse_origin(ctx, param, value):
    """'496000,5420000' -> (496000.0, 5420000.0)."""
    if value is None:
        return None
    try:
        x, y = (float(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"expected X,Y of the top-left corner, not {value!r}") from None
    return x, y


@click.command(epilog=EPILOG, short_help="Write a synthetic scene with labels and DSM.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Scene GeoTIFF: IR, R, G (+ DSM as band 4, float32, unless --dsm-out).")
@click.option("--size", default="3000x2000", show_default=True, callback=parse_size,
              metavar="WxH", help="Scene size in pixels, width x height.")
@seed_option
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Also write class ids (uint8, ISPRS colour table, nodata 255).")
@click.option("--labels-rgb", "labels_rgb_path", type=click.Path(dir_okay=False),
              help="Also write labels in the ISPRS RGB colour code (3-band uint8).")
@click.option("--dsm-out", "dsm_path", type=click.Path(dir_okay=False),
              help="Write the DSM to this float32 file; the scene is then 3-band uint8.")
@click.option("--nodata-border", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="PX", help="Collar of PX nodata pixels around the scene.")
@click.option("--crs", default="EPSG:32632", show_default=True,
              help="CRS of the scene (EPSG code, WKT or PROJ string).")
@click.option("--pixel-size", type=click.FloatRange(min=0, min_open=True), default=0.09,
              show_default=True, help="Pixel size in CRS units (metres: objects keep their "
                                      "real size).")
@click.option("--origin", callback=parse_origin, metavar="X,Y",
              help="Top-left corner in CRS units.  [default: 496000,5420000]")
@common_options
def synth(output, size, seed, labels_path, labels_rgb_path, dsm_path, nodata_border, crs,
          pixel_size, origin, overwrite, progress, progress_json):
    """Write a synthetic Vaihingen-style scene: a small town with streets,
    houses, apartment blocks, parks, parked cars and trees, in false colour
    (IR, R, G) with a DSM, and its ISPRS labels (impervious surfaces, building,
    low vegetation, tree, car, clutter).

    The scene is generated window by window, so memory stays flat for any
    size, and the same seed always gives byte-identical files.
    """

    from rsseg.progress import log_message, progress_mode
    from rsseg.synth.scene import write_synthetic_scene

    width, height = size
    mode = progress_mode(progress, progress_json)
    try:
        summary = write_synthetic_scene(
            output, width, height, seed=seed, labels_path=labels_path,
            labels_rgb_path=labels_rgb_path, dsm_path=dsm_path, nodata_border=nodata_border,
            crs=crs, pixel_size=pixel_size, origin=origin, overwrite=overwrite, progress=mode)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    message = _describe(summary)
    log_message(mode, message, **({"summary": summary} if mode == "json" else {}))


def _describe(summary: dict) -> str:
    written = [summary[k] for k in ("path", "dsm_path", "labels_path", "labels_rgb_path")
               if summary.get(k)]
    shares = ", ".join(f"{name} {100 * frac:.1f}%"
                       for name, frac in summary["class_fractions"].items())
    return (f"wrote {', '.join(written)}: {summary['width']}x{summary['height']} px, "
            f"bands {','.join(summary['bands'])} ({summary['dtype']}), {summary['crs']}, "
            f"seed {summary['seed']}; classes: {shares}")
