"""``rsseg models``: list the networks (size, cost, paper) and their bundled weights by tag."""

from __future__ import annotations

import click

from rsseg.cli.options import debug_option


@click.command("models")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list: name, params, macs_512, bundled_weights, weights (per "
                   "tag: tag, default, file, classes, bands, trained_on, gsd_m, metrics), paper, "
                   "paper_figures, paper_config, stride.")
@debug_option
def models(names, as_json):
    """List the available networks, or only NAMES, with every bundled weights tag
    (classes, bands, training data, GSD, validation scores).

    Parameters and MACs (multiply-accumulates) are counted for 3 bands and 6
    classes at 512x512; the paper's own figures refer to the configuration
    printed with --json (usually 19 Cityscapes classes).
    """
    import json

    from rsseg.weights.catalog import describe_models, format_table

    records = describe_models(list(names))
    click.echo(json.dumps(records, indent=2) if as_json else format_table(records))
