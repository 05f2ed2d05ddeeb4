"""``rsseg batch``: class rasters for many tiles (a city mosaic) on a Dask cluster."""

from __future__ import annotations

import click

from rsseg.cli.options import (BatchSize, common_options, parse_band_files, parse_bands,
                               seed_option, stac_option, tta_option, window_options,
                               zoom_option)


@click.command("batch", short_help="Predict many tiles on a Dask cluster (resumable, seamless).")
@click.argument("inputs", metavar="INPUTS...", nargs=-1, required=True)
@click.option("-o", "--output", "out_dir", required=True,
              help="Output directory (created if missing): one class raster per tile, "
                   "mosaic.vrt, batch.sqlite (the job's state: see `rsseg batch-status`).")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Network name (see `rsseg models`). Default: the network the --weights "
                   "checkpoint names, else bafnet.")
@click.option("--weights", default=None,
              help="A bundled tag (rsseg models), a checkpoint file, or 'random' for untrained "
                   "weights seeded by --seed. Default: the model's default bundled tag.")
@click.option("--bands", callback=parse_bands, default=None,
              help="1-based bands to read from every tile, repeats allowed. Default: all.")
@click.option("--band-file", "band_files", multiple=True, callback=parse_band_files,
              metavar="PATTERN|PATH[:BANDS]",
              help="Append bands from other files, after --bands (repeatable, as predict): "
                   "one file per tile named by a pattern with {stem} (the tile's name without "
                   "suffix, e.g. 'ir/{stem}_ir.tif:1'), or one raster covering the tiles on "
                   "their grid (e.g. ir.vrt).")
@click.option("--dsm", default=None, metavar="PATTERN|PATH",
              help="One-band raster appended as the last band (named DSM): 'dsm/{stem}.tif' "
                   "per tile, or one file covering the tiles (e.g. dsm.vrt).")
@click.option("--align", is_flag=True,
              help="Reproject --band-file/--dsm files onto the tiles' grid on the fly "
                   "(WarpedVRT, bilinear) when their grid differs (e.g. a coarser DSM).")
@click.option("--probs", is_flag=True,
              help="Also write confidences (uint8: max class probability * 255, 0 = no data): "
                   "confidence/<tile>.tif and the mosaic confidence.vrt; with --vector the "
                   "polygons get mean_confidence.")
@window_options
@click.option("--batch-size", type=BatchSize(), default="auto", show_default=True,
              help="Windows per forward pass, or 'auto': 1 on CPU workers, on GPU workers as "
                   "many as half the GPU's free memory holds (measured by each worker).")
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
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, metavar="SECONDS",
              help="With --scheduler: give up when the scheduler does not answer within this "
                   "time.")
@click.option("--resume", is_flag=True,
              help="Skip the tiles batch.sqlite records as done from the same inputs and "
                   "settings; redo failed and changed ones.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (mosaics, tiles to do / done / failed, windows) and exit "
                   "without starting a cluster or writing anything.")
@tta_option
@zoom_option
@stac_option
@seed_option
@common_options
def batch(inputs, out_dir, model_name, weights, bands, band_files, dsm, align, probs, tile,
          overlap, blend, batch_size, device, vector, simplify, min_area, workers, threads,
          scheduler, connect_timeout, resume, dry_run, tta, zoom, stac, seed, overwrite,
          progress, progress_json):
    """Predict a class raster for every tile of INPUTS into the directory given by -o.

    INPUTS is a glob ("city/*.tif"; unquoted, the shell's list of files works
    too), a list file (.txt, one path per line), a VRT mosaic or a tile index
    (.gpkg/.shp with a 'location' field), or several of these. Tiles that
    touch on one pixel grid are predicted with context from their neighbours,
    so the class rasters show no seam at file borders. Exit status 1 when any
    tile failed (see the summary, or `rsseg batch-status OUT` at any time).

    \b
    Examples:
      rsseg batch "city/*.tif" -o out/ --model bafnet --weights w.pt --vector --workers 4
      rsseg batch city.vrt -o out/ --weights w.pt --scheduler tcp://scheduler-host:8786
      rsseg batch tiles.txt -o out/ --weights w.pt --resume
      rsseg batch "rgb/*.tif" -o out/ --band-file "ir/{stem}.tif" --dsm dsm.vrt --probs
      rsseg batch tiles.txt -o out/ --weights w.pt --resume --dry-run
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
    from rsseg.predict.load import DEFAULT_MODEL
    from rsseg.weights.bundled import looks_like_tag, resolve_weights

    if model_name is not None:
        check_model_name(model_name)  # before any input is read
    if weights is not None and looks_like_tag(weights) and weights != "random":
        # the tag's file: workers load a path
        weights = resolve_weights(model_name or DEFAULT_MODEL, weights)
    if device == "cuda" and not scheduler:  # local workers: this machine's GPU, checked now
        from rsseg.predict.predictor import resolve_device

        resolve_device("cuda")
    if dsm is not None:
        from rsseg.io.scene import BandFile

        band_files = tuple(band_files) + (BandFile(dsm, (1,), "DSM"),)
    options = BatchOptions(model=model_name, weights=weights, seed=seed,
                           bands=tuple(bands) if bands else None, band_files=band_files,
                           align=align, probs=probs, tile=tile, overlap=overlap,
                           blend=blend, tta=tta, zoom=zoom, batch_size=batch_size,
                           device=device,
                           vector=vector,
                           simplify=simplify, min_area=min_area, workers=workers,
                           threads=threads, scheduler=scheduler,
                           connect_timeout=connect_timeout, resume=resume,
                           overwrite=overwrite, progress=progress_mode(progress, progress_json),
                           dry_run=dry_run)
    summary = run_batch(list(inputs), out_dir, options)
    if stac and not dry_run:  # an Item per finished tile and mosaic.stac.json, a Collection over them
        from rsseg.io.stac import write_batch_stac

        write_batch_stac(out_dir, summary.model, weights, tta, summary.zoom)
    # A dry run's plan is what the command was asked for: stdout, so it can be piped or
    # saved; a real run's summary is a report on stderr like every other command's.
    for line in summary.lines():
        click.echo(f"rsseg: {line}", err=not dry_run)
    return 1 if summary.failed else 0
