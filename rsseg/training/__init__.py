"""Training segmentation networks on scene/label GeoTIFF pairs (``rsseg train``).

``train(TrainConfig(...))`` starts a run, ``resume(run_dir)`` continues one.
See docs/training.md.
"""

from .config import TrainConfig
from .trainer import TrainResult, resume, train

__all__ = ["TrainConfig", "TrainResult", "resume", "train"]
