"""Score reports: a text table, JSON, CSV and a confusion-matrix plot.

JSON is the report dict itself (fractions 0-1, ``null`` for undefined). The
CSV has one row per (scene, convention, class) plus one summary row per
(scene, convention) whose ``class_name`` is ``(all)``; ``scene`` is ``(all)``
for the global numbers. Columns: :data:`CSV_COLUMNS`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path

import numpy as np

from rsseg.atomic import atomic_output, check_output_path

CSV_COLUMNS = ("scene", "convention", "class_id", "class_name", "iou", "f1", "precision",
               "recall", "support", "predicted", "included_in_mean", "oa", "miou", "mf1",
               "kappa")
ALL = "(all)"


# ---------------------------------------------------------------- table

def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(report: dict) -> str:
    """The report as text for a terminal (percentages)."""
    lines = [f"convention {report['convention_description']}",
             f"class names: {report.get('class_names_from', '?')}", ""]
    lines += _class_table(report)
    lines.append("")
    lines += _summary_table(report)
    scenes = report.get("scenes", [])
    if len(scenes) > 1:
        lines.append("")
        lines += _scene_table(scenes)
    lines.append("")
    lines.append(_counts_line(report["counts"]))
    return "\n".join(lines)


def _class_table(report: dict) -> list[str]:
    width = max(12, *(len(c["name"]) for c in report["classes"]))
    head = f"{'class':<{width}} {'IoU':>7} {'F1':>7} {'prec':>7} {'recall':>7} {'support':>12}  mean"
    lines = [head, "-" * len(head)]
    for c in report["classes"]:
        mark = "yes" if c["included_in_mean"] else f"no ({c.get('note', '')})"
        lines.append(f"{c['name']:<{width}} {_pct(c['iou']):>7} {_pct(c['f1']):>7} "
                     f"{_pct(c['precision']):>7} {_pct(c['recall']):>7} {c['support']:>12,}  {mark}")
    return lines


def _summary_table(report: dict) -> list[str]:
    blocks = [report] + ([report["mmseg"]] if "mmseg" in report else [])
    lines = [f"{'':<8}" + "".join(f"{b['convention']:>10}" for b in blocks)]
    for key, fmt in (("oa", _pct), ("miou", _pct), ("mf1", _pct), ("kappa", _num)):
        label = {"oa": "OA", "miou": "mIoU", "mf1": "mF1", "kappa": "kappa"}[key]
        lines.append(f"{label:<8}" + "".join(f"{fmt(b[key]):>10}" for b in blocks))
    return lines


def _scene_table(scenes: list[dict]) -> list[str]:
    width = max(12, *(len(s["name"]) for s in scenes))
    lines = [f"{'scene':<{width}} {'OA':>7} {'mIoU':>7} {'mF1':>7} {'scored px':>14}"]
    for s in scenes:
        lines.append(f"{s['name']:<{width}} {_pct(s['oa']):>7} {_pct(s['miou']):>7} "
                     f"{_pct(s['mf1']):>7} {s['pixels']:>14,}")
    return lines


def _counts_line(counts: dict) -> str:
    return (f"pixels: {counts['total']:,} total, {counts['scored']:,} scored, "
            f"{counts['label_ignored']:,} ignored in the label (eroded boundary "
            f"{counts['eroded_boundary']:,}, ignore value {counts.get('ignore_value', 0):,}, "
            f"label nodata {counts['label_nodata']:,}, unknown "
            f"{counts['unknown_label']['pixels']:,}), {counts['prediction_nodata']:,} "
            "prediction nodata")


# ---------------------------------------------------------------- files

def csv_rows(report: dict) -> list[dict]:
    """Rows of the CSV report (see the module docstring)."""
    rows = []
    scopes = [(ALL, report)] + [(s["name"], s) for s in report.get("scenes", [])]
    for scene, block in scopes:
        for scores in [block] + ([block["mmseg"]] if "mmseg" in block else []):
            for c in scores["classes"]:
                rows.append({"scene": scene, "convention": scores["convention"],
                             "class_id": c["id"], "class_name": c["name"], "iou": c["iou"],
                             "f1": c["f1"], "precision": c["precision"], "recall": c["recall"],
                             "support": c["support"], "predicted": c["predicted"],
                             "included_in_mean": c["included_in_mean"]})
            rows.append({"scene": scene, "convention": scores["convention"],
                         "class_name": ALL, "oa": scores["oa"], "miou": scores["miou"],
                         "mf1": scores["mf1"], "kappa": scores["kappa"]})
    return rows


def write_csv(report: dict, path: str | os.PathLike) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in csv_rows(report):
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})


def write_json(report: dict, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False)
        f.write("\n")


def write_plot(report: dict, path: str | os.PathLike) -> None:
    """Confusion matrix as a PNG, each row normalised to its label's pixels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    cm = np.asarray(report["confusion_matrix"], dtype=np.float64)
    names = [c["name"] for c in report["classes"]]
    support = cm.sum(axis=1, keepdims=True)
    rows = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    size = 2.5 + 0.8 * len(names)
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of label pixels")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    for i in range(len(names)):
        for j in range(len(names)):
            if support[i, 0] > 0:
                ax.text(j, i, f"{100 * rows[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_title(f"OA {_pct(report['oa'])}  mIoU {_pct(report['miou'])}  "
                 f"({report['convention']})")
    fig.tight_layout()
    fig.savefig(path, format="png")


def check_report_paths(paths: dict, overwrite: bool) -> None:
    """Fail before any work when a requested report file cannot be written."""
    for path in paths.values():
        if path is not None:
            check_output_path(path, overwrite)


def write_reports(report: dict, overwrite: bool, json_path=None, csv_path=None,
                  plot_path=None) -> list[Path]:
    """Write the requested files; all of them appear, or none does.

    Every file is written under a temporary name first; the renames happen
    together at the end, after the last writer succeeded.
    """
    writers = [(json_path, write_json), (csv_path, write_csv), (plot_path, write_plot)]
    written = []
    with contextlib.ExitStack() as stack:
        for path, writer in writers:
            if path is not None:
                tmp = stack.enter_context(atomic_output(path, overwrite=overwrite))
                writer(report, tmp)
                written.append(Path(path))
    return written
