"""Per-band mean/std and class pixel counts, streamed block by block over the scenes.

One pass over every training scene reads it in blocks (1024 x 1024 by default),
so memory stays flat however large the scenes are. The same pass decodes the
labels, which is where unknown label colours or values are found, before any
training output is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.io.normalization import Normalization
from rsseg.training.scenes import SceneInfo, SceneReader, scene_blocks


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations per band (Chan et al.'s parallel update).

    Combining block statistics this way keeps float64 precision on large scenes
    where a naive sum of squares would cancel catastrophically.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, bands: int) -> "RunningMoments":
        z = np.zeros(bands, np.float64)
        return cls(z.copy(), z.copy(), z.copy())

    def add(self, values: np.ndarray) -> None:
        """Add (C, N) samples."""
        n = values.shape[1]
        if n == 0:
            return
        v = values.astype(np.float64, copy=False)
        b_mean = v.mean(axis=1)
        b_m2 = ((v - b_mean[:, None]) ** 2).sum(axis=1)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + b_m2 + delta ** 2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.count, 1))


@dataclass
class SceneStatistics:
    normalization: Normalization
    class_counts: np.ndarray  # (num_classes,) labelled pixels per class
    labelled_pixels: int


def scan_scenes(infos: Sequence[SceneInfo], label_format: str, classes: ClassScheme,
                block: int = 1024, with_bands: bool = True,
                on_block: Callable[[], None] | None = None,
                ignore_unknown: bool = False) -> SceneStatistics:
    """Band moments over labelled pixels and a class histogram of all scenes.

    Pixels whose label is nodata (255) or whose image is nodata are left out of
    the band statistics: borders would otherwise drag the mean toward zero.
    A label file with values or colours the scheme does not know is an error
    naming the file and the most frequent of them, unless ``ignore_unknown``.
    """
    bands = infos[0].num_bands
    moments = RunningMoments.empty(bands)
    counts = np.zeros(classes.num_classes, np.int64)
    for info in infos:
        reader = SceneReader(info, label_format, classes)
        try:
            for col, row, w, h in scene_blocks(info.width, info.height, block):
                x, y = reader.read(col, row, w, h)
                valid = y != NODATA
                counts += np.bincount(y[valid], minlength=classes.num_classes)[:classes.num_classes]
                if with_bands:
                    moments.add(x[:, valid])
                if on_block is not None:
                    on_block()
            if reader.unknown.total and not ignore_unknown:
                raise InputError(unknown_label_message(reader.unknown, label_format, classes),
                                 info.paths.label)
        finally:
            reader.close()
    std = moments.std
    # A constant band (e.g. a flat DSM) would divide by zero; leave it unscaled.
    std = np.where(std > 1e-6, std, 1.0)
    names = list(infos[0].band_names)
    norm = Normalization(names, moments.mean.tolist(), std.tolist())
    return SceneStatistics(norm, counts, int(counts.sum()))


def unknown_label_message(unknown, label_format: str, classes: ClassScheme) -> str:
    scheme = f" of class scheme {classes.name}" if classes.name else ""
    if label_format == "rgb":
        what = f"colours that are not class colours{scheme} nor ignored"
    else:
        values = classes.label_values
        shown = f"{values[0]}..{values[-1]}" if values == tuple(range(values[0], values[-1] + 1)) \
            else ", ".join(map(str, values))
        what = f"values that are not class ids{scheme} ({shown}) nor ignored (255 = nodata)"
    return (f"label has {what}: {unknown.describe()}; add them to the scheme's \"ignore\" "
            "list, or pass --ignore-unknown")


def count_blocks(infos: Sequence[SceneInfo], block: int = 1024) -> int:
    return sum(len(list(scene_blocks(i.width, i.height, block))) for i in infos)


def check_class_counts(stats: SceneStatistics, classes: ClassScheme, min_pixels: int,
                       where: str) -> None:
    """Refuse to train when a class has (almost) no labelled pixels."""
    if stats.labelled_pixels == 0:
        raise InputError("the training labels contain no labelled pixel (all nodata)", where)
    few = [(classes.names[i], int(c)) for i, c in enumerate(stats.class_counts) if c < min_pixels]
    if few:
        text = ", ".join(f"{n} ({c} px)" for n, c in few)
        raise InputError(f"too few labelled pixels of class {text} in the training labels "
                         f"(need at least {min_pixels} each); add scenes that contain them or "
                         "lower --min-class-pixels", where)
