"""Implicit residual layers (Reshniak & Webster 2019, "Robust learning with implicit
residual networks").

The layer (eq. 7), a theta-method step of the ODE ``dx/dt = f(x)`` (theta = 0: forward Euler,
the ordinary ResNet block; 1/2: trapezoidal rule; 1: backward Euler)::

    y = x + (1 - theta) f(x) + theta f(y)

Forward: the fixed point of ``g(y) = x + (1-theta) f(x) + theta f(y)`` without autograd, from
``y^1 = x + f(x)`` (the explicit layer, section 2.1), by Anderson acceleration or plain
fixed-point iteration (:mod:`iterconv.models.fixed_point`); the solve stops when
``max|g(y) - y| <= tol`` or after ``max_iter`` evaluations of f. The output is one more
evaluation, ``x + (1-theta) f(x) + theta f(y*)``, with autograd.

Backward (implicit differentiation): with ``J = df/dy`` at ``y*`` and ``g = dL/dy``, solve
``(I - theta J)^T v = g`` and backpropagate ``v`` through ``(1 - theta) f(x) + theta f(y*)``
with ``y*`` held fixed. This gives ``dL/dx = v + (1-theta) J(x)^T v`` and
``dL/dp = (1-theta) (df(x)/dp)^T v + theta (df(y*)/dp)^T v``. The linear solve uses only
vector-Jacobian products (:func:`~iterconv.models.fixed_point.adjoint`). The paper's Listing 1
does the same with an identity autograd function whose backward performs the linear solve.

Neither solve fails silently: :class:`SolveStats` counts iterations and failures and keeps the
final residual of every solve; without a stats object a non-converged solve raises a
:class:`RuntimeWarning`. A failed forward solve returns its best iterate, which is not a fixed
point: :func:`implicit_step` reports the residual per sample so that callers can keep such
samples out of what they measure.

BatchNorm inside ``f`` (the convolutional blocks of :mod:`iterconv.models.resnet`): in training
mode every call of a BatchNorm layer would update its running statistics, so the fixed-point
iterations would pull them towards the statistics of the intermediate iterates, and a layer
would update them a data-dependent number of times. :func:`implicit_residual` therefore lets
only the first call, ``f(x)``, update them (the one call an explicit block makes); every other
call runs inside :func:`frozen_running_stats`, which normalises with the batch statistics of
its input without touching the running averages. In eval mode nothing changes.

The paper's two regularisers (section 2.1, eqs. 9 and 10, reconstructed: see docs/implicit.md):
:func:`convergence_penalty` and :func:`perturbation_penalty`. :class:`ImplicitResNet` is the
fully connected network of the paper's examples.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from iterconv.models.fixed_point import (
    DEFAULT_SETTINGS,
    SolverSettings,
    SolveStats,
    sample_residual,
    solve_adjoint,
    solve_forward,
)

__all__ = [
    "ImplicitResNet",
    "SolveStats",
    "SolverSettings",
    "VectorField",
    "convergence_penalty",
    "frozen_running_stats",
    "implicit_residual",
    "implicit_step",
    "perturbation_penalty",
    "solve_adjoint",
]


@contextlib.contextmanager
def frozen_running_stats(module: object) -> Iterator[None]:
    """Within the block, BatchNorm layers of ``module`` (if it is an ``nn.Module``) in training
    mode normalise with batch statistics but leave their running statistics (and
    ``num_batches_tracked``) untouched. Nothing is written to the buffers, so autograd graphs
    that saved them stay valid."""
    layers = (
        [m for m in module.modules() if isinstance(m, _BatchNorm)]
        if isinstance(module, nn.Module)
        else []
    )
    tracked = [m.track_running_stats for m in layers]
    try:
        for m in layers:
            m.track_running_stats = False  # batch statistics, no update (see _BatchNorm.forward)
        yield
    finally:
        for m, t in zip(layers, tracked, strict=True):
            m.track_running_stats = t


def _warn(what: str, stats: SolveStats | None) -> None:
    if stats is None:
        warnings.warn(f"implicit_residual: {what} did not converge", RuntimeWarning, stacklevel=4)


class _AdjointSolve(torch.autograd.Function):
    """Identity forward; backward replaces the incoming gradient g by the solution v of
    ``(I - theta df/dy)^T v = g``, using the graph of ``fy = f(ys)`` for the products."""

    @staticmethod
    def forward(ctx, y, fy, ys, theta, settings, stats):
        ctx.fy, ctx.ys, ctx.theta, ctx.settings, ctx.stats = fy, ys, theta, settings, stats
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        def vjp(u: Tensor) -> Tensor:
            return torch.autograd.grad(ctx.fy, ctx.ys, u, retain_graph=True)[0]

        out = solve_adjoint(vjp, g, ctx.theta, ctx.settings, ctx.stats)
        if not out.converged:
            _warn(f"the backward linear solve (relative residual {out.residual:.3g})", ctx.stats)
        return out.v, None, None, None, None, None


def implicit_step(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    theta: float,
    settings: SolverSettings = DEFAULT_SETTINGS,
    stats: SolveStats | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`implicit_residual` and the final forward residual per sample (dim 0, float64):
    ``max |g(y*) - y*|`` over the sample's elements, zeros for ``theta = 0``. A sample whose
    residual exceeds ``settings.tol`` was not solved: its output is not the layer's."""
    if not 0 <= theta <= 1:
        raise ValueError(f"theta must lie in [0, 1], got {theta}")
    fx = f(x)
    if theta == 0:
        return x + fx, sample_residual(torch.zeros_like(x))
    with frozen_running_stats(f):
        base = (x + (1 - theta) * fx).detach()
        solve = solve_forward(f, base, (x + fx).detach(), theta, settings, stats)
        if not solve.converged:
            _warn(f"the fixed-point iteration (residual {solve.max_residual:.3g})", stats)
        y = solve.y
        if not torch.is_grad_enabled():
            return base + theta * f(y), solve.residual
        ys = y.requires_grad_(True)
        fy = f(ys)
    out = x + (1 - theta) * fx + theta * fy  # y* held fixed: its dependence is the solve's
    if out.requires_grad:
        out = _AdjointSolve.apply(out, fy, ys, theta, settings, stats)
    return out, solve.residual


