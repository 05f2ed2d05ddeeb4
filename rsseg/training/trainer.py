"""The training run: setup, epochs, validation, checkpoints and exact resume.

``train(config)`` starts a run in ``config.out_dir``; ``resume(out_dir)``
continues one from its ``last.pt``. Every input is checked (and the training
scenes scanned for normalisation and class counts) before anything is written.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rsseg.atomic import atomic_output, check_folder_creatable, make_folders
from rsseg.checkpoint import Checkpoint
from rsseg.classes import ClassScheme
from rsseg.errors import InputError, ModelError, OutputError
from rsseg.io.normalization import Normalization
from rsseg.predict.predictor import resolve_device
from rsseg.progress import Mode, Progress, log_message
from rsseg.training.config import TrainConfig
from rsseg.training.dataset import Augmentation, RandomWindowDataset
from rsseg.training.evaluate import confusion_on_scenes, count_tiles
from rsseg.training.logs import plot_curves, write_logs
from rsseg.training.loss import HybridLoss
from rsseg.training.normalisation import check_class_counts, count_blocks, scan_scenes
from rsseg.training.sampling import ClassSampler, class_grid
from rsseg.training.scenes import SceneInfo, common_gsd_m, inspect_scenes, pair_scenes
from rsseg.training.setup import (
    build_model,
    load_pretrained,
    use_amp,
    use_channels_last,
)

BEST = "best.pt"
LAST = "last.pt"
RUN_FILES = (BEST, LAST, "log.json", "log.csv")

EpochCallback = Callable[[dict], None]


@dataclass
class TrainResult:
    out_dir: Path
    history: list[dict]
    best_miou: float
    best_path: Path
    last_path: Path
    seconds: float
    model: torch.nn.Module = field(repr=False)


@dataclass
class _Run:
    """Everything an epoch needs; built once by ``train`` or ``resume``."""

    config: TrainConfig
    classes: ClassScheme
    train_infos: list[SceneInfo]
    val_infos: list[SceneInfo]
    normalization: Normalization
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    steps_per_epoch: int
    class_counts: list[int]
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    best_miou: float = -1.0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train(config: TrainConfig, progress: Mode = "bar", overwrite: bool = False,
          on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Check inputs, scan the training scenes, then train ``config.epochs`` epochs."""
    out = Path(config.out_dir)
    _check_run_dir(out, overwrite)  # before the (long) scan of the scenes
    run = _prepare(config, progress)
    make_folders(out)
    return _train_epochs(run, out, progress, on_epoch_end)


