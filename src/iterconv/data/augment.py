"""Batch augmentation on uint8 tensors: random crop with zero padding and horizontal flips.

Vectorised over the batch (no loop over images) and run on the batch's device; the random offsets
and flips are drawn on the CPU from ``generator``, so results are reproducible on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("crop_flip", "crop", "none")


def augment_batch(
    x: torch.Tensor, kind: str, generator: torch.Generator, pad: int = 4
) -> torch.Tensor:
    """Randomly crop (N, C, H, W) ``x`` from its ``pad``-zero-padded version; flip for "crop_flip".

    Image i's output pixel (r, c) is ``padded[i, :, r + dy_i, c + dx_i]`` with offsets uniform in
    0..2*pad (as torchvision's ``RandomCrop(padding=pad)``); a flipped image reads column
    ``W - 1 - c + dx_i`` instead. "none" returns ``x`` and draws nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {KINDS}")
    if kind == "none" or len(x) == 0:
        return x
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = (
        torch.rand(n, generator=generator) < 0.5
        if kind == "crop_flip"
        else torch.zeros(n, dtype=torch.bool)
    )
    offsets, flip = offsets.to(x.device), flip.to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))  # one padding for the whole batch
    cols = torch.arange(w, device=x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1:] + torch.where(flip[:, None], w - 1 - cols, cols)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]
