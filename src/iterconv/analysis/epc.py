"""Effective parameter count (appendix C.1, eq. 4; docs/analysis.md section 2).

    EPC = ||W_uncoupled||_0 + sum_s ||mean_l W_l(s)||_0
          + sum_s sum_l ||(W_l(s) - mean_l W_l(s)) / sigma(W(s))||_1

W_l(s): the parameters of the residual function of coupled block l of stage s (conv weights, BN
affine); the mean, sigma and the sums over l run over the coupled blocks only. The coupled
blocks of a stage are those from index ``couple_from`` on (the run configuration's field, 0 by
default: all blocks; see iterconv.train.coupling). Uncoupled: every other parameter (stem,
downsampling blocks, head, and the blocks before ``couple_from``).

Reading chosen here (docs/analysis.md explains why):
* ||.||_0 is the parameter count (numel), as the paper states, not the count of non-zeros.
* sigma is taken per parameter slot: for the slot ``f.conv1.weight`` of stage s, the population
  standard deviation of all its entries across the L coupled blocks of the stage. Each slot is
  thus measured on its own scale (BN gammas near 1 are not swamped by conv weights near 0). A
  slot with sigma = 0 has all entries equal, so its deviations are 0.
* Computed in float64: for identical blocks the mean equals each block exactly, so a fully
  coupled network has EPC == recurrent count exactly.

With independent Gaussian blocks, E|D| ~ 0.8 sqrt((L-1)/L), so for L >= 3 coupled blocks EPC
lies between the recurrent count (uncoupled + one block per stage) and the raw count (for L = 2
it can exceed the raw count); it falls to the recurrent count as the coupled blocks become
identical.
"""

from __future__ import annotations

from typing import Any

import torch

from iterconv.models.resnet import ResNet


def stage_slots(model: ResNet, s: int, couple_from: int = 0) -> dict[str, torch.Tensor]:
    """Slot name -> (L, *shape) float64 stack of that parameter over the L coupled blocks
    (index ``couple_from`` on) of stage s."""
    per_block = [dict(block.f.named_parameters()) for block in model.stages[s].blocks]
    per_block = per_block[couple_from:]
    return {
        name: torch.stack([p[name].detach().double().cpu() for p in per_block])
        for name in per_block[0]
    }


def normalized_deviations(w: torch.Tensor) -> torch.Tensor:
    """D = (W_l - mean_l W_l) / sigma for a (L, *shape) slot stack; zeros when sigma = 0."""
    dev = w - w.mean(dim=0, keepdim=True)
    sigma = w.std(unbiased=False)
    return dev / sigma if sigma > 0 else torch.zeros_like(dev)


@torch.no_grad()
def effective_parameter_count(model: ResNet, couple_from: int = 0) -> dict[str, Any]:
    """Raw, recurrent and effective parameter counts and per-stage deviations.

    ``couple_from``: the run's first coupled block of each stage (``RunConfig.couple_from``, in
    the run config that ``load_run_model`` returns); the blocks before it count as uncoupled.

    Returns:
        {"raw": int, "recurrent": int, "uncoupled": int, "epc": float, "couple_from": int,
         "stages": [{"stage": 1-based, "blocks": B, "coupled_blocks": L,
                     "block_parameters": per-block count, "deviation_l1": sum of |D|,
                     "mean_abs_deviation": mean of |D| over the coupled blocks (fig 7c)}]}
    """
    for stage in model.stages:
        if not 0 <= couple_from < len(stage.blocks):
            raise ValueError(
                f"couple_from must lie in [0, {len(stage.blocks)}) (blocks per stage), "
                f"got {couple_from}"
            )
    raw = sum(p.numel() for p in model.parameters())
    coupled = sum(
        p.numel()
        for stage in model.stages
        for block in list(stage.blocks)[couple_from:]
        for p in block.f.parameters()
    )
    uncoupled = raw - coupled
    epc, recurrent, stages = float(uncoupled), uncoupled, []
    for s, stage in enumerate(model.stages):
        slots = stage_slots(model, s, couple_from)
        n_coupled = len(stage.blocks) - couple_from
        per_block = sum(w[0].numel() for w in slots.values())
        l1 = sum(float(normalized_deviations(w).abs().sum()) for w in slots.values())
        epc += per_block + l1  # ||mean||_0 = numel of one block, plus the deviation L1 norm
        recurrent += per_block
        stages.append(
            {
                "stage": s + 1,
                "blocks": len(stage.blocks),
                "coupled_blocks": n_coupled,
                "block_parameters": per_block,
                "deviation_l1": l1,
                "mean_abs_deviation": l1 / (per_block * n_coupled),
            }
        )
    return {
        "raw": raw,
        "recurrent": recurrent,
        "uncoupled": uncoupled,
        "epc": epc,
        "couple_from": couple_from,
        "stages": stages,
    }
