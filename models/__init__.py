"""The segmentation networks: pure torch, no I/O.

``create_model(name, in_channels, num_classes, **cfg)`` builds any registered
network; ``list_models()`` names them. One module per network, shared layers
in :mod:`rsseg.models.layers`.
"""

from ._registry import ModelEntry, create_model, list_models, model_entry, register_model, unregister_model

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model",
           "unregister_model"]
