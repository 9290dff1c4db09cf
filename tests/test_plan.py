"""``iterconv plan``: FLOP counts against the built network, job counts, device-hours, the CLI."""

import argparse

import pytest
import torch
import yaml
from params_helpers import ROOT, with_preset
from torch import nn

from iterconv.cli import main
from iterconv.models import TORCHVISION_VARIANTS, build_network
from iterconv.models.resnet import ModelConfig
from iterconv.models.torchvision_nets import TorchvisionConfig
from iterconv.pipeline.plan import (
    STEP_COST,
    TABLE,
    forward_flops,
    load_table,
    measured_rate,
    network_flops,
    plan,
    run_costs,
    tv_resnet_flops,
    tv_vit_flops,
)
from iterconv.train.config import RunConfig


def network_macs(model: nn.Module, c_in: int, size: int) -> int:
    """MACs of one image through ``model``, counted with hooks on its convs, linears (applied to
    every token) and attention layers (projections, scores and weighted sum)."""
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output[0].numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.MultiheadAttention):
            tokens, d = inputs[0].shape[1], module.embed_dim  # batch_first
            # q/k/v and output projections (the functional attention never calls out_proj's
            # forward, so its hook would not fire), scores and weighted sum
            macs += tokens * 4 * d * d + 2 * tokens * tokens * d
        else:
            macs += (
                inputs[0].numel() // module.in_features * module.out_features * (module.in_features)
            )

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.MultiheadAttention):
            m.register_forward_hook(count)
    with torch.inference_mode():
        model.eval()(torch.zeros(1, c_in, size, size))
    return macs


def model_flops(width, stages, blocks, c_in, size, classes, variant="standard"):
    """2 x MACs counted with hooks on the built network of a run's shape, one image."""
    if variant in TORCHVISION_VARIANTS:
        cfg = TorchvisionConfig(variant, c_in, classes, size, width, stages, blocks)
    else:
        cfg = ModelConfig(c_in, classes, size, width, stages, blocks)
    return 2 * network_macs(build_network(cfg), c_in, size)


def args(**kw):
    base = dict(
        throughput=TABLE, device="h100", path="fp32", assume_tflops=20.0, assume_step_ms=15.0
    )
    return argparse.Namespace(**{**base, **kw})


def test_flops_of_the_paper_network_by_hand():
    # 3 x 16, width 16, CIFAR: stem 442,368 + 3 stages x 16 blocks x 2 x 2,359,296
    # + 2 downsampling blocks x (1,179,648 + 2,359,296) + head 640 = 234,013,312 MACs
    assert 442_368 + 3 * 16 * 2 * 2_359_296 + 2 * (1_179_648 + 2_359_296) + 640 == 234_013_312
    assert forward_flops(16, 3, 16, 3, 32, 10) == 2 * 234_013_312


@pytest.mark.parametrize(
    "cfg",
    [
        (4, 2, 1, 3, 8, 10),  # tiny: every term checkable on paper
        (8, 3, 16, 3, 32, 10),
        (64, 3, 16, 3, 32, 100),
        (16, 1, 16, 1, 28, 10),  # MNIST: one stage, 28 px
        (8, 3, 2, 1, 7, 10),  # odd sizes: 7 -> 4 -> 2
        (8, 4, 3, 3, 32, 100),  # four stages, as in the coupling sweeps
    ],
)
def test_flops_formula_matches_the_built_network(cfg):
    assert forward_flops(*cfg) == model_flops(*cfg)


def test_run_costs_match_the_built_network_of_each_run():
    # each run's forward FLOPs as counted on the standard network of its own shape (the
    # implicit variant's repeated evaluations are its step cost, not its FLOPs)
    first_of_sweep = {}
    for cost in run_costs(with_preset("paper")):
        first_of_sweep.setdefault(cost.sweep, cost)
    for cost in [*run_costs(with_preset("demo")), *first_of_sweep.values()]:
        cfg, (c, size, classes) = cost.config, cost.shape
        variant = cfg.variant if cfg.variant in TORCHVISION_VARIANTS else "standard"
        direct = model_flops(cfg.width, cfg.stages, cfg.blocks, c, size, classes, variant)
        assert cost.forward == direct, cost.run_id


@pytest.mark.parametrize(
    "cfg",
    [
        ("tv_resnet", 4, 2, 2, 3, 8, 10),
        ("tv_resnet", 8, 3, 4, 1, 32, 10),
        ("tv_resnet", 64, 4, 2, 3, 32, 10),  # resnet18 with a 3x3 stem
        ("tv_resnet", 8, 3, 2, 1, 7, 10),  # odd sizes
        ("tv_vit", 32, 1, 4, 1, 32, 10),
        ("tv_vit", 16, 1, 2, 3, 8, 100),
    ],
)
def test_flops_of_the_torchvision_variants_match_the_built_network(cfg):
    variant, width, stages, blocks, c, size, classes = cfg
    run = RunConfig(variant=variant, width=width, stages=stages, blocks=blocks)
    expected = model_flops(width, stages, blocks, c, size, classes, variant)
    assert network_flops(run, c, size, classes) == expected


