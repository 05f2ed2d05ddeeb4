"""Cross-entropy + Dice (BAFNet's hybrid loss), both ignoring unlabelled pixels."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rsseg.classes import NODATA


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = NODATA,
                   eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice coefficient on labelled pixels.

    Classes absent from both the batch and the prediction contribute a Dice of
    1 through the smoothing ``eps``, so they do not push toward predicting them.
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probs = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe_target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    one_hot = one_hot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + eps) / (denominator + eps)
    return 1 - dice.mean()


class HybridLoss(nn.Module):
    """``ce_weight * CE + dice_weight * Dice``; a batch with no labelled pixel gives 0."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0,
                 ignore_index: int = NODATA):
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0  # keeps the graph; nothing to learn from
        ce = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)
        if self.dice_weight == 0:
            return self.ce_weight * ce
        return self.ce_weight * ce + self.dice_weight * soft_dice_loss(logits, target,
                                                                      self.ignore_index)
