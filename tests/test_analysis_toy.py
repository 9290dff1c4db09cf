"""Toy inverse problem of fig 1: the algorithm converges, the ResNet learns, runs are seeded."""

from __future__ import annotations

import pandas as pd
import torch

from iterconv.analysis.toy import (
    POINTS,
    ToyConfig,
    forward_model,
    run_toy_example,
    train_toy,
    trajectory,
    write_toy,
)


def test_algorithm_converges_to_true_z():
    z = torch.tensor(POINTS, dtype=torch.float64)
    traj = trajectory("algorithm", forward_model(z), range(40))
    assert torch.allclose(traj[-1], z, atol=1e-8)
    err = (traj - z).abs().amax(dim=(1, 2))
    assert (err[1:] <= err[:-1]).all()  # monotone: error factors |1 - eps alpha| < 1
    assert torch.allclose(traj[0], forward_model(z))  # z^(0) = x


def test_resnet_learns_inverse():
    cfg = ToyConfig()
    net = train_toy("resnet", cfg, seed=0)
    z = torch.rand(500, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        est = trajectory(net, forward_model(z), range(cfg.blocks))[-1]
    assert float((est - z).pow(2).mean()) < 0.01


def test_deterministic_and_tables(tmp_path):
    cfg = ToyConfig(steps=15, test_points=50)
    a, b = run_toy_example(seed=3, cfg=cfg), run_toy_example(seed=3, cfg=cfg)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    traj = a["trajectories"]
    assert set(traj["method"]) == {"algorithm", "feedforward", "resnet", "recurrent"}
    sizes = traj.groupby(["method", "point", "perturbation"]).size().unstack()
    assert (sizes["none"] == 9).all() and (sizes["drop4"] == 8).all()
    assert (sizes["extra"] == 17).all()
    assert 4 not in set(traj.loc[traj.perturbation == "drop4", "step"])
    write_toy(tmp_path, a)
    back = pd.read_csv(tmp_path / "trajectories.csv")
    assert list(back.columns) == list(traj.columns) and len(back) == len(traj)
