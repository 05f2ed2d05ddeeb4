"""Training pairs as they come: file lists, glob patterns, or a dataset folder.

A dataset folder holds ``images/`` next to ``masks/`` (or ``labels/``), at any
depth, so a tiled dataset such as ``tile1/images/*.jpg`` + ``tile1/masks/*.png``
works as it is. An image and its label match by relative path and stem
(``images/a/x.jpg`` <-> ``masks/a/x.png``); the formats may differ. Validation
is by whole files: another folder or list, or the pairs whose image path
matches a held-out pattern (``--val-pattern 'tile7/*'``), never crops of the
training images.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Sequence

from rsseg.errors import InputError

IMAGE_DIRS = ("images",)
LABEL_DIRS = ("masks", "labels")
RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp")

Pairs = list[tuple[str, str]]


def expand_files(items: Sequence[str], what: str) -> list[str]:
    """File names as given; an item with ``*``, ``?`` or ``[`` that is not a file is a glob."""
    files: list[str] = []
    for item in items:
        if any(ch in str(item) for ch in "*?[") and not os.path.exists(item):
            found = sorted(glob.glob(str(item), recursive=True))
            if not found:
                raise InputError(f"{what} pattern matches no file", item)
            files += found
        else:
            files.append(str(item))
    return files


def dataset_pairs(folder: str | os.PathLike) -> Pairs:
    """Every (image, label) pair of a dataset folder, sorted by image path."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("dataset folder not found" if not root.exists()
                         else "dataset path is not a folder", root)
    pairs: Pairs = []
    image_dirs = sorted(p for p in root.rglob("*") if p.is_dir() and p.name.lower() in IMAGE_DIRS)
    if root.name.lower() in IMAGE_DIRS:
        image_dirs.insert(0, root)
    for images in image_dirs:
        labels = _label_dir(images)
        for image in sorted(_rasters(images)):
            pairs.append((str(image), str(_label_for(image, images, labels))))
    if not pairs:
        raise InputError("no training images found: a dataset folder needs images/ and masks/ "
                         f"(or labels/) folders holding {'/'.join(RASTER_SUFFIXES[:5])} files",
                         root)
    return pairs


def _rasters(folder: Path):
    return (p for p in folder.rglob("*") if p.is_file()
            and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))


def _label_dir(images: Path) -> Path:
    for name in LABEL_DIRS:
        for candidate in (images.parent / name, images.parent / name.capitalize()):
            if candidate.is_dir():
                return candidate
    raise InputError(f"no {' or '.join(d + '/' for d in LABEL_DIRS)} folder next to it",
                     images)


def _label_for(image: Path, images: Path, labels: Path) -> Path:
    rel = image.relative_to(images)
    folder = labels / rel.parent
    found = [p for p in folder.glob(f"{glob.escape(image.stem)}.*")
             if p.suffix.lower() in RASTER_SUFFIXES] if folder.is_dir() else []
    if not found:
        raise InputError(f"no label for this image in {folder} (a file named "
                         f"{image.stem}.<tif|png|...>)", image)
    if len(found) > 1:
        raise InputError(f"more than one label for this image: "
                         f"{', '.join(p.name for p in sorted(found))}", image)
    return found[0]


def split_held_out(pairs: Pairs, pattern: str, root: str | os.PathLike) -> tuple[Pairs, Pairs]:
    """(training, validation): validation = pairs whose image path matches ``pattern``.

    The pattern is matched against the image path relative to ``root`` (and its
    file name), e.g. ``tile7/*`` or ``*part_009*``.
    """
    held, kept = [], []
    for image, label in pairs:
        rel = Path(image).relative_to(root).as_posix() if root else Path(image).as_posix()
        match = fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(image).name, pattern) \
            or fnmatch.fnmatch(rel, pattern.rstrip("/") + "/*")
        (held if match else kept).append((image, label))
    if not held:
        raise InputError(f"--val-pattern {pattern!r} matches none of the {len(pairs)} images",
                         root)
    if not kept:
        raise InputError(f"--val-pattern {pattern!r} matches every image: nothing left to "
                         "train on", root)
    return kept, held


def resolve_pairs(data: str | None = None, images: Sequence[str] = (),
                  labels: Sequence[str] = (), val_data: str | None = None,
                  val_images: Sequence[str] = (), val_labels: Sequence[str] = (),
                  val_pattern: str | None = None) -> tuple[list[str], list[str], list[str],
                                                           list[str]]:
    """(images, labels, val_images, val_labels) from folders, lists and globs."""
    if data:
        if images or labels:
            raise InputError("give a dataset folder (--data) or --images/--labels, not both")
        train = dataset_pairs(data)
    else:
        train = _listed(images, labels, "training")
    if val_pattern:
        if val_data or val_images:
            raise InputError("give one validation source: --val-pattern, --val-data or "
                             "--val-images/--val-labels")
        train, val = split_held_out(train, val_pattern, data or "")
    elif val_data:
        val = dataset_pairs(val_data)
    else:
        val = _listed(val_images, val_labels, "validation")
    return ([i for i, _ in train], [lab for _, lab in train],
            [i for i, _ in val], [lab for _, lab in val])


def _listed(images: Sequence[str], labels: Sequence[str], what: str) -> Pairs:
    images = expand_files(images, f"{what} image")
    labels = expand_files(labels, f"{what} label")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} {what} images but {len(labels)} label files; give "
                         "one label per image, in the same order (or a dataset folder)")
    return list(zip(images, labels))


def training_inputs(data: str | None, images: Sequence[str], labels: Sequence[str],
                    val_data: str | None, val_images: Sequence[str], val_labels: Sequence[str],
                    val_pattern: str | None, classes: str | None,
                    label_format: str) -> dict:
    """The :class:`rsseg.training.TrainConfig` fields that say what to train on.

    Resolves the pairs (folders, lists, globs, held-out pattern), the class
    scheme (file or name, stored whole in the config) and ``isprs-rgb``.
    """
    from rsseg.classes import load_scheme
    from rsseg.score.labels import resolve_label_format

    label_format, classes = resolve_label_format(label_format, classes)
    scheme = load_scheme(classes)
    images, labels, val_images, val_labels = resolve_pairs(
        data, images, labels, val_data, val_images, val_labels, val_pattern)
    return {"images": images, "labels": labels, "val_images": val_images,
            "val_labels": val_labels, "classes": scheme.to_dict(), "label_format": label_format}
