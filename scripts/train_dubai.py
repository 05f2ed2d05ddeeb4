#!/usr/bin/env python3
"""Train the bundled real-imagery weights on the Dubai aerial data set (``dubai-aerial`` tag).

Data: "Semantic segmentation of aerial imagery", satellite RGB JPEGs of Dubai (MBRSC)
labelled by Humans in the Loop, CC0 1.0; credit "Humans in the Loop / MBRSC". Tiles 1-6
train, tile 7 (an area never trained on) validates as whole images, sliding window, the
per-class IoU of the five real classes (unlabelled and every other mask colour ignored).

    python scripts/train_dubai.py --minutes 89 --out build/dubai/run      # train (1 thread)
    python scripts/train_dubai.py --bundle build/dubai/run/best.pt --tag dubai-aerial-holdout7

Validation tiles that are also training tiles (``--train-tiles 1,2,3,4,5,6,7 --val-tiles 7``,
for the weights shipped once the recipe has been scored on an unseen tile) are scored as
*seen*: the run keeps its last step (a score on seen data picks nothing) and the card
says that no unseen area was left.

Recipe (BAFNet / LWGANet papers where it fits a CPU): AdamW, linear warm-up then cosine
decay, cross-entropy + Dice, flips and 90-degree rotations, log-uniform scale jitter,
mild brightness/contrast jitter, half the windows centred on a uniformly drawn class.
The learning-rate schedule follows wall time (``--minutes``) rather than a step count, so
the run ends on time whatever the load of the shared CPU; the best validation checkpoint
is written as it goes (``best.pt``), so a usable model exists at any moment.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "rsseg" / "weights"
DEFAULT_DATA = Path("/work/shared/data/dubai_aerial")
TAG = "dubai-aerial"  # the shipped weights: every released tile
HOLDOUT_TAG = "dubai-aerial-holdout7"  # the same recipe without tile 7, scored on it
CLASS_NAMES = ("building", "land", "road", "vegetation", "water")
CLASS_COLOURS = ((60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41))
CREDIT = "Humans in the Loop / MBRSC"


def note(train_tiles: list[int], val_tiles: list[int]) -> str:
    """The checkpoint's note: the data, the split and the limits."""
    unseen = [t for t in val_tiles if t not in train_tiles]
    split = (f"validated on unseen tile(s) {_listed(unseen)}" if unseen else
             "every released tile trained on: no unseen area left to validate on")
    return ("trained on real RGB satellite imagery of Dubai (\"Semantic segmentation of aerial "
            f"imagery\", Humans in the Loop / MBRSC, CC0 1.0), tiles {_listed(train_tiles)}; "
            f"{split}. One city, one sensor, ground resolution not stated: not an ISPRS model")


def _listed(tiles: list[int]) -> str:
    return ", ".join(map(str, tiles))


@dataclass
class Image:
    name: str
    pixels: np.ndarray  # (3, H, W) uint8 RGB
    labels: np.ndarray  # (H, W) uint8 class ids, 255 = ignore


def load_tiles(data: Path, tiles: list[int]) -> list[Image]:
    """Every image/mask pair of the given tiles, in memory (the data set is 22 MB of JPEG)."""
    import rasterio

    from rsseg.io.colour_labels import read_colour_labels

    images = []
    for t in tiles:
        for jpg in sorted((data / f"tile{t}" / "images").glob("*.jpg")):
            mask = data / f"tile{t}" / "masks" / f"{jpg.stem}.png"
            with rasterio.open(jpg) as src:
                pixels = src.read((1, 2, 3))
            labels = read_colour_labels(mask, scheme())
            if labels.shape != pixels.shape[1:]:
                raise SystemExit(f"{mask}: size {labels.shape} != image {pixels.shape[1:]}")
            images.append(Image(f"tile{t}/{jpg.stem}", pixels, labels))
    return images


def band_statistics(images: list[Image]):
    """Per-band mean/std over labelled pixels (rsseg's streaming moments)."""
    from rsseg.checkpoint import Normalization
    from rsseg.training.normalisation import RunningMoments

    moments = RunningMoments.empty(3)
    for im in images:
        moments.add(im.pixels[:, im.labels != 255])
    return Normalization(["R", "G", "B"], moments.mean.tolist(), moments.std.tolist())


def class_counts(images: list[Image]) -> np.ndarray:
    return sum(np.bincount(im.labels[im.labels != 255], minlength=len(CLASS_NAMES))
               for im in images)


