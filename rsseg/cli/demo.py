"""``rsseg demo``: synth -> predict (bundled weights) -> vectorize -> score -> quicklook,
then the shipped real image -> predict (real-imagery weights) -> score -> quicklook."""

from __future__ import annotations

import click

from rsseg.cli.options import common_options


@click.command(short_help="Run the pipeline on a synthetic scene and a real image (make demo).")
@click.option("--out", "out_dir", default="demo_out", show_default=True,
              type=click.Path(file_okay=False), help="Directory for the demo's files.")
@click.option("--model", default="bafnet", show_default=True, help="Network (rsseg models).")
@click.option("--weights", default=None, metavar="TAG|PATH",
              help="A bundled tag or a checkpoint to use instead of the model's default tag.")
@click.option("--size", type=click.IntRange(64, 8192), default=1024, show_default=True,
              help="Side of the synthetic scene in pixels.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Scene seed (the bundled weights never saw seed 7).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--real/--no-real", default=True, show_default=True,
              help="Also segment the shipped real satellite image (Dubai) with the bundled "
                   "real-imagery weights that never saw its area (baff_skipnet, tag "
                   "dubai-aerial-holdout7).")
@common_options
def demo(out_dir, model, weights, size, seed, device, real, overwrite, progress, progress_json):
    """Synthesise a scene, predict it with the bundled weights, vectorize the classes to a
    GeoPackage, score them against the scene's labels and draw a quicklook PNG. Then
    segment a real 512x512 satellite image of Dubai shipped with rsseg (credit: Humans in
    the Loop / MBRSC, CC0) with the real-imagery weights, which never saw its area, and
    score it against its hand-made label.

    The demo's own files in --out are replaced on every run (--overwrite is implied).

    \b
    Example:
      rsseg demo --out demo_out          (what `make demo` runs)
    """
    from rsseg.demo import run_demo
    from rsseg.progress import progress_mode

    mode = progress_mode(progress, progress_json)

    def say(message: str) -> None:
        click.echo(message, err=mode == "json")

    result = run_demo(out_dir, model=model, weights=weights, size=size, seed=seed,
                      device=device, progress=mode, say=say, real=real)
    say("")
    say(result["table"])
    say("")
    note = result["note"] or "(no note in the checkpoint)"
    say(f"weights: {result['weights']}")
    say(f"NOTE: {note}")
    if weights is None:
        say("These bundled weights were trained on synthetic scenes (rsseg synth) only; the "
            "scores above are on a synthetic scene they never saw, not on real imagery.")
    files = result["files"]
    say(f"outputs in {files['out_dir']}: scene.tif, labels.tif, classes.tif (COG), "
        f"classes.gpkg ({result['features']} polygons), score.json, quicklook.png")
    if real:
        _say_real(result["real"], say)


def _say_real(real: dict, say) -> None:
    say("")
    say(f"Real image: {real['image']}")
    say(f"({real['credit']}); scored against its label, unlabeled pixels ignored:")
    say(real["table"])
    say(f"weights: {real['weights']}")
    say(f"NOTE: {real['note']}")
    say("outputs (not georeferenced, like the JPEG: pixel grid only): real_classes.tif (COG), "
        "real_labels.tif, real_score.json, real_quicklook.png")
