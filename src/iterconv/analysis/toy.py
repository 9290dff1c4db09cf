"""The toy inverse problem of fig 1 (paper section "ResNets can represent iterative
computations"; docs/analysis.md section 3).

Invert x = f(z) = (1.5 z1, 0.75 z2) with four methods, each read out at every step:

    algorithm   z^(0) = x,  z_i <- z_i - s_i eps_i (alpha_i z_i - x_i),  eps = (0.3, 0.8)
    feedforward encoder Linear(2, h); 8 layers z <- relu(W z + b); decoder Linear(h, 2)
    resnet      encoder; 8 blocks z <- z + W2 relu(W1 z + b1) + b2 (hidden size h); decoder
    recurrent   as resnet, one block shared by all 8 steps (weight-shared recurrent ResNet)

The networks are trained with Adam on the final read-out (MSE to z, z ~ U[-1, 1]^2, fresh
samples every step, seeded). Perturbations: ``none`` (steps 0..8), ``drop4`` (step 4 skipped;
rows keep the block numbers 0..3, 5..8), ``extra`` (the last block/iteration applied 16 more
times; rows are steps 8..24, starting from the unperturbed final estimate).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from iterconv.io import write_text

ALPHA = (1.5, 0.75)
EPS = (0.3, 0.8)
METHODS = ("algorithm", "feedforward", "resnet", "recurrent")
DROP = 4  # 1-based block dropped in the "drop4" perturbation
# Test points for the trajectories, one per quadrant (chosen by hand, fixed).
POINTS = ((0.8, 0.6), (-0.6, 0.9), (-0.7, -0.5), (0.5, -0.8))


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of the toy networks and their training."""

    hidden: int = 16  # width h of the representation and of each block's hidden layer
    blocks: int = 8  # residual blocks / layers / algorithm iterations
    extra: int = 16  # extra applications of the last block
    steps: int = 500  # Adam steps (~4 s per network on one CPU core)
    batch: int = 128  # fresh samples per step
    lr: float = 1e-2
    test_points: int = 1000  # for the summary MSEs


def forward_model(z: torch.Tensor) -> torch.Tensor:
    """x = f(z) for (N, 2) latents."""
    return z * torch.tensor(ALPHA, dtype=z.dtype)


class ToyNet(nn.Module):
    """Encoder, ``blocks`` layers (plain, residual or shared residual), linear read-out."""

    def __init__(self, kind: str, hidden: int, blocks: int):
        super().__init__()
        if kind not in METHODS[1:]:
            raise ValueError(f"kind must be one of {METHODS[1:]}, got {kind!r}")
        self.kind = kind
        self.encoder, self.decoder = nn.Linear(2, hidden), nn.Linear(hidden, 2)
        n_layers = 1 if kind == "recurrent" else blocks
        if kind == "feedforward":
            self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers))
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                for _ in range(n_layers)
            )

    def block(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Block i (0-based) applied to the (N, h) representation."""
        if self.kind == "feedforward":
            return torch.relu(self.layers[i](z))
        return z + self.layers[0 if self.kind == "recurrent" else i](z)


def trajectory(method: str | ToyNet, x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """Read-outs (len(order) + 1, N, 2): before any block, then after each block in ``order``."""
    if isinstance(method, ToyNet):
        z = method.encoder(x)
        out = [method.decoder(z)]
        for i in order:
            z = method.block(z, i)
            out.append(method.decoder(z))
        return torch.stack(out)
    if method != "algorithm":
        raise ValueError(f"unknown method {method!r}")
    alpha, eps = torch.tensor(ALPHA, dtype=x.dtype), torch.tensor(EPS, dtype=x.dtype)
    z, out = x.clone(), [x.clone()]
    for _ in order:  # every iteration is the same update; s_i = sign(alpha_i)
        z = z - alpha.sign() * eps * (alpha * z - x)
        out.append(z)
    return torch.stack(out)


def train_toy(kind: str, cfg: ToyConfig, seed: int) -> ToyNet:
    """A ToyNet trained on the final read-out; deterministic given ``seed``."""
    with torch.random.fork_rng():  # keep the caller's global RNG untouched
        torch.manual_seed(seed)
        net = ToyNet(kind, cfg.hidden, cfg.blocks)
        gen = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        order = range(cfg.blocks)
        for _ in range(cfg.steps):
            z = torch.rand(cfg.batch, 2, generator=gen) * 2 - 1
            loss = (trajectory(net, forward_model(z), order)[-1] - z).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def perturbations(blocks: int, extra: int) -> dict[str, tuple[list[int], list[int]]]:
    """Name -> (block order, step label of every read-out)."""
    full = list(range(blocks))
    drop = [i for i in full if i != DROP - 1]
    return {
        "none": (full, list(range(blocks + 1))),
        "drop4": (drop, [0, *(i + 1 for i in drop)]),
        "extra": (full + [blocks - 1] * extra, list(range(blocks + extra + 1))),
    }


@torch.no_grad()
def run_toy_example(seed: int = 0, cfg: ToyConfig | None = None) -> dict[str, pd.DataFrame]:
    """Train the three networks and tabulate all four methods.

    Returns:
        ``trajectories``: columns method, point, perturbation, step, z1, z2, true_z1, true_z2.
        ``summary``: method, perturbation, mse (final read-out vs z on ``test_points`` latents).
    """
    cfg = cfg or ToyConfig()
    with torch.enable_grad():
        methods = {"algorithm": "algorithm"} | {k: train_toy(k, cfg, seed) for k in METHODS[1:]}
    points = torch.tensor(POINTS)
    test_z = torch.rand(cfg.test_points, 2, generator=torch.Generator().manual_seed(seed + 2))
    test_z = test_z * 2 - 1
    rows, summary = [], []
    for name, method in methods.items():
        for pert, (order, steps) in perturbations(cfg.blocks, cfg.extra).items():
            traj = trajectory(method, forward_model(points), order)
            keep = [i for i, st in enumerate(steps) if pert != "extra" or st >= cfg.blocks]
            for p, (t1, t2) in enumerate(POINTS):
                for i in keep:
                    z1, z2 = traj[i, p].tolist()
                    rows.append((name, p, pert, steps[i], z1, z2, t1, t2))
            est = trajectory(method, forward_model(test_z), order)[-1]
            summary.append((name, pert, float((est - test_z).pow(2).mean())))
    cols = ["method", "point", "perturbation", "step", "z1", "z2", "true_z1", "true_z2"]
    return {
        "trajectories": pd.DataFrame(rows, columns=cols),
        "summary": pd.DataFrame(summary, columns=["method", "perturbation", "mse"]),
    }


def write_toy(out: str | os.PathLike, tables: dict[str, pd.DataFrame]) -> None:
    """Write every table as ``<name>.csv`` in ``out``, atomically."""
    for name, df in tables.items():
        write_text(Path(out) / f"{name}.csv", df.to_csv(index=False))
