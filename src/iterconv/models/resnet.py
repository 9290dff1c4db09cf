"""Pre-activation ResNet of Lippl, Peters & Kriegeskorte (2024), appendix A.3.

    stem: Conv3x3(in -> c0)
    stage 1: B blocks, c0 channels, at full resolution
    stage s > 1: downsampling block (stride 2, channels x2, option-A shortcut), then B blocks
    head: BN -> ReLU -> global average pool -> Linear

| preset            | stages x blocks | c0 | parameters (10 classes, 3 input channels) |
|-------------------|-----------------|----|-------------------------------------------|
| paper CIFAR-10    | 3 x 16          | 8  | 408,690                                   |
| paper CIFAR-10    | 3 x 16          | 16 | 1,626,074                                 |
| paper CIFAR-10    | 3 x 16          | 32 | 6,486,954                                 |
| paper CIFAR-10    | 3 x 16          | 64 | 25,913,162                                |

(The table is checked by tests/test_models.py.)

Block variants (``variant``):
    standard  z_{k+1} = z_k + f(z_k)
    icr       z_{k+1} = z_k + f~(z_k)      improperly convergent, f~ spectrally normalised
    pcr       z_{k+1} = x   + f~(z_k)      properly convergent, x = the stage input

and, to measure the indices on the related papers' architectures (docs/science.md):
    plain     z_{k+1} = f(z_k)                                no skip-connection
    van       z_{k+1} = f(z_k) + (1 - alpha_k) * z_k          Variable Activation Network (seed
              003): alpha per neuron in [0, 1], driven to 1 by Lagrange multipliers in training
    implicit  z_{k+1} = z_k + (1-theta) f(z_k) + theta f(z_{k+1})   implicit residual layer
              (Reshniak & Webster 2019), solved by fixed-point iteration

Downsampling blocks are ordinary (never normalised, never perturbed by the analyses).
Every stage exposes ``run(x, order)`` so analyses can read out early, drop a block or repeat
one without copying the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iterconv.models import VARIANTS  # re-exported: the block types
from iterconv.models.implicit import SolverSettings, SolveStats, implicit_residual
from iterconv.models.spectral import SpectralBound
from iterconv.models.van import SkipGate

NORMALISED = ("icr", "pcr")  # variants whose residual function is spectrally normalised

# Solver of the implicit variant's blocks: looser than the solver's defaults (1e-5, 100
# iterations), which suit the small fully connected networks of Reshniak & Webster 2019;
# activations of a BN-normalised conv block are O(1), so 1e-4 is well below what changes a
# prediction.
BLOCK_SOLVER = SolverSettings(tol=1e-4, max_iter=30, backward_tol=1e-4, backward_max_iter=30)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network."""

    in_channels: int = 3  # image channels (1 for MNIST/Digitclutter)
    num_classes: int = 10  # logits (10 sigmoid outputs for Digitclutter)
    image_size: int = 32  # input H = W; needed for the power-iteration vectors
    width: int = 16  # channels of the first stage (c0)
    stages: int = 3  # 1 for MNIST
    blocks: int = 16  # residual blocks per stage (downsampling blocks not counted)
    variant: str = "standard"  # one of VARIANTS
    mu: float = 0.95  # Lipschitz bound of f~ (icr, pcr)
    theta: float = 0.5  # implicitness of the implicit variant (0: explicit ResNet)
    multiplier_init: float = -1.0  # van: initial Lagrange multipliers (0: VAN lambda = 0)
    recurrent_init: bool = False  # identical initial weights for all blocks of a stage
    bn_gamma: float = 1.0  # initial BN scale (0.1: Cooijmans et al. 2017 variation)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if min(self.width, self.stages, self.blocks, self.in_channels, self.num_classes) < 1:
            raise ValueError("width, stages, blocks, in_channels, num_classes must be >= 1")
        if self.mu <= 0:
            raise ValueError(f"mu must be > 0, got {self.mu}")
        if not 0 <= self.theta <= 1:
            raise ValueError(f"theta must lie in [0, 1], got {self.theta}")


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class ResidualFunction(nn.Module):
    """f = Conv2 ∘ ReLU ∘ BN2 ∘ Conv1 ∘ ReLU ∘ BN1 (pre-activation, He et al. 2016b)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(z)))
        return self.conv2(F.relu(self.bn2(h)))


class Block(nn.Module):
    """One block of a stage, by variant (see the module docstring)."""

    def __init__(self, channels: int, size: int, cfg: ModelConfig):
        super().__init__()
        self.variant, self.mu, self.theta = cfg.variant, cfg.mu, cfg.theta
        self.f = ResidualFunction(channels, channels)
        self.sn = SpectralBound(channels, size) if cfg.variant in NORMALISED else None
        # VAN: one skip weight alpha per neuron (and its Lagrange multiplier, a buffer)
        shape = (channels, size, size)
        self.gate = SkipGate(shape, 0.0, cfg.multiplier_init) if cfg.variant == "van" else None
        # implicit: counters of the solves (iterations, failures) for the logs
        self.solve_stats = SolveStats() if cfg.variant == "implicit" else None

    def residual(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) for standard blocks, f~(z) = f(z) / max(L_hat / mu, 1) otherwise."""
        out = self.f(z)
        if self.sn is not None:
            bound = self.sn(self.f, update=self.training)
            out = out / torch.clamp(bound / self.mu, min=1.0)
        return out

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "plain":
            return self.f(z)
        if self.gate is not None:
            return self.gate(self.f(z), z)
        if self.variant == "implicit":
            return implicit_residual(self.f, z, self.theta, BLOCK_SOLVER, self.solve_stats)
        base = x if self.variant == "pcr" else z  # PCR: shortcut from the stage input
        return base + self.residual(z)


