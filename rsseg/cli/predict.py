"""``rsseg predict``: a land-cover class raster (COG) for a georeferenced scene."""

from __future__ import annotations

import click

from rsseg.cli.options import (DEFAULT_TILE, common_options, parse_band_files, parse_bands,
                               seed_option, stac_option, window_options)

DEFAULT_OVERLAP_FRACTION = 4  # overlap = tile / 4 (128 px for 512-px tiles)


def _check_distinct_outputs(inputs, output, probs, vector) -> None:
    """No output may overwrite an input (even with --overwrite), or another output."""
    import os

    seen = {os.path.realpath(path): "input" for path in inputs if path}
    for path, option in ((output, "-o/--output"), (probs, "--probs"), (vector, "--vector")):
        if path is None:
            continue
        other = seen.get(os.path.realpath(path))
        if other:
            raise click.BadParameter(f"{path} is also the {other} path", param_hint=option)
        seen[os.path.realpath(path)] = option


@click.command("predict", short_help="Predict a class raster (COG) for a scene.")
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="Class raster to write (Cloud-Optimized GeoTIFF).")
@click.option("--model", "model_name", default="bafnet", show_default=True, metavar="NAME",
              help="Network name (see `rsseg models`).")
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
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass (1 is best on small CPUs; raise it on a GPU).")
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
@stac_option
@seed_option
@common_options
def predict(input, output, model_name, weights, bands, band_files, dsm, align, tile, overlap,
            blend, batch_size, device, probs, backend, vector, stac, seed, overwrite, progress,
            progress_json):
    """Predict land-cover classes for the GeoTIFF INPUT and write them to OUTPUT as a COG
    with the same CRS, transform and shape, a colour table, class names and nodata 255.

    \b
    Examples:
      rsseg predict scene.tif --model bafnet --weights run/best.pt -o classes.tif
      rsseg predict scene.tif --weights random --bands 1,2,3 -o classes.tif --probs conf.tif
      rsseg predict scene.tif -o classes.tif --probs conf.tif --vector classes.gpkg
    """
    import warnings

    from rsseg.atomic import check_output_path
    from rsseg.predict.predictor import TorchPredictor, check_model_name, resolve_device, resolve_model
    from rsseg.predict.engine import predict_scene
    from rsseg.progress import progress_mode
    from rsseg.io.scene import Scene

    # Cheap checks first: nothing is read or computed before they pass.
    _check_distinct_outputs([input, dsm] + [f.path for f in band_files], output, probs, vector)
    check_output_path(output, overwrite)
    if probs:
        check_output_path(probs, overwrite)
    if vector:
        from rsseg.vectorize.streaming import qml_sidecar_path

        check_output_path(vector, overwrite)
        check_output_path(qml_sidecar_path(vector), overwrite)
    if stac:
        from rsseg.io.stac import check_item_path

        check_item_path(output, overwrite)
    if backend == "onnx" and weights in (None, "random"):
        raise click.BadParameter("--backend onnx needs an exported model: --weights MODEL.onnx "
                                 "(see `rsseg export`)", param_hint="--weights")
    if backend == "torch":
        check_model_name(model_name)
        torch_device = resolve_device(device)  # --device cuda without a GPU fails here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = Scene(input, bands=bands, dsm=dsm, align=align, band_files=band_files)
    for w in caught:
        click.echo(f"rsseg: warning: {w.message}", err=True)
    if backend == "onnx":
        from rsseg.predict.onnx_predictor import resolve_onnx

        resolved = resolve_onnx(weights, scene.channels, device)
    else:
        resolved = resolve_model(model_name, weights, scene.channels, seed=seed)
    scaling = "inputs scaled by dtype (integers / dtype max, floats as they are)"
    if weights == "random":
        click.echo(f"rsseg: {model_name} runs with {resolved.source}, in_channels="
                   f"{scene.channels}; {scaling}", err=True)
    elif resolved.normalization is None:
        click.echo(f"rsseg: warning: {resolved.source} has no band normalisation; {scaling}",
                   err=True)
    tile = tile or int(resolved.tile.get("size") or DEFAULT_TILE)
    if overlap is None:
        overlap = int(resolved.tile.get("overlap", tile // DEFAULT_OVERLAP_FRACTION))
        overlap = min(overlap, tile - 1)
    if overlap >= tile:
        raise click.BadParameter(f"must be smaller than --tile ({tile})", param_hint="--overlap")
    if backend == "onnx":
        predictor = resolved.predictor
        predictor.check_tile(tile)
    else:
        predictor = TorchPredictor(resolved.model, torch_device,
                                   num_classes=resolved.classes.num_classes)
    result = predict_scene(input, output, predictor, resolved.normalization,
                           classes=resolved.classes, tile=tile, overlap=overlap, blend=blend,
                           batch_size=batch_size, probs=probs, overwrite=overwrite,
                           progress=progress_mode(progress, progress_json), scene=scene)
    if result.windows and result.skipped == result.windows:
        click.echo(f"rsseg: warning: {input}: every pixel read is nodata; the output is all "
                   "nodata (255)", err=True)
    if vector:
        from rsseg.vectorize.streaming import vectorize_raster

        vectorize_raster(output, vector, probs=probs, overwrite=overwrite,
                         progress=progress_mode(progress, progress_json))
    if stac:
        from rsseg.io.stac import provenance, write_output_item

        name = resolved.predictor.info.model_name if backend == "onnx" else model_name
        write_output_item(output, classes_raster=output, confidence=probs, vector=vector,
                          classes=resolved.classes, overwrite=overwrite,
                          provenance=provenance(name, weights, input))
