"""Per-epoch training log (CSV + JSON) and the loss / mIoU curves (PNG)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from rsseg.atomic import atomic_output

LOG_CSV = "log.csv"
LOG_JSON = "log.json"
CURVES_PNG = "curves.png"


def _flat_row(entry: dict) -> dict:
    row = {k: v for k, v in entry.items() if not isinstance(v, (dict, list))}
    for name, iou in (entry.get("val_iou") or {}).items():
        row[f"iou_{name}"] = iou
    return row


def write_logs(out_dir: Path, history: Sequence[dict]) -> None:
    """Rewrite log.csv and log.json from the whole history (atomic, so never half-written)."""
    rows = [_flat_row(e) for e in history]
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(out_dir / LOG_CSV, overwrite=True) as tmp:
        Path(tmp).write_text(buf.getvalue())
    with atomic_output(out_dir / LOG_JSON, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(list(history), indent=1))


def plot_curves(out_dir: Path, history: Sequence[dict]) -> Path:
    """Training loss and validation mIoU per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in history]
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [e["train_loss"] for e in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (CE + Dice)", title="Loss")
    ax_miou.plot(epochs, [e["val_miou"] for e in history], marker="o", color="tab:green")
    ax_miou.set(xlabel="epoch", ylabel="validation mIoU", title="Validation mIoU", ylim=(0, 1))
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / CURVES_PNG
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
