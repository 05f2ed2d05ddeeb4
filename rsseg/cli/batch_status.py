"""``rsseg batch-status``: read a batch job's database (counts, failures, throughput, ETA)."""

from __future__ import annotations

import click


@click.command("batch-status", short_help="Show a batch job's progress, failures and ETA.")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (every failed tile with its error) instead of text.")
@click.option("--tiles", is_flag=True,
              help="With --json: include every tile's row (status, checksum, inputs, timings).")
def batch_status(out_dir, as_json, tiles):
    """Summarize the batch job whose output directory is OUT (as given to `rsseg batch -o`).

    Safe while the job runs: the database is only read. Shows tiles done /
    failed / pending, the last run (running, finished, or stopped by a crash),
    its throughput and, while it runs, the time left; then the failed tiles
    with their errors.

    \b
    Examples:
      rsseg batch-status out/
      rsseg batch-status out/ --json | jq '.failed[].error'
    """
    import json

    from rsseg.batch.status import job_status, status_lines

    if tiles and not as_json:
        raise click.BadParameter("needs --json", param_hint="--tiles")
    status = job_status(out_dir, tiles=tiles)
    if as_json:
        click.echo(json.dumps(status, indent=1))
    else:
        for line in status_lines(status):
            click.echo(line)
    return 0
