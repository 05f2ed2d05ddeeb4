"""The rsseg Processing algorithms."""

from .predict import PredictAlgorithm
from .score import ScoreAlgorithm
from .vectorize import VectorizeAlgorithm

ALGORITHMS = (PredictAlgorithm, VectorizeAlgorithm, ScoreAlgorithm)

__all__ = ["ALGORITHMS", "PredictAlgorithm", "ScoreAlgorithm", "VectorizeAlgorithm"]
