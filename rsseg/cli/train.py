"""``rsseg train``: train a network on scene/label GeoTIFF pairs, or resume a run."""

from __future__ import annotations

import json

import click

from rsseg.cli.options import common_options, label_options, seed_option

# Settings that --resume may change without making the result differ from an
# uninterrupted run (epochs stretches the schedule, documented).
RESUME_OVERRIDES = ("epochs", "device", "workers", "plot")


class ManyValues(click.Option):
    """A repeatable option that also takes every following non-option word.

    So ``--images imgs/*.tif`` (expanded by the shell) and ``--images a.tif
    --images b.tif`` both give the list of files.
    """

    def __init__(self, *args, **kw):
        kw.setdefault("multiple", True)
        super().__init__(*args, **kw)

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            parsed = parser._long_opt.get(name) or parser._short_opt.get(name)
            if parsed is None:
                continue
            take_one = parsed.process

            def take_all(value, state, take_one=take_one):
                take_one(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    take_one(state.rargs.pop(0), state)

            parsed.process = take_all


def _files(name: str, help_text: str):
    return click.option(name, help=help_text, cls=ManyValues, type=click.Path(dir_okay=False),
                        default=(), metavar="FILE...")


@click.command(short_help="Train a network on image/label pairs (any class scheme).")
@click.option("--data", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Dataset folder: images/ with masks/ (or labels/) matched by name, at any "
                   "depth (e.g. tile*/images/*.jpg + tile*/masks/*.png).")
@_files("--images", "Training images (any format GDAL reads; globs allowed), any size.")
@_files("--labels", "Training labels, one per image, same size.")
@click.option("--val-data", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Validation dataset folder (held-out areas).")
@click.option("--val-pattern", default=None, metavar="GLOB",
              help="Hold out the --data pairs whose image path matches, e.g. 'tile7/*'.")
@_files("--val-images", "Validation images (held-out scenes).")
@_files("--val-labels", "Validation labels, one per validation image.")
@_files("--dsm", "Extra bands (DSM), one file per training image, appended after its bands.")
@_files("--val-dsm", "Extra bands (DSM) of the validation images.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Run directory (best.pt, last.pt, log.csv, log.json, curves.png).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the run in this directory exactly where it stopped.")
@click.option("--model", default="bafnet", show_default=True, help="Network (rsseg models).")
@click.option("--model-config", default=None, metavar="JSON",
              help='Network options as JSON, e.g. \'{"width": 0.5}\'.')
@label_options("isprs")
@click.option("--ignore-unknown", is_flag=True,
              help="Label values/colours that are no class and not ignored are ignored "
                   "instead of an error.")
@click.option("--crop", type=click.IntRange(32), default=512, show_default=True,
              help="Training window size in pixels.")
@click.option("--batch-size", type=click.IntRange(2), default=8, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=100, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(1), default=None,
              help="Batches per epoch [default: about one pass over the training pixels].")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=6e-4, show_default=True,
              help="Peak learning rate (AdamW, warm-up then cosine).")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.01, show_default=True)
@click.option("--grad-clip", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Clip the gradient norm (0: off).")
@click.option("--dice-weight", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Weight of the Dice term next to cross-entropy.")
@seed_option
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="DataLoader worker processes reading windows.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="Mixed precision (auto: on CUDA only).")
@click.option("--channels-last", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="channels_last memory format (auto: on CUDA only).")
@click.option("--pretrained", type=click.Path(dir_okay=False), default=None,
              help="Official ImageNet checkpoint loaded into the network's encoder.")
@click.option("--class-balance", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of windows centred on a class drawn uniformly (helps rare classes).")
@click.option("--min-class-pixels", type=click.IntRange(0), default=100, show_default=True,
              help="Refuse training labels with fewer pixels of any class.")
@click.option("--exclude-from-mean", multiple=True, metavar="CLASS",
              help="Class left out of validation mIoU/mF1 (ISPRS papers: clutter). Repeatable.")
@click.option("--note", default="", help="Note stored in the checkpoints (shown by predict).")
@click.option("--plot", is_flag=True, help="Write loss and mIoU curves to curves.png.")
@common_options
@click.pass_context
def train(ctx, data, images, labels, val_data, val_pattern, val_images, val_labels, dsm, val_dsm,
          out_dir, resume_dir, model, model_config, classes, label_format, ignore_unknown, crop, batch_size, epochs, steps_per_epoch, lr,
          weight_decay, grad_clip, dice_weight, seed, workers, device, amp, channels_last,
          pretrained, class_balance, min_class_pixels, exclude_from_mean, note, plot, overwrite,
          progress, progress_json):
    """Train a segmentation network on image/label pairs; validate every epoch.

    \b
    rsseg train --images imgs/*.tif --labels gts/*.tif --model bafnet -o runs/x \\
        --crop 512 --batch-size 8 --epochs 100 --val-images v/*.tif --val-labels vg/*.tif
    rsseg train --data dubai/ --val-pattern 'tile7/*' --classes dubai-aerial \\
        --label-format rgb --model baff_skipnet -o runs/dubai
    rsseg train --resume runs/x
    """
    from rsseg.progress import progress_mode
    from rsseg.training import TrainConfig
    from rsseg.training import resume as resume_run
    from rsseg.training import train as train_run

    mode = progress_mode(progress, progress_json)
    if resume_dir:
        overrides = _resume_overrides(ctx)
        result = resume_run(resume_dir, progress=mode, overrides=overrides)
    else:
        from rsseg.training.inputs import training_inputs

        _require(ctx, **{"images (or --data)": images or data,
                         "val-images (or --val-data, --val-pattern)":
                             val_images or val_data or val_pattern, "out": out_dir})
        inputs = training_inputs(data, images, labels, val_data, val_images, val_labels,
                                 val_pattern, classes, label_format)
        config = TrainConfig(
            **inputs, out_dir=out_dir, model=model, ignore_unknown=ignore_unknown,
            model_config=_parse_model_config(model_config), dsm=list(dsm),
            val_dsm=list(val_dsm), crop=crop,
            batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr,
            weight_decay=weight_decay, grad_clip=grad_clip, dice_weight=dice_weight, seed=seed,
            workers=workers, device=device, amp=amp, channels_last=channels_last,
            pretrained=pretrained, class_balance=class_balance,
            min_class_pixels=min_class_pixels,
            exclude_from_mean=list(exclude_from_mean), plot=plot, note=note)
        result = train_run(config, progress=mode, overwrite=overwrite)
    click.echo(f"best validation mIoU {result.best_miou:.4f}: {result.best_path}", err=True)


def _require(ctx, **given) -> None:
    missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --resume RUN_DIR)", ctx)


def _resume_overrides(ctx) -> dict:
    from click.core import ParameterSource

    overrides, refused = {}, []
    for name, value in ctx.params.items():
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        if name in RESUME_OVERRIDES:
            overrides[name] = value
        elif name not in ("resume_dir", "progress", "progress_json", "overwrite"):
            refused.append(f"--{name.replace('_', '-')}")
    if refused:
        raise click.UsageError(f"{', '.join(refused)} cannot change on --resume (the run keeps "
                               f"its settings); only --{', --'.join(RESUME_OVERRIDES)} can", ctx)
    return overrides


def _parse_model_config(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--model-config") from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--model-config")
    return value
