"""``rsseg score``: per-class IoU/F1 of class rasters against label rasters."""

from __future__ import annotations

import time

import click

from rsseg.cli.options import common_options, label_options, rate, report_done

EPILOG = """\b
Examples:
  rsseg score classes.tif labels.tif
  rsseg score pred.tif mask.png --classes dubai-aerial --label-format rgb
  rsseg score preds/*.tif --labels-dir gts/ --label-format isprs-rgb --eroded \\
      --exclude clutter --json report.json --csv report.csv --plot confusion.png
  rsseg score --pairs pairs.csv --erode-radius 3 --conventions both
"""


@click.command(epilog=EPILOG, short_help="Score class rasters against label rasters.")
@click.argument("rasters", nargs=-1, metavar="PRED... [LABEL]",
                type=click.Path(dir_okay=False))
@click.option("--labels-dir", type=click.Path(file_okay=False),
              help="Pair each PRED with the label of the same name in this directory.")
@click.option("--pairs", "pairs_csv", type=click.Path(dir_okay=False),
              help="CSV file with prediction,label columns (instead of PRED arguments).")
@label_options("the prediction's classes, else isprs")
@click.option("--eroded", is_flag=True,
              help="Labels are eroded-boundary files (ISPRS *_noBoundary): black RGB pixels "
                   "or --ignore-index pixels are boundaries and are ignored.")
@click.option("--erode-radius", type=click.IntRange(min=0), default=0, show_default=True,
              help="Ignore label pixels within R pixels of another class (0: off).")
@click.option("--erode-shape", type=click.Choice(["disc", "square"]), default="disc",
              show_default=True, help="Neighbourhood of --erode-radius: Euclidean disc or "
                                      "Chebyshev square.")
@click.option("--exclude", multiple=True, metavar="CLASS",
              help="Leave a class (name or id) out of mIoU/mF1, e.g. clutter; repeatable. "
                   "OA and kappa still count it.")
@click.option("--ignore-index", type=click.IntRange(0, 255), default=255, show_default=True,
              help="Label value that is never scored.")
@click.option("--ignore-unknown", is_flag=True,
              help="Skip label colours/values and prediction values that are no class "
                   "instead of failing.")
@click.option("--conventions", type=click.Choice(["geoseg", "mmseg", "both"]),
              default="geoseg", show_default=True,
              help="How means are taken; 'both' shows GeoSeg and mmseg numbers side by side.")
@click.option("--align", is_flag=True,
              help="Reproject labels onto the prediction grid (nearest) when grids differ.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Write per-class rows as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the row-normalised confusion matrix as a PNG.")
@common_options
def score(rasters, labels_dir, pairs_csv, classes, label_format, eroded, erode_radius, erode_shape,
          exclude, ignore_index, ignore_unknown, conventions, align, json_path, csv_path,
          plot_path, overwrite, progress, progress_json):
    """Score class rasters (PRED) against label rasters.

    One pair: `rsseg score PRED LABEL`. Several: PRED files with --labels-dir
    (paired by file name) or a --pairs CSV. Prints a per-class table (IoU, F1,
    precision, recall, support) and OA, mIoU, mF1, kappa.
    """
    from rsseg.progress import log_message, progress_mode
    from rsseg.score.pairing import pair_by_name, read_pairs_csv
    from rsseg.score.rasters import score_many
    from rsseg.score.report import check_report_paths, format_table, write_reports

    pairs = _pairs(rasters, labels_dir, pairs_csv, eroded, pair_by_name, read_pairs_csv)
    outputs = {"json": json_path, "csv": csv_path, "plot": plot_path}
    check_report_paths(outputs, overwrite)
    mode = progress_mode(progress, progress_json)
    started = time.perf_counter()
    report = score_many(pairs, exclude=exclude, conventions=conventions, progress_mode=mode,
                        classes=classes, label_format=label_format, ignore_index=ignore_index,
                        eroded=eroded,
                        erode_radius=erode_radius, erode_shape=erode_shape,
                        ignore_unknown=ignore_unknown, align=align)
    written = write_reports(report, overwrite, json_path, csv_path, plot_path)
    table = format_table(report)
    if mode == "json":  # stdout carries JSON lines only: the table goes as log events
        for line in table.splitlines() + [f"wrote {path}" for path in written]:
            log_message(mode, line)
    else:
        click.echo(table)
    present = [c["name"] for c in report["classes"] if c["support"] or c["predicted"]]
    outputs = ", ".join(str(p) for p in written) or "no report files"
    report_done(f"scored {len(pairs)} pair(s), {report['pixels']:,} px (mIoU "
                f"{100 * (report['miou'] or 0):.2f}); classes present: {', '.join(present)}; "
                f"wrote {outputs}; {rate(report['pixels'] / 1e6, time.perf_counter() - started)}",
                mode, written=[str(p) for p in written], classes_present=present)


def _pairs(rasters, labels_dir, pairs_csv, eroded, pair_by_name, read_pairs_csv):
    """(prediction, label) pairs from the arguments; usage errors exit 2."""
    if labels_dir and pairs_csv:
        raise click.UsageError("use either --labels-dir or --pairs, not both")
    if pairs_csv:
        if rasters:
            raise click.UsageError("--pairs lists the rasters; give no PRED arguments")
        return read_pairs_csv(pairs_csv)
    if labels_dir:
        if not rasters:
            raise click.UsageError("give the PRED rasters to pair with --labels-dir")
        return pair_by_name(rasters, labels_dir, eroded=eroded)
    if len(rasters) != 2:
        raise click.UsageError("give PRED LABEL (two rasters), or PRED... with --labels-dir, "
                               "or --pairs CSV")
    return [tuple(rasters)]
