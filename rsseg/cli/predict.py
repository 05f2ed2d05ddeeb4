"""``rsseg predict``: a land-cover class raster (COG) for a georeferenced scene."""

from __future__ import annotations

import click

from .options import common_options, parse_bands, seed_option

BLENDS = ("crop", "mean", "linear", "cosine", "spline")  # = rsseg.tiling.BLEND_MODES (no import: fast --help)
DEFAULT_TILE = 512
DEFAULT_OVERLAP_FRACTION = 4  # overlap = tile / 4 (128 px for 512-px tiles)


@click.command("predict", short_help="Predict a class raster (COG) for a scene.")
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Class raster to write (Cloud-Optimized GeoTIFF).")
@click.option("--model", "model_name", default="bafnet", show_default=True,
              help="Network name (see `rsseg models`).")
@click.option("--weights", default=None,
              help="Checkpoint file, or 'random' for untrained weights seeded by --seed. "
                   "Default: the weights bundled for --model.")
@click.option("--bands", callback=parse_bands, default=None,
              help="1-based bands to read, repeats allowed (e.g. 1,1,1 for a pan image and an "
                   "RGB model). Default: all bands.")
@click.option("--dsm", type=click.Path(dir_okay=False), default=None,
              help="One-band raster (e.g. a DSM) on the same grid, appended as the last band.")
@click.option("--align", is_flag=True,
              help="Reproject --dsm onto the scene's grid on the fly when the grids differ.")
@click.option("--tile", type=click.IntRange(min=16), default=None,
              help=f"Window size in pixels. Default: the checkpoint's, else {DEFAULT_TILE}.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Overlap between windows in pixels. Default: the checkpoint's, else tile/4.")
@click.option("--blend", type=click.Choice(BLENDS), default="cosine", show_default=True,
              help="How overlapping windows are combined.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass (1 is best on small CPUs; raise it on a GPU).")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto",
              show_default=True, help="Where the network runs.")
@click.option("--probs", default=None,
              help="Also write a confidence raster (uint8: max class probability * 255, 0 = no data).")
@click.option("--backend", type=click.Choice(("torch", "onnx")), default="torch",
              show_default=True,
              help="Inference engine: torch, or onnx (ONNX Runtime) with --weights MODEL.onnx "
                   "from `rsseg export`, which then also gives the model, classes and bands.")
@click.option("--vector", "vector", default=None,
              help="Also polygonize the class raster into this GeoPackage (as `rsseg vectorize`, "
                   "with mean_confidence when --probs is given).")
@seed_option
@common_options
def predict(input, output, model_name, weights, bands, dsm, align, tile, overlap, blend,
            batch_size, device, probs, backend, vector, seed, overwrite, progress, progress_json):
    """Predict land-cover classes for the GeoTIFF INPUT and write them to OUTPUT as a COG
    with the same CRS, transform and shape, a colour table, class names and nodata 255.

    \b
    Examples:
      rsseg predict scene.tif --model bafnet --weights run/best.pt -o classes.tif
      rsseg predict scene.tif --weights random --bands 1,2,3 -o classes.tif --probs conf.tif
      rsseg predict scene.tif -o classes.tif --probs conf.tif --vector classes.gpkg
    """
    import warnings

    from ..atomic import check_output_path
    from ..inference import TorchPredictor, check_model_name, resolve_model
    from ..pipeline import predict_scene
    from ..progress import progress_mode
    from ..raster import Scene

    # Cheap checks first: nothing is read or computed before they pass.
    check_output_path(output, overwrite)
    if probs:
        check_output_path(probs, overwrite)
    if vector:
        check_output_path(vector, overwrite)
    if backend == "onnx" and weights in (None, "random"):
        raise click.BadParameter("--backend onnx needs an exported model: --weights MODEL.onnx "
                                 "(see `rsseg export`)", param_hint="--weights")
    if backend == "torch":
        check_model_name(model_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = Scene(input, bands=bands, dsm=dsm, align=align)
    for w in caught:
        click.echo(f"rsseg: warning: {w.message}", err=True)
    if backend == "onnx":
        from ..inference_onnx import resolve_onnx

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
        predictor = TorchPredictor(resolved.model, device, num_classes=resolved.classes.num_classes)
    predict_scene(input, output, predictor, resolved.normalization, classes=resolved.classes,
                  tile=tile, overlap=overlap, blend=blend, batch_size=batch_size, probs=probs,
                  overwrite=overwrite, progress=progress_mode(progress, progress_json),
                  scene=scene)
    if vector:
        from ..vectorize import vectorize_raster

        vectorize_raster(output, vector, probs=probs, overwrite=overwrite,
                         progress=progress_mode(progress, progress_json))
