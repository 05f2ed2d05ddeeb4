"""Training segmentation networks on scene/label GeoTIFF pairs (``rsseg train``).

``train(TrainConfig(...))`` starts a run, ``resume(run_dir)`` continues one.
See docs/training.md.
"""

from rsseg.training.config import TrainConfig
from rsseg.training.trainer import TrainResult, resume, train

__all__ = ["TrainConfig", "TrainResult", "resume", "train"]