def class_grids(images: list[Image]):
    """Per image: class pixels per 32 x 32 cell, for rsseg's class-balanced sampler."""
    from rsseg.training.sampling import MIN_CELL, ClassGrid

    k, cell, grids = len(CLASS_NAMES), MIN_CELL, []
    for im in images:
        h, w = im.labels.shape
        rows, cols = -(-h // cell), -(-w // cell)
        r_idx, c_idx = np.indices((h, w)) // cell
        valid = im.labels != 255
        flat = (r_idx[valid] * cols + c_idx[valid]) * k + im.labels[valid]
        counts = np.bincount(flat, minlength=rows * cols * k).reshape(rows, cols, k)
        grids.append(ClassGrid(cell, counts))
    return grids


class WindowSampler:
    """Random training windows with scale jitter, flips, rotations and colour jitter."""

    def __init__(self, images, norm, crop, scale_min, scale_max, class_balance, seed,
                 colour_jitter=1.0):
        from rsseg.training.sampling import ClassSampler

        self.images, self.norm, self.crop = images, norm, crop
        self.log_scales = (math.log(scale_min), math.log(scale_max))
        self.class_balance = class_balance
        self.colour_jitter = colour_jitter
        self.classes = ClassSampler(class_grids(images))
        areas = np.array([im.labels.size for im in images], np.float64)
        self.image_p = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def centre(self) -> tuple[int, int, int]:
        if self.rng.random() < self.class_balance:
            return self.classes.draw(self.rng)
        i = int(self.rng.choice(len(self.images), p=self.image_p))
        h, w = self.images[i].labels.shape
        return i, int(self.rng.integers(h)), int(self.rng.integers(w))

    def window(self):
        """One (3, crop, crop) float32 normalised window and its (crop, crop) labels."""
        import torch
        import torch.nn.functional as F

        i, row, col = self.centre()
        im = self.images[i]
        h, w = im.labels.shape
        zoom = math.exp(self.rng.uniform(*self.log_scales))  # >1 magnifies, <1 shows more
        size = min(h, w, max(8, round(self.crop / zoom)))
        r0 = int(np.clip(row - size // 2, 0, h - size))
        c0 = int(np.clip(col - size // 2, 0, w - size))
        x = torch.from_numpy(im.pixels[:, r0:r0 + size, c0:c0 + size].astype(np.float32))
        y = torch.from_numpy(im.labels[r0:r0 + size, c0:c0 + size].copy())
        if size != self.crop:
            x = F.interpolate(x[None], size=(self.crop, self.crop), mode="bilinear",
                              align_corners=False, antialias=size > self.crop)[0]
            y = F.interpolate(y[None, None].float(), size=(self.crop, self.crop),
                              mode="nearest")[0, 0].to(torch.uint8)
        if self.colour_jitter:
            # Tiles differ in exposure and haze by far more than a little (mean RGB 76 to
            # 175 across the seven): jitter gain, contrast and offset as widely, with a
            # small per-channel cast, and clip as a sensor saturates.
            j = self.colour_jitter
            gain = math.exp(self.rng.uniform(-0.35, 0.35) * j)
            contrast = math.exp(self.rng.uniform(-0.25, 0.25) * j)
            shift = self.rng.uniform(-40, 40) * j + self.rng.uniform(-10, 10, size=3) * j
            mean = x.mean(dim=(1, 2), keepdim=True)
            x = (x - mean) * contrast + mean * gain + torch.tensor(shift, dtype=torch.float32)[:, None, None]
            x = x.clamp(0, 255)
        k = int(self.rng.integers(4))
        x, y = torch.rot90(x, k, (1, 2)), torch.rot90(y, k, (0, 1))
        if self.rng.random() < 0.5:
            x, y = x.flip(2), y.flip(1)
        m = torch.tensor(self.norm.mean, dtype=torch.float32)[:, None, None]
        s = torch.tensor(self.norm.std, dtype=torch.float32)[:, None, None]
        return (x - m) / s, y.long()

    def batch(self, n: int):
        import torch

        xs, ys = zip(*(self.window() for _ in range(n)))
        return torch.stack(xs), torch.stack(ys)


def lr_at(progress: float, peak: float, warmup: float = 0.03, floor: float = 0.01) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine down to ``floor*peak``."""
    if progress < warmup:
        return peak * max(progress / warmup, 0.02)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def validate(model, images: list[Image], norm, tile: int = 512, margin: int = 64) -> dict:
    """Scores over whole images, sliding window, centre of each tile only."""
    import torch

    from rsseg.score.metrics import confusion_matrix, scores_from_confusion
    from rsseg.training.evaluate import majority_baseline_miou, predict_tile, tile_windows

    k = len(CLASS_NAMES)
    cm = np.zeros((k, k), np.int64)
    was_training = model.training
    model.eval()
    for im in images:
        h, w = im.labels.shape
        for (c0, r0, cw0, ch0), (cc, cr, cw, ch) in tile_windows(w, h, tile, margin):
            x = norm.apply(im.pixels[:, r0:r0 + ch0, c0:c0 + cw0])
            pred = predict_tile(model, x, torch.device("cpu"))
            lab = im.labels[r0:r0 + ch0, c0:c0 + cw0]
            cm += confusion_matrix(lab[cr:cr + ch, cc:cc + cw], pred[cr:cr + ch, cc:cc + cw], k)
    model.train(was_training)
    scores = scores_from_confusion(cm, list(CLASS_NAMES))
    return {"miou": round(scores["miou"], 4), "oa": round(scores["oa"], 4),
            "iou": {c["name"]: None if c["iou"] is None else round(c["iou"], 4)
                    for c in scores["classes"]},
            "majority_baseline_miou": round(majority_baseline_miou(cm), 4),
            "confusion_matrix": cm.tolist()}


def scheme():
    """The built-in ``dubai-aerial`` scheme (rsseg/schemes/): 5 classes, ignore colours."""
    from rsseg.classes import load_scheme

    found = load_scheme("dubai-aerial")
    assert found.names == CLASS_NAMES and found.colours == CLASS_COLOURS
    return found


def save_checkpoint(model, norm, path: Path, training: dict) -> None:
    from rsseg.checkpoint import Checkpoint

    ckpt = Checkpoint.from_model(model, classes=scheme(), bands=norm,
                                 tile={"size": 512, "overlap": 128},
                                 note=note(training["train_tiles"], training["val_tiles"]),
                                 training=training)
    ckpt.save(path)


def log(out: Path, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out / "log.jsonl", "a") as f:
        f.write(line + "\n")


def train(args) -> None:
    import torch

    from rsseg.models import create_model
    from rsseg.training.loss import HybridLoss

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    train_images = load_tiles(args.data, args.train_tiles)
    val_images = load_tiles(args.data, args.val_tiles)
    if args.init:
        # A continued network keeps the input standardisation it learnt with: new
        # statistics (other tiles) would shift every input it has seen.
        from rsseg.checkpoint import load_checkpoint

        norm = load_checkpoint(args.init).bands
    else:
        norm = band_statistics(train_images)
    seen = bool(set(args.val_tiles) & set(args.train_tiles))
    counts = class_counts(train_images)
    log(out, {"event": "data", "train_images": len(train_images), "val_images": len(val_images),
              "train_mpx": round(sum(i.labels.size for i in train_images) / 1e6, 2),
              "val_mpx": round(sum(i.labels.size for i in val_images) / 1e6, 2),
              "class_pixels": dict(zip(CLASS_NAMES, counts.tolist())),
              "mean": norm.mean, "std": norm.std, "load_s": round(time.time() - t_start, 1)})
    torch.manual_seed(args.seed)
    model = create_model(args.model, in_channels=3, num_classes=len(CLASS_NAMES)).train()
    if args.init:  # continue from an earlier run's weights (a new schedule, same recipe)
        from rsseg.checkpoint import load_checkpoint

        model.load_state_dict(load_checkpoint(args.init).build_model().float().state_dict())
    sampler = WindowSampler(train_images, norm, args.crop, args.scale_min, args.scale_max,
                            args.class_balance, args.seed, args.colour_jitter)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = HybridLoss(dice_weight=args.dice_weight, ignore_index=255)
    budget = args.minutes * 60
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("bundle",)}
    t0 = time.time()
    next_val, step, best, train_s, val_s = args.val_every * 60, 0, -1.0, 0.0, 0.0
    losses = []
    while True:
        elapsed = time.time() - t0
        done = elapsed >= budget
        if elapsed >= next_val or done:
            tv = time.time()
            scores = validate(model, val_images, norm)
            val_s += time.time() - tv
            record = {"event": "val", "step": step, "samples": step * args.batch,
                      "minutes": round((time.time() - t0) / 60, 2),
                      "train_loss": round(float(np.mean(losses[-200:])), 4) if losses else None,
                      "val_seconds": round(time.time() - tv, 1),
                      **{k: v for k, v in scores.items() if k != "confusion_matrix"}}
            log(out, record)
            if scores["miou"] > best or seen:  # seen validation tiles: keep the last step
                best = scores["miou"]
                save_checkpoint(model, norm, out / "best.pt", {
                    "tag": TAG, "step": step, "samples": step * args.batch,
                    "train_seconds": round(train_s, 1), "validation": scores,
                    "train_tiles": args.train_tiles, "val_tiles": args.val_tiles,
                    "validation_seen": seen,
                    "recipe": recipe, "credit": CREDIT})
            next_val += args.val_every * 60
            if done:
                break
        ts = time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(min(1.0, elapsed / budget), args.lr)
        x, y = sampler.batch(args.batch)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        train_s += time.time() - ts
        if step % 50 == 0:
            log(out, {"event": "step", "step": step, "loss": round(float(np.mean(losses[-50:])), 4),
                      "lr": round(optimizer.param_groups[0]["lr"], 6),
                      "samples_per_s": round(step * args.batch / train_s, 2),
                      "minutes": round((time.time() - t0) / 60, 2)})
    log(out, {"event": "end", "best_miou": best, "steps": step, "train_seconds": round(train_s, 1),
              "val_seconds": round(val_s, 1), "samples_per_s": round(step * args.batch / train_s, 2)})


def bundle(best: Path, data: Path, threads: int, tag: str = TAG) -> None:
    """Write rsseg/weights/<model>.<tag>.pt (fp16) + .json, scored as shipped.

    Weights whose validation tiles were trained on carry no validation score (only the
    score on those seen tiles, named so) and point to the held-out tag of the same
    recipe, if bundled, for the estimate on an unseen area."""
    import torch

    from rsseg.checkpoint import load_checkpoint

    ckpt = load_checkpoint(best)
    name = ckpt.model_name
    target = WEIGHTS / f"{name}.{tag}.pt"
    ckpt.save(target, half=True)
    shipped = load_checkpoint(target)
    t = ckpt.training
    train_tiles, val_tiles = t["train_tiles"], t["val_tiles"]
    scores = validate(shipped.build_model(), load_tiles(data, val_tiles), shipped.bands)
    recipe = t["recipe"]
    if t.get("validation_seen"):
        held_out = WEIGHTS / f"{name}.{HOLDOUT_TAG}.json"
        estimate = json.loads(held_out.read_text())["metrics"] if held_out.is_file() else {}
        metrics = {"split": f"trained on tiles {train_tiles}: every released tile, no unseen "
                            f"area left. The same recipe without tile 7 ({HOLDOUT_TAG}) "
                            f"scores {estimate.get('miou')} mIoU on it",
                   "unseen_estimate_miou": estimate.get("miou"),
                   "seen_miou": scores["miou"], "seen_oa": scores["oa"],
                   "seen_iou": scores["iou"]}
        flat = {}
    else:
        metrics = {"split": f"trained on tiles {train_tiles}, validated on unseen tile(s) "
                            f"{val_tiles} (whole images, sliding window 512, margin 64)",
                   "miou": scores["miou"], "oa": scores["oa"], "iou": scores["iou"],
                   "majority_baseline_miou": scores["majority_baseline_miou"],
                   "fp32_miou": t["validation"]["miou"]}
        flat = {"val_miou": scores["miou"], "val_oa": scores["oa"], "val_iou": scores["iou"]}
    meta = {
        "model": name, "tag": tag, **flat, "steps": t["step"], "samples": t["samples"],
        "crop": recipe["crop"], "batch_size": recipe["batch"], "lr": recipe["lr"],
        "train_seconds": t["train_seconds"],
        "trained_on": "Dubai aerial imagery (Humans in the Loop / MBRSC, CC0 1.0), "
                      f"tiles {_listed(train_tiles)}",
        "gsd_m": None,  # the publisher states no ground resolution
        "classes": list(CLASS_NAMES), "bands": ["R", "G", "B"], "metrics": metrics,
        "credit": CREDIT, "licence": "CC0 1.0 (data, per its publisher)",
        "file": target.name, "bytes": target.stat().st_size, "dtype": "float16",
        "note": note(train_tiles, val_tiles),
        "torch": torch.__version__, "threads": threads,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "trained_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(best.stat().st_mtime)),
    }
    (WEIGHTS / f"{name}.{tag}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1), flush=True)


def tiles(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "dubai" / "run")
    parser.add_argument("--model", default="baff_skipnet")
    parser.add_argument("--train-tiles", type=tiles, default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--val-tiles", type=tiles, default=[7])
    parser.add_argument("--minutes", type=float, default=89.0, help="wall-time budget")
    parser.add_argument("--val-every", type=float, default=15.0, help="minutes between scores")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--scale-min", type=float, default=0.6)
    parser.add_argument("--scale-max", type=float, default=1.5)
    parser.add_argument("--class-balance", type=float, default=0.5)
    parser.add_argument("--dice-weight", type=float, default=1.0, help="0: cross-entropy only")
    parser.add_argument("--colour-jitter", type=float, default=1.0,
                        help="strength of the photometric jitter (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                        help="start from these weights (e.g. the shipped dubai-aerial file)")
    parser.add_argument("--bundle", type=Path, default=None, metavar="BEST_PT",
                        help="only write the shipped fp16 weights from a finished run")
    parser.add_argument("--tag", default=TAG, help="the bundled tag --bundle writes")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.bundle:
        bundle(args.bundle, args.data, args.threads, args.tag)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
