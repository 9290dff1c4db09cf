"""Loss and error for single-label (softmax) and multi-label (Digitclutter, sigmoid) targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_fn(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Mean cross-entropy; binary cross-entropy over the outputs for multi-hot targets."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    return F.cross_entropy(logits, y)


def predictions(logits: torch.Tensor, multilabel: bool, n: torch.Tensor | None = None):
    """Hard predictions: class ids (single-label), or the multi-hot (uint8) of each image's
    n highest scores (multi-label; ``n`` = digits per image)."""
    if not multilabel:
        return logits.argmax(dim=1)
    if n is None:
        raise ValueError("multi-label predictions need the digit count per image")
    order = logits.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(logits.shape[1], device=logits.device).expand_as(order))
    return (ranks < n[:, None]).to(torch.uint8)


def mistakes(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Bool (N,): True where the prediction is wrong.

    Multi-label: an image with n digits is correct when its n highest scores are exactly its
    n digits (docs/analysis.md, section 1). Single-label: the arg-max differs from the label.
    """
    if not multilabel:
        return logits.argmax(dim=1) != y
    y = y.to(torch.uint8)
    return (predictions(logits, True, y.sum(dim=1)) != y).any(dim=1)
