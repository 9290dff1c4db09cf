"""Variable Activation Networks (the VAN paper, "Avoiding degradation in deep feed-forward networks
by phasing out skip-connections", ICLR 2018 submission).

A VAN block gates its skip-connection per neuron (eq. 4)::

    x_{l+1} = F_l(x_l) + (1 - alpha_l) * x_l,        alpha_l in [0, 1]^n

and training solves "minimise C subject to alpha_l = 1" through the Lagrangian (eq. 6)
``L = C + sum_l lambda_l^T (alpha_l - 1)``: SGD on alpha with gradient
``dC/dalpha + lambda`` (eq. 7), then gradient ascent on the multipliers
``lambda <- lambda + eta0 (alpha - 1)`` (eq. 8), with alpha clipped to [0, 1]. alpha starts at
0 (a ResNet) and is pushed to 1 (a plain network) as lambda decreases. VAN (lambda = 0) keeps
the multipliers at 0: alpha is then an ordinary learnt gate.

One training step with gates::

    loss.backward()
    add_multiplier_gradients(model)              # eq. 7
    optimizer.step()
    update_multipliers(model, fraction * lr)     # clip alpha, then eq. 8

Eq. 7 is a plain gradient step: the alphas get their own optimizer group without momentum or
weight decay (:func:`gate_group`), even when the weights use SGD with momentum.

The pieces are shape generic (per-neuron alpha of shape (n,) for fully connected layers,
(C, H, W) for feature maps). The multipliers are a buffer of :class:`SkipGate`, so
``state_dict()`` checkpoints them with the model.

The fully connected networks of section 4.1 (:class:`FCNet`), width 50:

    stem: Linear(d_in -> 50)                      the first, plain layer
    l layers, each with F = BN -> ReLU -> Linear(50 -> 50):
        plain     x_{l+1} = F(x_l)
        resnet    x_{l+1} = F(x_l) + x_l
        van       x_{l+1} = F(x_l) + (1 - alpha_l) x_l      (lambda_0 = -1)
        van_free  the same, lambda = 0 (never updated)
    head: BN -> ReLU -> Linear(50 -> classes)     softmax in the loss

The plain layer is the residual function without the skip-connection (pre-activation order),
so a VAN whose alphas all reached 1 *is* the plain network (checked by tests/test_van.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

ARCHS = ("plain", "resnet", "van", "van_free")
PHASE_OUT_TOL = 1e-3  # the skips count as phased out once the mean alpha reaches 1 - this


class SkipGate(nn.Module):
    """out = fx + (1 - alpha) * x; alpha: Parameter(shape), multiplier: buffer(shape).

    ``constrained=False`` is VAN (lambda = 0): the multipliers stay at ``multiplier_init``
    (use 0) and :func:`update_multipliers` only clips alpha.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        alpha_init: float = 0.0,
        multiplier_init: float = -1.0,
        *,
        constrained: bool = True,
    ):
        super().__init__()
        self.constrained = constrained
        self.alpha = nn.Parameter(torch.full(shape, float(alpha_init)))
        self.register_buffer("multiplier", torch.full(shape, float(multiplier_init)))

    def forward(self, fx: Tensor, x: Tensor) -> Tensor:
        return fx + (1 - self.alpha) * x

    def extra_repr(self) -> str:
        return f"shape={tuple(self.alpha.shape)}, constrained={self.constrained}"


def skip_gates(model: nn.Module) -> list[SkipGate]:
    """Every :class:`SkipGate` of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, SkipGate)]


@torch.no_grad()
def add_multiplier_gradients(model: nn.Module) -> None:
    """After ``loss.backward()``: alpha.grad += multiplier, the Lagrangian's dL/dalpha (eq. 7)."""
    for gate in skip_gates(model):
        if gate.alpha.grad is None:
            gate.alpha.grad = gate.multiplier.clone()
        else:
            gate.alpha.grad.add_(gate.multiplier)


@torch.no_grad()
def update_multipliers(model: nn.Module, step: float) -> None:
    """After ``optimizer.step()``: clip alpha to [0, 1], then (constrained gates only)
    multiplier += step * (alpha - 1) (eq. 8); ``step`` = fraction * current learning rate.

    Since alpha <= 1 after clipping, the multipliers never increase.
    """
    for gate in skip_gates(model):
        gate.alpha.clamp_(0.0, 1.0)
        if gate.constrained:
            gate.multiplier.add_(step * (gate.alpha - 1))


@torch.no_grad()
def alpha_residual(model: nn.Module) -> float:
    """(1/L) sum_l mean_i (1 - alpha_{l,i})^2 over the L gates (the paper's "mean alpha
    residual", fig. 2); 0 once every skip-connection is gone, NaN for a model without gates."""
    gates = skip_gates(model)
    if not gates:
        return float("nan")
    return float(sum(((1 - g.alpha) ** 2).mean() for g in gates) / len(gates))


@torch.no_grad()
def mean_multiplier(model: nn.Module) -> float:
    """Mean Lagrange multiplier over all gates and neurons; NaN for a model without gates."""
    gates = skip_gates(model)
    if not gates:
        return float("nan")
    return float(torch.cat([g.multiplier.flatten() for g in gates]).mean())


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The alphas. Keep them out of weight decay: decay pulls alpha towards 0, i.e. back
    towards the skip-connections the constraint alpha = 1 removes, and their objective is the
    Lagrangian alone."""
    return [g.alpha for g in skip_gates(model)]


def gate_group(model: nn.Module, *, momentum: bool = False) -> dict[str, Any]:
    """The optimizer parameter group of the alphas: no weight decay (see
    :func:`gate_parameters`) and, unless ``momentum``, no momentum, so that SGD applies eq. 7
    as stated, ``alpha <- alpha - lr (dC/dalpha + lambda)``. ``momentum=True`` lets the alphas
    share the optimizer's momentum (about eightfold faster phase-out at momentum 0.9)."""
    group: dict[str, Any] = {"params": gate_parameters(model), "weight_decay": 0.0}
    if not momentum:
        group["momentum"] = 0.0
    return group


@torch.no_grad()
def mean_alpha(model: nn.Module) -> float:
    """Mean alpha over all gates and neurons; NaN for a model without gates."""
    gates = skip_gates(model)
    if not gates:
        return float("nan")
    return float(torch.cat([g.alpha.flatten() for g in gates]).mean())


class FCLayer(nn.Module):
    """One hidden layer of :class:`FCNet`: F = BN -> ReLU -> Linear, combined with x by arch."""

    def __init__(self, width: int, arch: str):
        super().__init__()
        self.arch = arch
        self.f = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width))
        self.gate = (
            SkipGate(
                (width,),
                multiplier_init=0.0 if arch == "van_free" else -1.0,
                constrained=arch == "van",
            )
            if arch in ("van", "van_free")
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        fx = self.f(x)
        if self.gate is not None:
            return self.gate(fx, x)
        return fx + x if self.arch == "resnet" else fx


class FCNet(nn.Module):
    """The thin fully connected network of section 4.1 (see the module docstring)."""

    def __init__(self, in_features: int, num_classes: int, depth: int, arch: str, width: int = 50):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if min(in_features, num_classes, depth, width) < 1:
            raise ValueError("in_features, num_classes, depth and width must be >= 1")
        self.stem = nn.Linear(in_features, width)
        self.layers = nn.Sequential(*(FCLayer(width, arch) for _ in range(depth)))
        self.head = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, num_classes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming-normal linear weights (He et al. 2015), zero biases, BN gamma 1, beta 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x.flatten(1))))
