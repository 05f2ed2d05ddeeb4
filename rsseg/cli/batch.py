"""``rsseg batch``: class rasters for many tiles (a city mosaic) on a Dask cluster."""

from __future__ import annotations

import click

from rsseg.cli.options import common_options, parse_bands, seed_option, stac_option, window_options


@click.command("batch", short_help="Predict many tiles on a Dask cluster (resumable, seamless).")
@click.argument("inputs", metavar="INPUTS")
@click.option("-o", "--output", "out_dir", required=True,
              help="Output directory (created if missing): one class raster per tile, "
                   "mosaic.vrt, manifest.json.")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Network name (see `rsseg models`). Default: the network the --weights "
                   "checkpoint names, else bafnet.")
@click.option("--weights", default=None,
              help="Checkpoint file, or 'random' for untrained weights seeded by --seed. "
                   "Default: the weights bundled for --model.")
@click.option("--bands", callback=parse_bands, default=None,
              help="1-based bands to read from every tile, repeats allowed. Default: all.")
@window_options
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass.")
@click.option("--device", type=click.Choice(("cpu", "cuda")), default="cpu", show_default=True,
              help="Where the workers run the network.")
@click.option("--vector", is_flag=True,
              help="Also polygonize: one GeoPackage per tile and mosaic.gpkg with polygons "
                   "dissolved across tile borders.")
@click.option("--simplify", type=click.FloatRange(min=0), default=None,
              help="With --vector: coverage simplification tolerance in map units.")
@click.option("--min-area", type=click.FloatRange(min=0), default=None,
              help="With --vector: merge polygons smaller than this (m²).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes of the local Dask cluster (ignored with --scheduler).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads per local worker (torch threads follow the worker's thread count).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on an existing Dask cluster, e.g. tcp://host:8786, instead of a local one.")
@click.option("--resume", is_flag=True,
              help="Skip the tiles manifest.json records as done from the same inputs and "
                   "settings; redo failed and changed ones.")
@stac_option
@seed_option
@common_options
def batch(inputs, out_dir, model_name, weights, bands, tile, overlap, blend, batch_size, device,
          vector, simplify, min_area, workers, threads, scheduler, resume, stac, seed, overwrite,
          progress, progress_json):
    """Predict a class raster for every tile of INPUTS into the directory given by -o.

    INPUTS is a glob (quote it), a list file (.txt, one path per line), a VRT
    mosaic or a tile index (.gpkg/.shp with a 'location' field). Tiles that
    touch on one pixel grid are predicted with context from their neighbours,
    so the class rasters show no seam at file borders. Exit status 1 when any
    tile failed (see the summary and manifest.json).

    \b
    Examples:
      rsseg batch "city/*.tif" -o out/ --model bafnet --weights w.pt --vector --workers 4
      rsseg batch city.vrt -o out/ --weights w.pt --scheduler tcp://scheduler-host:8786
      rsseg batch tiles.txt -o out/ --weights w.pt --resume
    """
    from rsseg.batch.driver import BatchOptions, run_batch
    from rsseg.predict.load import check_model_name
    from rsseg.progress import progress_mode

    if resume and overwrite:
        raise click.BadParameter("choose one of --resume and --overwrite", param_hint="--resume")
    if (simplify is not None or min_area is not None) and not vector:
        raise click.BadParameter("needs --vector", param_hint="--simplify/--min-area")
    if tile is not None and overlap is not None and overlap >= tile:
        raise click.BadParameter(f"must be smaller than --tile ({tile})", param_hint="--overlap")
    if model_name is not None:
        check_model_name(model_name)  # before any input is read
    options = BatchOptions(model=model_name, weights=weights, seed=seed,
                           bands=tuple(bands) if bands else None, tile=tile, overlap=overlap,
                           blend=blend, batch_size=batch_size, device=device, vector=vector,
                           simplify=simplify, min_area=min_area, workers=workers,
                           threads=threads, scheduler=scheduler, resume=resume,
                           overwrite=overwrite, progress=progress_mode(progress, progress_json))
    summary = run_batch(inputs, out_dir, options)
    if stac:  # an Item per finished tile and mosaic.stac.json, a Collection over them
        from rsseg.io.stac import write_batch_stac

        write_batch_stac(out_dir, summary.model, weights)
    for line in summary.lines():
        click.echo(f"rsseg: {line}", err=True)
    return 1 if summary.failed else 0
