"""Training settings: one dataclass, stored in every checkpoint so ``--resume`` needs no flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    images: list[str]
    labels: list[str]
    val_images: list[str]
    val_labels: list[str]
    out_dir: str
    model: str = "bafnet"
    model_config: dict[str, Any] = field(default_factory=dict)
    dsm: list[str] = field(default_factory=list)
    val_dsm: list[str] = field(default_factory=list)
    label_format: str = "index"  # index (class values) or rgb (class colours)
    # The class scheme as ClassScheme.to_dict(), stored whole so --resume needs no file;
    # None: the default scheme (isprs).
    classes: dict[str, Any] | None = None
    ignore_unknown: bool = False  # unknown label values/colours: ignored instead of an error
    crop: int = 512
    batch_size: int = 8
    epochs: int = 100
    steps_per_epoch: int | None = None  # None: about one pass over the training pixels
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # of all steps, linear from 1% of lr
    min_lr_fraction: float = 0.01  # cosine floor
    grad_clip: float = 1.0
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    scale_min: float = 0.75
    scale_max: float = 1.5
    class_balance: float = 0.0  # share of windows centred on a uniformly drawn class
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (CUDA only), on, off
    channels_last: str = "auto"  # auto (CUDA only), on, off
    pretrained: str | None = None
    min_class_pixels: int = 100
    exclude_from_mean: list[str] = field(default_factory=list)
    val_tile: int = 512
    val_margin: int = 32
    plot: bool = False
    note: str = ""

    def __post_init__(self):
        if self.label_format == "isprs-rgb":  # the synonym of rgb with the isprs scheme
            from rsseg.classes import load_scheme

            self.label_format = "rgb"
            self.classes = self.classes or load_scheme("isprs").to_dict()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def scheme(self):
        """The run's :class:`rsseg.classes.ClassScheme`."""
        from rsseg.classes import ClassScheme, load_scheme

        return ClassScheme.from_dict(self.classes) if self.classes else load_scheme()

    def resolved_steps(self, training_pixels: int) -> int:
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        per_batch = self.crop * self.crop * self.batch_size
        return max(1, -(-int(training_pixels) // per_batch))
