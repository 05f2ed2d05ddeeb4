"""``rsseg predict``: a land-cover class raster (COG) for a georeferenced scene."""

from __future__ import annotations

import click

from rsseg.cli.options import (BatchSize, common_options, parse_band_files, parse_bands,
                               rate, report_done, seed_option, stac_option, tta_option,
                               window_options, zoom_option)


@click.command("predict", short_help="Predict a class raster (COG) for a scene.")
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="Class raster to write (Cloud-Optimized GeoTIFF).")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Network name (see `rsseg models`). Default: the network the --weights "
                   "checkpoint names, else bafnet.")
@click.option("--weights", default=None, metavar="TAG|PATH|random",
              help="A bundled tag (see `rsseg models`, e.g. isprs-synthetic), a checkpoint file, "
                   "or 'random' for untrained weights seeded by --seed. Default: the model's "
                   "default tag.")
@click.option("--bands", callback=parse_bands, default=None, metavar="1,2,3",
              help="1-based bands to read, repeats allowed (e.g. 1,1,1 for a pan image and an "
                   "RGB model). Default: all bands.")
@click.option("--band-file", "band_files", multiple=True, callback=parse_band_files,
              metavar="PATH[:BANDS]",
              help="Append bands from another file on the scene's grid, after --bands "
                   "(repeatable; BANDS 1-based, e.g. ir.tif or rgbi.tif:4; default: all its "
                   "bands). For inputs that come as separate files (RGB, IR, DSM).")
@click.option("--dsm", type=click.Path(dir_okay=False), default=None,
              help="One-band raster (e.g. a DSM) on the scene's grid, appended as the last band "
                   "(same as a last --band-file PATH:1, named DSM).")
@click.option("--align", is_flag=True,
              help="Reproject --band-file/--dsm files onto the scene's grid on the fly "
                   "(WarpedVRT, bilinear) when their grids differ.")
@window_options
@click.option("--batch-size", type=BatchSize(), default="auto", show_default=True,
              help="Windows per forward pass, or 'auto': 1 on a CPU (best on small CPUs), "
                   "on a GPU as many as half its free memory holds (measured).")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto",
              show_default=True, help="Where the network runs.")
@click.option("--probs", default=None, metavar="PATH",
              help="Also write a confidence raster (uint8: max class probability * 255, 0 = no data).")
@click.option("--backend", type=click.Choice(("torch", "onnx")), default="torch",
              show_default=True,
              help="Inference engine: torch, or onnx (ONNX Runtime) with --weights MODEL.onnx "
                   "from `rsseg export`, which then also gives the model, classes and bands.")
@click.option("--vector", "vector", default=None, metavar="PATH",
              help="Also polygonize the class raster into this GeoPackage (as `rsseg vectorize`, "
                   "with mean_confidence when --probs is given).")
@tta_option
@zoom_option
@stac_option
@seed_option
@common_options
def predict(input, output, model_name, weights, bands, band_files, dsm, align, tile, overlap,
            blend, batch_size, device, probs, backend, vector, tta, zoom, stac, seed, overwrite,
            progress, progress_json):
    """Predict land-cover classes for the GeoTIFF INPUT and write them to OUTPUT as a COG
    with the same CRS, transform and shape, a colour table, class names and nodata 255.

    \b
    Examples:
      rsseg predict scene.tif --model bafnet --weights run/best.pt -o classes.tif
      rsseg predict scene.tif --weights random --bands 1,2,3 -o classes.tif --probs conf.tif
      rsseg predict scene.tif -o classes.tif --probs conf.tif --vector classes.gpkg
      rsseg predict image.jpg --model baff_skipnet --weights dubai-aerial --tta d4 -o map.tif
      rsseg predict coarse.jpg --model baff_skipnet --weights dubai-aerial --zoom 1.25 -o map.tif
    """
    from rsseg.predict.run import predict_file
    from rsseg.predict.settings import PredictSettings
    from rsseg.progress import progress_mode

    mode = progress_mode(progress, progress_json)
    settings = PredictSettings(tile=tile, overlap=overlap, blend=blend, batch_size=batch_size,
                               probs=probs, vector=vector, overwrite=overwrite, progress=mode)
    result = predict_file(input, output, settings, model=model_name, weights=weights,
                          backend=backend, device=device, seed=seed, bands=bands,
                          band_files=band_files, dsm=dsm, align=align, stac=stac, tta=tta,
                          zoom=zoom, say=lambda line: click.echo(f"rsseg: {line}", err=True))
    report_done(f"wrote {result.describe()} in {rate(result.megapixels, result.seconds)}", mode,
                **result.summary())
