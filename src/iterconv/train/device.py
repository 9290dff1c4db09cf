"""Device choice for training jobs.

Snakemake does not set CUDA_VISIBLE_DEVICES per job, so concurrent jobs on a multi-GPU
workstation would all land on GPU 0. ``auto`` therefore picks the visible GPU with the most
free memory at start-up (jobs started together spread out as each allocates its data).
"""

from __future__ import annotations

import torch


def pick_device(spec: str = "auto") -> torch.device:
    if spec != "auto":
        return torch.device(spec)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return torch.device("cuda", max(range(len(free)), key=free.__getitem__))
