"""Device choice for training jobs and analyses.

Snakemake does not set CUDA_VISIBLE_DEVICES per job, so concurrent jobs on a multi-GPU
workstation would all land on GPU 0. ``auto`` therefore picks the visible GPU with the most
free memory at start-up (jobs started together spread out as each allocates its data).

:func:`resolve_device` turns a ``--device`` value into a device that exists, or a
:class:`~iterconv.cli.UserError`; :func:`check_device_spec` checks only the spelling (no torch
import, for commands that never touch torch).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from iterconv.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> None:
    """Refuse a ``--device`` value that names no device kind this package runs on."""
    if not _SPEC.match(spec):
        raise UserError(f"invalid --device {spec!r}: choose one of {DEVICE_CHOICES}")


def pick_device(spec: str = "auto") -> torch.device:
    import torch

    if spec != "auto":
        return torch.device(spec)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return torch.device("cuda", max(range(len(free)), key=free.__getitem__))


def resolve_device(spec: str) -> torch.device:
    """The device ``spec`` names, checked to exist on this machine (``auto`` always does)."""
    import torch

    check_device_spec(spec)
    device = pick_device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UserError(f"--device {spec}: no CUDA GPU is visible; use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise UserError(
                f"--device {spec}: no such GPU ({count} visible: cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {spec}: MPS is not available; use --device cpu or auto")
    return device