def resume(out_dir: str | Path, progress: Mode = "bar", on_epoch_end: EpochCallback | None = None,
           overrides: dict[str, Any] | None = None) -> TrainResult:
    """Continue the run in ``out_dir`` from its ``last.pt`` exactly where it stopped.

    ``overrides`` may change settings that do not alter the result (``device``,
    ``workers``, ``plot``) or extend ``epochs`` (which also stretches the schedule);
    other settings (e.g. ``class_balance``) change how training continues, on purpose.
    """
    out = Path(out_dir)
    ckpt, state = _load_resume_state(out / LAST)
    config = TrainConfig.from_dict(state["config"])
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    config.out_dir = str(out)
    run = _prepare(config, progress, ckpt=ckpt, class_counts=state["class_counts"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.epoch, run.step = int(state["epoch"]), int(state["step"])
    run.best_miou = float(state["best_miou"])
    run.history = list(state["history"])
    run.seconds = float(state.get("seconds", 0.0))
    torch.set_rng_state(state["torch_rng"])
    if run.device.type == "cuda" and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
    if run.epoch >= config.epochs:
        log_message(progress, f"run in {out} already finished {run.epoch} epochs; "
                       "pass --epochs N to train longer")
    return _train_epochs(run, out, progress, on_epoch_end)


# --------------------------------------------------------------------------- setup


def _prepare(config: TrainConfig, progress: Mode, ckpt: Checkpoint | None = None,
             class_counts: list[int] | None = None) -> _Run:
    classes = config.scheme()
    for name in config.exclude_from_mean:
        try:
            classes.index(name)
        except KeyError as exc:
            raise InputError(f"--exclude-from-mean: {exc.args[0]}") from None
    train_pairs = pair_scenes(config.images, config.labels, config.dsm, "training")
    val_pairs = pair_scenes(config.val_images, config.val_labels, config.val_dsm, "validation")
    train_infos = inspect_scenes(train_pairs, config.label_format, what="training")
    bands = train_infos[0].num_bands
    val_infos = inspect_scenes(val_pairs, config.label_format, expect_bands=bands,
                               what="validation")
    if ckpt is None:
        norm, class_counts = _scan(train_infos, val_infos, config, classes, progress)
    else:
        norm = ckpt.bands
        if norm is None or norm.num_bands != bands:
            raise InputError(f"the scenes have {bands} band(s) but the run was trained on "
                             f"{0 if norm is None else norm.num_bands}", config.images[0])
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, bands, classes.num_classes, config.model_config)
    if ckpt is not None:
        model.load_state_dict(ckpt.state_dict)
    elif config.pretrained:
        load_pretrained(model, config.pretrained)
    channels_last = use_channels_last(config.channels_last, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = use_amp(config.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    training_pixels = sum(i.width * i.height for i in train_infos)
    return _Run(config, classes, train_infos, val_infos, norm, model, optimizer, scaler, device,
                amp_dtype, channels_last, config.resolved_steps(training_pixels),
                list(class_counts))


def _scan(train_infos, val_infos, config, classes, progress) -> tuple[Normalization, list[int]]:
    """Band statistics + class counts of the training scenes; validation labels decoded too."""
    total = count_blocks(train_infos) + count_blocks(val_infos)
    with Progress(total, "scanning scenes", progress, unit="block") as bar:
        stats = scan_scenes(train_infos, config.label_format, classes, on_block=bar.update,
                            ignore_unknown=config.ignore_unknown)
        # Decoding the validation labels now finds unknown colours before any output exists.
        scan_scenes(val_infos, config.label_format, classes, with_bands=False,
                    on_block=bar.update, ignore_unknown=config.ignore_unknown)
    check_class_counts(stats, classes, config.min_class_pixels, where=config.labels[0]
                       if len(config.labels) == 1 else f"{len(config.labels)} label files")
    return stats.normalization, stats.class_counts.tolist()


def _check_run_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError("run directory is a file", out)
    if out.is_dir() and not overwrite and any((out / f).exists() for f in RUN_FILES):
        raise OutputError("run directory already holds a training run; continue it with "
                          "--resume or pass --overwrite to start again", out)
    check_folder_creatable(out, out)


def _load_resume_state(path: Path) -> tuple[Checkpoint, dict]:
    from rsseg.checkpoint import load_checkpoint

    if not path.exists():
        raise InputError(f"no {LAST} to resume from; is this an rsseg train run directory?",
                         path.parent)
    ckpt = load_checkpoint(path)  # clear errors for unsafe or foreign files
    state = torch.load(path, map_location="cpu", weights_only=True).get("resume")
    if not state:
        raise ModelError("checkpoint holds no training state to resume from (only last.pt "
                         "of an rsseg train run does)", path)
    return ckpt, dict(state)


# --------------------------------------------------------------------------- epochs


def _lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up from 1% then cosine decay to ``min_lr_fraction``."""
    warmup = max(1, int(round(config.warmup_fraction * total)))
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = config.min_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _train_epochs(run: _Run, out: Path, progress: Mode,
                  on_epoch_end: EpochCallback | None) -> TrainResult:
    cfg = run.config
    sampler = None
    if cfg.class_balance > 0:
        sampler = ClassSampler([class_grid(i, cfg.label_format, run.classes)
                                for i in run.train_infos])
    dataset = RandomWindowDataset(
        run.train_infos, cfg.label_format, run.classes, run.normalization, cfg.crop,
        run.steps_per_epoch * cfg.batch_size, cfg.seed,
        Augmentation(cfg.scale_min, cfg.scale_max), sampler, cfg.class_balance)
    loss_fn = HybridLoss(cfg.ce_weight, cfg.dice_weight)
    total_steps = cfg.epochs * run.steps_per_epoch
    for epoch in range(run.epoch, cfg.epochs):
        t0 = time.perf_counter()
        dataset.epoch = epoch
        train_loss = _one_epoch(run, dataset, loss_fn, total_steps, epoch, progress)
        metrics = _validate(run, progress)
        seconds = time.perf_counter() - t0
        run.seconds += seconds
        run.epoch = epoch + 1
        entry = {"epoch": run.epoch, "step": run.step,
                 "lr": run.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                 **metrics, "seconds": round(seconds, 2),
                 "samples_per_s": round(run.steps_per_epoch * cfg.batch_size / seconds, 3)}
        run.history.append(entry)
        improved = entry["val_miou"] > run.best_miou
        if improved:
            run.best_miou = entry["val_miou"]
            _checkpoint(run, entry).save(out / BEST)
        _save_last(run, out / LAST, entry)
        write_logs(out, run.history)
        if cfg.plot:
            plot_curves(out, run.history)
        log_message(progress, f"epoch {run.epoch}/{cfg.epochs}: loss {train_loss:.4f}, val mIoU "
                       f"{entry['val_miou']:.4f}, OA {entry['val_oa']:.4f}"
                       f"{' (best)' if improved else ''}, {seconds:.1f} s")
        if on_epoch_end is not None:
            on_epoch_end(entry)
    return TrainResult(out, run.history, run.best_miou, out / BEST, out / LAST, run.seconds,
                       run.model)


def _one_epoch(run: _Run, dataset, loss_fn, total_steps: int, epoch: int,
               progress: Mode) -> float:
    cfg = run.config
    # A generator of its own keeps the loader from drawing on the global torch RNG.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
        generator=torch.Generator().manual_seed(cfg.seed * 1000003 + epoch),
        pin_memory=run.device.type == "cuda")
    run.model.train()
    losses = []
    mpx = cfg.batch_size * cfg.crop * cfg.crop / 1e6
    with Progress(run.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", progress,
                  unit="batch", mpx_per_unit=mpx) as bar:
        for x, y in loader:
            loss = _step(run, x, y, loss_fn, total_steps)
            losses.append(loss)
            bar.set_status(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses[-20:]):.4f}")
            bar.update(1)
    return float(np.mean(losses)) if losses else float("nan")


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor, loss_fn, total_steps: int) -> float:
    cfg = run.config
    lr = cfg.lr * _lr_factor(run.step, total_steps, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    x = x.to(run.device, non_blocking=True)
    y = y.to(run.device, non_blocking=True)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        logits = run.model(x)
    loss = loss_fn(logits, y)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.step += 1
    return float(loss.detach())


def _validate(run: _Run, progress: Mode) -> dict:
    from rsseg.score.metrics import scores_from_confusion

    cfg = run.config
    with Progress(count_tiles(run.val_infos, cfg.val_tile, cfg.val_margin), "validation",
                  progress, unit="tile") as bar:
        cm = confusion_on_scenes(run.model, run.val_infos, cfg.label_format, run.classes,
                                 run.normalization, run.device, cfg.val_tile, cfg.val_margin,
                                 run.channels_last, run.amp_dtype, on_tile=bar.update)
    scores = scores_from_confusion(cm, list(run.classes.names), exclude=tuple(
        run.classes.names[run.classes.index(n)] for n in cfg.exclude_from_mean))
    return {"val_miou": _num(scores["miou"]) or 0.0, "val_oa": _num(scores["oa"]) or 0.0,
            "val_mf1": _num(scores["mf1"]) or 0.0,
            "val_iou": {c["name"]: _num(c["iou"]) for c in scores["classes"]}}


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# --------------------------------------------------------------------------- outputs


def _checkpoint(run: _Run, entry: dict) -> Checkpoint:
    cfg = run.config
    tile = max(512, cfg.crop)
    note = cfg.note or (f"trained with rsseg train on {len(run.train_infos)} scene(s)")
    training = {"epoch": entry["epoch"], "step": entry["step"], "val_miou": entry["val_miou"],
                "val_oa": entry["val_oa"], "val_iou": entry["val_iou"],
                "crop": cfg.crop, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                "seed": cfg.seed, "label_format": cfg.label_format,
                "exclude_from_mean": list(cfg.exclude_from_mean),
                "train_scenes": [Path(p).name for p in cfg.images],
                "val_scenes": [Path(p).name for p in cfg.val_images],
                "seconds": round(run.seconds, 1)}
    gsd = common_gsd_m(run.train_infos)
    if gsd is not None:  # the tools' `resolution` key in `rsseg export`
        training["gsd_m"] = gsd
    model = run.model
    return Checkpoint.from_model(model, classes=run.classes, bands=run.normalization,
                                 tile={"size": tile, "overlap": tile // 4}, note=note,
                                 training=training)


def _save_last(run: _Run, path: Path, entry: dict) -> None:
    """last.pt: a normal checkpoint plus what ``resume`` needs to continue exactly."""
    d = _checkpoint(run, entry).to_dict()
    d["resume"] = {
        "config": run.config.to_dict(), "epoch": run.epoch, "step": run.step,
        "best_miou": run.best_miou, "history": run.history, "seconds": run.seconds,
        "class_counts": list(run.class_counts),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else None,
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(d, tmp)


