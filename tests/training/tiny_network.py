"""A tiny segmentation network for training tests, and ``rsseg`` with it registered.

Run as a script (``python tiny_network.py train ...``) it is the ``rsseg`` command with
the network registered as ``_test_training_tiny``, so tests can train it in a child
process they interrupt.
"""

from __future__ import annotations

import torch

TINY = "_test_training_tiny"


def build_tiny(in_channels: int, num_classes: int, width: int = 8) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(), torch.nn.Dropout2d(0.1),  # dropout: resume must restore RNG too
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, num_classes, 1))


if __name__ == "__main__":
    from rsseg.cli import main
    from rsseg.models import register_model

    register_model(TINY, listed=False)(build_tiny)
    main()
