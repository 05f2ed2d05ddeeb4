"""What ``rsseg models`` reports about each registered network.

Parameters and MACs are counted for 3 input bands and 6 classes (the ISPRS
scheme) on a 1x3x512x512 input, with ``torch.utils.flop_counter`` through
:func:`rsseg.models._complexity.count_macs`. The networks are built on the
``meta`` device, so counting needs shapes only and takes well under a second per
network; a network with an operation that has no meta implementation is counted
on the CPU instead. Results are cached for the life of the process.
"""

from __future__ import annotations

import functools
from typing import Any

from rsseg.errors import ModelError

MACS_INPUT = (1, 3, 512, 512)
MACS_CLASSES = 6


@functools.lru_cache(maxsize=None)
def complexity(name: str) -> tuple[int, int]:
    """``(params, macs_512)`` of network ``name`` with 3 bands and 6 classes."""
    import torch

    from rsseg.models import create_model
    from rsseg.models._complexity import count_macs, count_params

    in_channels = MACS_INPUT[1]
    try:
        with torch.device("meta"):
            model = create_model(name, in_channels=in_channels, num_classes=MACS_CLASSES)
        return count_params(model), count_macs(model, MACS_INPUT)
    except (NotImplementedError, RuntimeError):
        # Some operator lacks a meta kernel: count with real (zero) tensors.
        model = create_model(name, in_channels=in_channels, num_classes=MACS_CLASSES)
        return count_params(model), count_macs(model, MACS_INPUT)


def weights_records(name: str) -> list[dict[str, Any]]:
    """Its bundled weights, default first: tag, default, classes, bands, trained_on, metrics."""
    from rsseg.weights.bundled import bundled_tags, weights_record

    return [weights_record(w, default=i == 0) for i, w in enumerate(bundled_tags(name))]


def describe(name: str) -> dict[str, Any]:
    """One network's record: name, params, macs_512, bundled weights by tag, paper, figures."""
    from rsseg.models import model_entry

    try:
        entry = model_entry(name)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    params, macs = complexity(name)
    weights = weights_records(name)
    return {
        "name": name,
        "params": params,
        "macs_512": macs,
        "bundled_weights": bool(weights),
        "weights": weights,
        "paper": entry.paper,
        "paper_figures": dict(entry.paper_figures),
        "paper_config": dict(entry.paper_config),
        "stride": entry.stride,
    }


def describe_models(names: list[str] | tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Records for ``names`` (all listed networks when empty), in the order given."""
    from rsseg.models import list_models

    return [describe(name) for name in (names or list_models())]


def format_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table (name, params, MACs at 512x512, bundled tags, paper), then one
    block per bundled tag: classes, bands, training data, GSD, validation scores."""
    header = ("name", "params", "MACs@512", "weights", "paper")
    rows = [(r["name"], f"{r['params'] / 1e6:.2f} M", f"{r['macs_512'] / 1e9:.2f} G",
             ",".join(w["tag"] + ("*" if w["default"] and len(r["weights"]) > 1 else "")
                      for w in r["weights"]) or "-", r["paper"] or "-") for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) if i == 0 else cell.rjust(width) if i < 3 else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    tags = [(r["name"], w) for r in records for w in r["weights"]]
    if tags:
        lines += ["", "bundled weights (--weights TAG; * = default when a model has several):"]
        lines += [line for name, w in tags for line in _tag_lines(name, w)]
    return "\n".join(lines)


def _tag_lines(name: str, w: dict[str, Any]) -> list[str]:
    metrics = w["metrics"]
    scores = ", ".join(f"{key} {metrics[key]:.3f}" for key in ("miou", "oa", "mf1")
                       if isinstance(metrics.get(key), (int, float)))
    if not scores:  # e.g. weights that saw every labelled area: the card says why
        scores = f"- ({metrics['split']})" if metrics.get("split") else "-"
    gsd = f"{w['gsd_m']:g} m" if w["gsd_m"] else "unknown"
    return [f"  {name} {w['tag']}{' (default)' if w['default'] else ''}",
            f"    classes: {', '.join(w['classes'])}",
            f"    bands: {', '.join(w['bands'])}; GSD: {gsd}",
            f"    trained on: {w['trained_on'] or '-'}",
            f"    validation: {scores}"]