def implicit_residual(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    theta: float,
    settings: SolverSettings = DEFAULT_SETTINGS,
    stats: SolveStats | None = None,
) -> Tensor:
    """``y = x + (1-theta) f(x) + theta f(y)`` for any tensor shape (f maps a shape to itself).

    Gradients w.r.t. ``x`` and f's parameters come from implicit differentiation (module
    docstring); ``theta = 0`` returns exactly ``x + f(x)``. Only the call ``f(x)`` may update
    BatchNorm running statistics. ``f`` must be deterministic (no dropout): the backward solve
    uses the Jacobian of the last call.
    """
    return implicit_step(f, x, theta, settings, stats)[0]


# --- regularisers (section 2.1) ------------------------------------------------------------


def _sample_norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


def convergence_penalty(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    theta: float,
    rate: float,
    iterations: int | None = 5,
    settings: SolverSettings = DEFAULT_SETTINGS,
) -> Tensor:
    """The convergence-rate regulariser (eq. 9, reconstructed) of one layer: with autograd
    through the plain fixed-point iterates ``y^0 = x``, ``y^1 = x + f(x)``,
    ``y^{k+1} = x + (1-theta) f(x) + theta f(y^k)``, the steps ``r_k = |y^{k+1} - y^k|`` per
    sample, and ``mean over samples of sum_k relu(r_{k+1} - rate * r_k)``. Zero when the
    iteration contracts at least by ``rate`` per step; smaller ``rate`` asks for faster
    convergence. 0 for ``theta = 0`` (the explicit layer needs no iteration).

    ``iterations``: the number of terms (the first steps only), or None for the whole solve, as
    in the paper: until every sample's step is within ``settings.tol`` (max norm, the solver's
    test), at most ``settings.max_iter`` steps, and stopping before a step that is not finite or
    exceeds ``settings.divergence`` times the first. Every step is kept in the autograd graph
    (the paper's "caching all intermediate iterations"). BatchNorm statistics are frozen for all
    calls but the first."""
    if theta == 0:
        return x.new_zeros(())
    fx = f(x)
    base = x + (1 - theta) * fx
    y, norms = x + fx, [_sample_norms(fx)]
    limit = settings.max_iter if iterations is None else iterations
    first = float(sample_residual(fx).max()) if fx.numel() else 0.0
    with frozen_running_stats(f):
        for _ in range(limit):
            new = base + theta * f(y)
            step = float(sample_residual(new - y).max()) if y.numel() else 0.0
            if iterations is None and (
                not math.isfinite(step) or step > settings.divergence * first
            ):
                break
            norms.append(_sample_norms(new - y))
            y = new
            if iterations is None and step <= settings.tol:
                break
    terms = (torch.relu(b - rate * a) for a, b in itertools.pairwise(norms))
    return sum(terms, x.new_zeros(())).mean()  # 0 when no step was kept


def perturbation_penalty(
    clean: Sequence[Tensor], perturbed: Sequence[Sequence[Tensor]], damping: float
) -> Tensor:
    """The perturbation-stream regulariser (eq. 10, reconstructed).

    Args:
        clean: hidden states ``x_0 .. x_L`` of the network on the data, each (N, ...).
        perturbed: per perturbation stream, the states ``x~_0 .. x~_L`` of the same network on
            perturbed inputs.
        damping: beta; the penalty is zero when every layer shrinks the distance between the
            streams at least by this factor.

    Returns ``mean over streams and samples of sum_l relu(d_{l+1} - beta d_l)`` with
    ``d_l = |x~_l - x_l|``; smaller beta asks for faster damping of perturbations.
    """
    if not perturbed:
        return clean[0].new_zeros(())
    total = clean[0].new_zeros(())
    for stream in perturbed:
        d = [_sample_norms(p - c) for p, c in zip(stream, clean, strict=True)]
        total = total + sum(torch.relu(b - damping * a) for a, b in itertools.pairwise(d))
    return total.mean() / len(perturbed)


