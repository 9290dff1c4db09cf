"""Effective parameter count against an independent element-by-element computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iterconv.analysis.epc import effective_parameter_count
from iterconv.models.resnet import ModelConfig, ResNet, count_parameters


def make(recurrent_init, stages=3, blocks=3, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        in_channels=1,
        image_size=8,
        width=4,
        stages=stages,
        blocks=blocks,
        recurrent_init=recurrent_init,
    )
    return ResNet(cfg)


def reference_epc(model):
    """Straightforward loops with numpy: slot by slot, entry by entry."""
    block_ids = {id(p) for st in model.stages for b in st.blocks for p in b.f.parameters()}
    total = sum(p.numel() for p in model.parameters() if id(p) not in block_ids)
    for stage in model.stages:
        names = [n for n, _ in stage.blocks[0].f.named_parameters()]
        for name in names:
            w = np.stack(
                [
                    dict(b.f.named_parameters())[name].detach().numpy().astype(np.float64)
                    for b in stage.blocks
                ]
            ).reshape(len(stage.blocks), -1)
            total += w.shape[1]  # ||mean||_0
            sigma = math.sqrt(((w - w.mean()) ** 2).mean())
            mean = w.mean(axis=0)
            for row in w:
                for v, m in zip(row, mean):
                    total += abs(v - m) / sigma if sigma > 0 else 0.0
    return total


def test_fully_coupled_network_has_recurrent_count():
    model = make(recurrent_init=True)
    # Distinct BN affine values per slot, still identical across blocks.
    with torch.no_grad():
        for stage in model.stages:
            for b in stage.blocks:
                b.f.bn1.weight.copy_(torch.linspace(0.5, 1.5, b.f.bn1.weight.numel()))
    res = effective_parameter_count(model)
    assert res["epc"] == res["recurrent"]
    assert all(st["mean_abs_deviation"] == 0.0 for st in res["stages"])
    assert res["raw"] == count_parameters(model)


@pytest.mark.parametrize("stages,blocks", [(3, 3), (1, 5)])
def test_independent_network_between_recurrent_and_raw(stages, blocks):
    model = make(recurrent_init=False, stages=stages, blocks=blocks)
    with torch.no_grad():  # trained-like BN parameters that differ across blocks
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.7, 1.3)
                m.bias.normal_(0, 0.1)
    res = effective_parameter_count(model)
    assert res["recurrent"] < res["epc"] < res["raw"]
    assert res["epc"] == pytest.approx(reference_epc(model), rel=1e-10)
    per_block = res["stages"][0]["block_parameters"]
    assert res["raw"] - res["recurrent"] == sum(
        (blocks - 1) * st["block_parameters"] for st in res["stages"]
    )
    assert per_block == 2 * 4 * 4 * 9 + 4 * 4
