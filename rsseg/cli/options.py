"""Options shared by several commands (one definition, one help text)."""

from __future__ import annotations

import click

# Window layout shared by predict and batch: the library's one default
# (rsseg.predict.settings imports nothing heavy, so --help stays fast).
from rsseg.predict.settings import AUTO, BLENDS, DEFAULT_TILE, TTA_MODES, ZOOM_RANGE, check_zoom

debug_option = click.option("--debug", is_flag=True, expose_value=False,
                            help="Show full tracebacks on errors.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True,
                               help="Show a progress bar on stderr.")
progress_json_option = click.option(
    "--progress-json", is_flag=True,
    help="Write progress as JSON lines on stdout (for programs such as the QGIS plugin).")
stac_option = click.option(
    "--stac", is_flag=True,
    help="Also write a STAC Item beside each class raster (NAME.stac.json: footprint, grid, "
         "classes, model, assets; batch adds mosaic.stac.json, a Collection). See docs/stac.md.")


def _set_quiet(ctx, param, value):
    if value:
        ctx.meta["rsseg.quiet"] = True


# Eager and not passed to the command: every command gets it without a parameter of its own.
quiet_option = click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                            callback=_set_quiet,
                            help="No completion line (errors and warnings are still shown).")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Random seed.")

tta_option = click.option(
    "--tta", type=click.Choice(TTA_MODES), default="none", show_default=True,
    help="Test-time augmentation: average each window's class scores over 4 flipped (flip) "
         "or all 8 flipped and turned (d4) views. Costs one forward pass per view.")


_ZOOM_HELP = ("Show the network each window magnified by this factor (its scores are "
              "brought back to the scene's grid): the scene's pixel size over that of the "
              "model's training imagery, e.g. 1.25 for imagery coarser than the model knows.")


def _parse_zoom(ctx, param, value):
    """A factor in 0.25-4, or ``auto`` (from the scene's and the checkpoint's pixel sizes)."""
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        return check_zoom(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a factor between {ZOOM_RANGE[0]:g} and "
                                 f"{ZOOM_RANGE[1]:g}, or {AUTO}") from None


zoom_option = click.option(
    "--zoom", default="1", show_default=True, metavar="FACTOR|auto", callback=_parse_zoom,
    help=_ZOOM_HELP + " auto: that ratio from the scene's georeferencing and the pixel size "
                      "the checkpoint records of its training imagery (1 when unknown).")


class BatchSize(click.ParamType):
    """A positive integer or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if str(value).strip().lower() == AUTO:
            return AUTO
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        if number < 1:
            self.fail(f"{number} is not >= 1", param, ctx)
        return number


def window_options(f):
    """--tile, --overlap, --blend."""
    for opt in reversed((
        click.option("--tile", type=click.IntRange(min=16), default=None,
                     help=f"Window size in pixels. Default: the checkpoint's, else {DEFAULT_TILE}."),
        click.option("--overlap", type=click.IntRange(min=0), default=None,
                     help="Overlap between windows in pixels. Default: the checkpoint's when "
                          "it is at most half the tile, else tile/4."),
        click.option("--blend", type=click.Choice(BLENDS), default="cosine", show_default=True,
                     help="How overlapping windows are combined."),
    )):
        f = opt(f)
    return f


def label_options(default_classes: str):
    """--classes FILE|NAME and --label-format index|rgb|isprs-rgb (train, score)."""
    def decorate(f):
        f = click.option(
            "--label-format", type=click.Choice(["index", "rgb", "isprs-rgb"]),
            default="index", show_default=True,
            help="Labels as class values (255 = unlabelled), or class colours (RGB or a "
                 "palette); isprs-rgb = --classes isprs --label-format rgb.")(f)
        return click.option(
            "--classes", default=None, metavar="FILE|NAME",
            help="Class scheme: a JSON file, or a built-in name (isprs, dubai-aerial, loveda, "
                 f"a bundled weights tag) [default: {default_classes}].")(f)
    return decorate


def common_options(f):
    """--overwrite, --progress/--no-progress, --progress-json, --quiet, --debug."""
    for opt in (debug_option, quiet_option, progress_json_option, progress_option,
                overwrite_option):
        f = opt(f)
    return f


def report_done(message: str, mode: str, **result) -> None:
    """The completion line of a command (what was written, classes, time, Mpx/s).

    On stderr for people; a JSON ``result`` event on stdout with ``--progress-json``;
    nothing with ``--quiet``.
    """
    if click.get_current_context().meta.get("rsseg.quiet"):
        return
    if mode == "json":
        import json

        click.echo(json.dumps({"event": "result", "message": message, **result}))
    else:
        click.echo(message, err=True)


def rate(megapixels: float, seconds: float) -> str:
    return f"{seconds:.1f} s, {megapixels / max(seconds, 1e-9):.1f} Mpx/s"


def parse_bands(ctx, param, value):
    """'1,2,3' -> [1, 2, 3]; 1-based, repeats allowed (1,1,1 feeds a pan image to RGB)."""
    if value is None or value == "":
        return None
    try:
        bands = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("expected comma-separated 1-based band numbers, e.g. 1,2,3")
    if not bands or any(b < 1 for b in bands):
        raise click.BadParameter("band numbers start at 1")
    return bands


def parse_band_files(ctx, param, values):
    """Each ``PATH[:BANDS]`` of a repeatable option -> :class:`rsseg.io.scene.BandFile`."""
    from rsseg.io.scene import parse_band_file

    try:
        return tuple(parse_band_file(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
