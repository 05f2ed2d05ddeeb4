"""``rsseg export``: a checkpoint as a self-describing ONNX model."""

from __future__ import annotations

import click

from rsseg.cli.options import common_options

OPSET_RANGE = (11, 20)  # = rsseg.export.onnx.OPSETS (not imported: keeps --help fast)


@click.command("export", short_help="Export a checkpoint to ONNX.")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("-o", "--output", required=True, help="ONNX file to write (e.g. model.onnx).")
@click.option("--opset", type=click.IntRange(*OPSET_RANGE), default=17, show_default=True,
              help="ONNX opset version.")
@click.option("--tile", type=click.IntRange(min=16), default=None,
              help="Window size stored for predict (and the fixed input size if the network "
                   "cannot take dynamic sizes). Default: the checkpoint's, else 512.")
@click.option("--for", "target", type=click.Choice(("deepness", "geodeep")), default=None,
              help="Export the fixed contract that QGIS Deepness or GeoDeep runs: 3-band RGB "
                   "scaled to 0..1 in (normalisation baked in), softmax out, a fixed "
                   "tile x tile input. Default: rsseg's graph (see docs/interop.md).")
@click.option("--resolution", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="CM", help="Ground sampling distance the model was trained at, in "
                                 "cm/px, for the tools' `resolution` key and `rsseg "
                                 "predict --zoom auto`. Default: the checkpoint's (or a "
                                 "bundled card's), else it is left out.")
@common_options
def export(checkpoint, output, opset, tile, target, resolution, overwrite, progress,
           progress_json):
    """Export the network in CHECKPOINT (from `rsseg train`) to OUTPUT as ONNX.

    The graph maps normalised (N, C, H, W) float32 images to class logits, with a
    dynamic batch and, where the network allows, dynamic height and width. Its
    metadata carries the model name and configuration, classes and colours, band
    order, normalisation, tile size and overlap, so predict needs nothing else.
    The export is checked against torch before the file is written.

    Every export also carries the metadata keys Deepness and GeoDeep read
    (model_type, class_names, tiles_size, tiles_overlap, ...); --for makes the
    graph itself one those tools can run.

    \b
    Examples:
      rsseg export runs/x/best.pt -o model.onnx
      rsseg predict scene.tif --backend onnx --weights model.onnx -o classes.tif
      rsseg export runs/rgb/best.pt --for geodeep --resolution 9 -o rgb_geodeep.onnx
    """
    from rsseg.atomic import check_output_path
    from rsseg.checkpoint import load_checkpoint
    from rsseg.export.onnx import export_checkpoint
    from rsseg.progress import Progress, progress_mode

    # Cheap checks first: a bad output path or checkpoint fails before any bar is drawn.
    check_output_path(output, overwrite)
    ckpt = load_checkpoint(checkpoint)
    mode = progress_mode(progress, progress_json)
    with Progress(3, "export", mode, unit="step") as bar:
        def step(message: str) -> None:
            if message.startswith(("loaded", "exported")):
                bar.update(1)
            else:
                bar.log(f"rsseg: {message}")

        result = export_checkpoint(ckpt, output, opset=opset, tile=tile, overwrite=overwrite,
                                   on_step=step, source=checkpoint, target=target,
                                   resolution=resolution)
        bar.update(bar.total - bar.done)
        h, w = result.min_size
        sizes = (f"dynamic batch, height and width (>= {h}x{w})" if result.dynamic_spatial
                 else f"dynamic batch, fixed {h}x{w}")
        summary = (f"rsseg: wrote {result.path}: {result.model_name}, opset {result.opset}, "
                   f"{sizes}, tile {result.tile['size']} overlap {result.tile['overlap']}, "
                   f"max |ONNX - torch| {'probability' if target else 'logit'} difference "
                   f"{result.max_abs_diff:.1e}" + (f"; ready for {target}" if target else ""))
        if mode == "json":
            bar.log(summary)
        else:
            click.echo(summary, err=True)