class Stage(nn.Module):
    """B residual blocks applied in sequence to the stage input x."""

    def __init__(self, channels: int, size: int, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(channels, size, cfg) for _ in range(cfg.blocks))

    def run(self, x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
        """Apply blocks ``order`` (indices, repeats allowed) starting from the stage input x.

        ``range(B)`` is the ordinary forward pass; ``range(k)`` reads out after k blocks;
        ``[i for i in range(B) if i != k]`` drops block k; ``[*range(B), B-1, B-1]`` applies the
        last block twice more.
        """
        z = x
        for i in order:
            z = self.blocks[i](z, x)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, range(len(self.blocks)))


class Downsample(nn.Module):
    """Residual block halving resolution and doubling channels; option-A shortcut.

    The shortcut takes every second row and column and appends zero channels (He et al. 2016a,
    option A): parameter-free, as in the paper's appendix A.3.
    """

    def __init__(self, c_in: int):
        super().__init__()
        self.f = ResidualFunction(c_in, 2 * c_in, stride=2)
        self.extra = c_in

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shortcut = F.pad(z[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))
        return shortcut + self.f(z)


class Head(nn.Module):
    """BN -> ReLU -> global average pool -> Linear."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(z)).mean(dim=(2, 3)))


class ResNet(nn.Module):
    """The paper's network. Structure: ``stem``, ``transitions[s]`` (Identity for s = 0, a
    Downsample otherwise), ``stages[s]``, ``head``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = conv3x3(cfg.in_channels, cfg.width)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        channels, size = cfg.width, cfg.image_size
        for s in range(cfg.stages):
            if s == 0:
                self.transitions.append(nn.Identity())
            else:
                self.transitions.append(Downsample(channels))
                channels, size = 2 * channels, (size + 1) // 2
            self.stages.append(Stage(channels, size, cfg))
        self.head = Head(channels, cfg.num_classes)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming init of conv/linear weights, BN gamma = cfg.bn_gamma, beta = 0; with
        recurrent init, every block of a stage copies block 0 (BN statistics stay separate)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, self.cfg.bn_gamma)
                nn.init.zeros_(m.bias)
        if self.cfg.recurrent_init:
            for stage in self.stages:
                first = stage.blocks[0].f
                for block in stage.blocks[1:]:
                    for p, p0 in zip(block.f.parameters(), first.parameters(), strict=True):
                        p.copy_(p0)

    def stage_input(self, images: torch.Tensor, s: int) -> torch.Tensor:
        """Representation entering stage s (after its downsampling block)."""
        z = self.stem(images)
        for t in range(s):
            z = self.stages[t](self.transitions[t](z))
        return self.transitions[s](z)

    def finish(self, z: torch.Tensor, s: int) -> torch.Tensor:
        """Logits from the output z of stage s, running the later stages unperturbed."""
        for t in range(s + 1, len(self.stages)):
            z = self.stages[t](self.transitions[t](z))
        return self.head(z)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.stem(images)
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            z = stage(transition(z))
        return self.head(z)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