def test_flops_grow_with_width_squared():
    assert forward_flops(64) / forward_flops(16) == pytest.approx(16, rel=0.01)


def test_job_counts_and_totals_of_the_presets(capsys):
    demo = plan(with_preset("demo"), args())
    assert demo["runs"] == 12 and demo["jobs"]["train_run"] == 12
    assert demo["jobs"]["compute_indices"] == 12 and demo["jobs"]["prepare_dataset"] == 2
    assert demo["jobs"]["run_family_job"] == 26 + 16 + 8  # shortcut, implicit, van
    assert demo["epochs"] == 12 * 5
    # demo: 3 x 4 width 8, Digitclutter 1 x 32 x 32, 3072 images (48 batches of 64); ten of the
    # paper's networks, a torchvision ResNet of the same shape and a ViT of hidden size 32
    forward = 10 * forward_flops(8, 3, 4, 1, 32, 10)
    forward += tv_resnet_flops(8, 3, 4, 1, 32, 10) + tv_vit_flops(32, 4, 1, 32, 10)
    assert demo["train_flops"] == pytest.approx(3 * forward * 3072 * 5)

    paper = plan(with_preset("paper"), args(device="no-such-gpu"))
    assert paper["runs"] == 1209 and paper["jobs"]["compute_indices"] == 1209
    # cifar10, cifar10_2048, cifar100, mnist and the 7 Digitclutter sets
    assert paper["jobs"]["prepare_dataset"] == 12  # with Fashion-MNIST (the VAN paper)
    assert paper["device_hours"] > 0
    out = capsys.readouterr().out
    assert "ASSUMED" in out and "no device 'no-such-gpu'" in out  # said to be an assumption


def test_measured_rows_are_used_and_scaled(tmp_path, capsys):
    table = {
        "devices": {
            "fake": {
                "device_name": "Fake GPU",
                "rows": [
                    {
                        "variant": "standard",
                        "width": 8,
                        "stages": 3,
                        "blocks": 4,
                        "path": "fp32",
                        "images_per_s": 1000.0,
                    }
                ],
            }
        }
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(table))
    totals = plan(with_preset("demo"), args(throughput=path, device="fake"))
    out = capsys.readouterr().out
    assert "ASSUMED" not in out.split("basis (runs)")[0] and "Fake GPU" in out
    # demo networks: 3 x 4 width 8 on 1 x 32 x 32 (the row: 3 x 32 x 32): FLOP-scaled rate; the
    # torchvision networks borrow the standard rate, scaled by their own FLOPs
    row = 1000.0 * forward_flops(8, 3, 4, 3, 32, 10)
    flops = [forward_flops(8, 3, 4, 1, 32, 10)] * 10
    flops += [tv_resnet_flops(8, 3, 4, 1, 32, 10), tv_vit_flops(32, 4, 1, 32, 10)]
    hours = sum(5 * (3072 + 256 / 3) / (row / f) / 3600 for f in flops)
    assert totals["device_hours"] == pytest.approx(hours)
    assert "std-rate 8" in out  # the ICR/PCR/plain/VAN and torchvision runs borrow its rate


def test_implicit_runs_borrow_the_standard_rate_at_their_step_cost():
    rows = [dict(variant="standard", width=8, stages=3, blocks=4, path="fp32", images_per_s=1e3)]
    standard = measured_rate(rows, RunConfig(width=8, blocks=4), "fp32", 3, 32, 10)
    implicit = measured_rate(
        rows, RunConfig(width=8, blocks=4, variant="implicit"), "fp32", 3, 32, 10
    )
    assert standard == (1e3, "measured")
    assert implicit[0] == pytest.approx(1e3 / STEP_COST["implicit"]) and "step cost" in implicit[1]
    assert STEP_COST["implicit"] > 1


def test_committed_table_is_readable():
    for entry in load_table().values():
        assert entry["device_name"] and entry["date"] and entry["torch"]
        for row in entry["rows"]:
            assert row["images_per_s"] > 0 and row["variant"] in ("standard", "icr", "pcr")


def test_cli_prints_totals(capsys):
    assert main(["plan", str(ROOT / "params.yaml"), "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "1209 training runs" in out and "totals:" in out and "cifar10_main" in out
    assert main(["plan", str(ROOT / "params.yaml"), "--device", "cpu-2core-x86_64"]) == 0
    assert "totals:" in capsys.readouterr().out
