"""Parameter and MAC counts (``torch.utils.flop_counter``; MACs = FLOPs / 2)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: torch.nn.Module, input_shape: tuple[int, ...] = (1, 3, 512, 512)) -> int:
    """Multiply-accumulates of one eval-mode forward pass (conv and matmul layers).

    The input is created on the model's device, so a model built under
    ``torch.device("meta")`` is counted from shapes alone, without computing.
    """
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    x = torch.zeros(input_shape, device=None if first is None else first.device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