# --- the network of the paper's examples ----------------------------------------------------


class VectorField(nn.Module):
    """``f(z) = h * relu(W z + b)``: one time step of the ODE ``dz/dt = relu(W(t) z + b(t))``.
    With ``antisymmetric`` the matrix is ``W - W^T`` (the form of the authors' early example
    scripts; its eigenvalues are imaginary, so the linearised ODE neither grows nor decays)."""

    def __init__(self, width: int, step: float, antisymmetric: bool = False):
        super().__init__()
        self.step, self.antisymmetric = step, antisymmetric
        self.linear = nn.Linear(width, width)

    @property
    def weight(self) -> Tensor:
        w = self.linear.weight
        return w - w.T if self.antisymmetric else w

    def pre_activation(self, z: Tensor) -> Tensor:
        return nn.functional.linear(z, self.weight, self.linear.bias)

    def forward(self, z: Tensor) -> Tensor:
        return self.step * torch.relu(self.pre_activation(z))

    def jacobian(self, z: Tensor) -> Tensor:
        """df/dz at each row of ``z`` (N, width) -> (N, width, width)."""
        active = (self.pre_activation(z) > 0).to(z.dtype)
        return self.step * active[:, :, None] * self.weight[None]


class ImplicitResNet(nn.Module):
    """Fully connected residual network of the examples (section 3)::

        z_0 = (x, 0, ..., 0)                    input padded with zeros to ``width``
        z_{l+1} = z_l + (1-theta) f_l(z_l) + theta f_l(z_{l+1}),  f_l = VectorField(h = T / L)
        output = Linear(width -> d_out)(z_L)

    Initial weights are "stationary": one draw ``W ~ N(0, 1)``, scaled to spectral radius 1,
    shared by every layer as its starting value (then trained independently); biases 0.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int,
        depth: int,
        theta: float,
        horizon: float,
        settings: SolverSettings = DEFAULT_SETTINGS,
        antisymmetric: bool = False,
    ):
        super().__init__()
        if width < d_in:
            raise ValueError(f"width ({width}) must be >= the input dimension ({d_in})")
        self.d_in, self.theta, self.settings = d_in, theta, settings
        self.stats = SolveStats()
        self.layers = nn.ModuleList(
            VectorField(width, horizon / depth, antisymmetric) for _ in range(depth)
        )
        self.head = nn.Linear(width, d_out)
        with torch.no_grad():
            w = torch.randn(width, width)
            w /= torch.linalg.eigvals(w).abs().max()
            for layer in self.layers:
                layer.linear.weight.copy_(w)
                layer.linear.bias.zero_()

    def embed(self, x: Tensor) -> Tensor:
        return nn.functional.pad(x, (0, self.layers[0].linear.in_features - self.d_in))

    def solve(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Hidden states ``z_0 .. z_L`` (L + 1 tensors of shape (N, width)) and, per sample,
        the largest final forward residual over the layers (N,) (0 for theta = 0)."""
        states = [self.embed(x)]
        residual = torch.zeros(len(x), dtype=torch.float64)
        for layer in self.layers:
            z, res = implicit_step(layer, states[-1], self.theta, self.settings, self.stats)
            states.append(z)
            residual = torch.maximum(residual, res.cpu())
        return states, residual

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """Hidden states ``z_0 .. z_L`` (L + 1 tensors of shape (N, width))."""
        return self.solve(x)[0]

    def converged(self, residual: Tensor) -> Tensor:
        """Samples whose every forward solve reached the tolerance (from :meth:`solve`)."""
        return residual <= self.settings.tol

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trajectory(x)[-1])

    def convergence_penalty(
        self, states: Sequence[Tensor], rate: float, iterations: int | None
    ) -> Tensor:
        """Sum over layers of :func:`convergence_penalty` at the layers' inputs ``states``
        (``iterations`` None: over the whole plain solve, capped by the solver settings)."""
        return sum(
            convergence_penalty(layer, z, self.theta, rate, iterations, self.settings)
            for layer, z in zip(self.layers, states, strict=False)
        )

    @torch.no_grad()
    def amplification(self, states: Sequence[Tensor]) -> Tensor:
        """Spectral radius of each layer's Jacobian ``dz_{l+1}/dz_l =
        (I - theta J_l(z_{l+1}))^{-1} (I + (1-theta) J_l(z_l))`` per sample: (L, N). Above 1:
        the layer amplifies perturbations along some direction (unstable step). Valid only
        where the layer's forward solve converged (:meth:`converged`)."""
        eye = torch.eye(states[0].shape[1], dtype=states[0].dtype)
        out = []
        for layer, z, y in zip(self.layers, states, states[1:], strict=False):
            lhs = eye - self.theta * layer.jacobian(y)
            rhs = eye + (1 - self.theta) * layer.jacobian(z)
            out.append(torch.linalg.eigvals(torch.linalg.solve(lhs, rhs)).abs().amax(dim=1))
        return torch.stack(out)
