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


def reference_epc(model, couple_from=0):
    """Straightforward loops with numpy: slot by slot, entry by entry."""
    coupled = [list(st.blocks)[couple_from:] for st in model.stages]
    block_ids = {id(p) for blocks in coupled for b in blocks for p in b.f.parameters()}
    total = sum(p.numel() for p in model.parameters() if id(p) not in block_ids)
    for blocks in coupled:
        names = [n for n, _ in blocks[0].f.named_parameters()]
        for name in names:
            w = np.stack(
                [
                    dict(b.f.named_parameters())[name].detach().numpy().astype(np.float64)
                    for b in blocks
                ]
            ).reshape(len(blocks), -1)
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


def randomise_bn(model):
    with torch.no_grad():  # trained-like BN parameters that differ across blocks
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.7, 1.3)
                m.bias.normal_(0, 0.1)


def test_late_coupled_network_at_lambda_one():
    """couple_from = 2 of 5 blocks: blocks 0-1 differ, blocks 2-4 of each stage are identical."""
    model, couple_from = make(recurrent_init=False, stages=2, blocks=5), 2
    randomise_bn(model)
    with torch.no_grad():
        for stage in model.stages:
            first = stage.blocks[couple_from].f
            for block in list(stage.blocks)[couple_from + 1 :]:
                for p, p0 in zip(block.f.parameters(), first.parameters(), strict=True):
                    p.copy_(p0)
    res = effective_parameter_count(model, couple_from)
    per_block = [st["block_parameters"] for st in res["stages"]]
    early = sum(couple_from * n for n in per_block)  # the uncoupled blocks
    rest = count_parameters(model) - sum(5 * n for n in per_block)  # stem, downsampling, head
    assert res["uncoupled"] == early + rest
    assert res["epc"] == res["recurrent"] == early + sum(per_block) + rest
    assert all(st["mean_abs_deviation"] == 0.0 for st in res["stages"])
    assert all(st["coupled_blocks"] == 3 and st["blocks"] == 5 for st in res["stages"])
    assert res["couple_from"] == couple_from
    # read as if all blocks were coupled, the differing early blocks would add deviations
    assert effective_parameter_count(model)["epc"] > res["epc"]


def test_late_coupled_independent_network_matches_reference():
    model = make(recurrent_init=False, stages=2, blocks=6)
    randomise_bn(model)
    res = effective_parameter_count(model, couple_from=3)
    assert res["recurrent"] < res["epc"] < res["raw"]
    assert res["epc"] == pytest.approx(reference_epc(model, couple_from=3), rel=1e-10)
    assert res["raw"] - res["recurrent"] == sum(2 * st["block_parameters"] for st in res["stages"])


@pytest.mark.parametrize("couple_from", [-1, 3])
def test_couple_from_outside_the_stage_is_refused(couple_from):
    with pytest.raises(ValueError, match="couple_from"):
        effective_parameter_count(make(recurrent_init=True), couple_from)
