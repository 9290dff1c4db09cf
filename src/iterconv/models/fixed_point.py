"""Fixed-point solvers of the implicit residual layer (docs/implicit.md).

Forward: a solution of ``y = g(y)`` with ``g(y) = base + theta f(y)``, by plain fixed-point
iteration (``picard``: ``y^{k+1} = g(y^k)``, the paper's choice) or by Anderson acceleration
(``anderson``: the next iterate mixes the last ``history`` + 1 values of ``g`` with per-sample
weights that minimise the linearised residual). Both stop when the fixed-point residual
``max |g(y) - y|`` is within an absolute tolerance, and both report it per sample (dim 0).
:class:`SolverSettings` defaults to ``picard``, so that callers that do not choose (the
convolutional blocks of :mod:`iterconv.models.resnet`) keep the paper's iteration; the examples
of Reshniak & Webster 2019 choose ``anderson`` (docs/implicit.md says why).

Backward: the adjoint system ``(I - theta J)^T v = g`` of implicit differentiation, written as
the fixed point ``v = g + theta J^T v`` of a linear map and solved by the same two methods
(``picard`` is the paper's Neumann series), with unrestarted GMRES as the fallback.

Anderson acceleration (Walker & Ni 2011, "type II", no damping): with residuals
``r_k = g(y_k) - y_k`` and the differences ``dR``, ``dG`` of the last ``m + 1`` residuals and
values of ``g``, solve per sample ``min_c |r_k - dR c|^2 + lam |c|^2`` and set
``y_{k+1} = g(y_k) - dG c``. On a linear map this is a Krylov method over the history (GMRES
when the history is unlimited). ``lam`` is ``regularisation`` times the mean diagonal of
``dR^T dR``: it keeps the m x m system solvable when the differences become collinear or vanish
(converged samples). The least-squares problem is solved in float64 whatever the dtype of the
iterates. Mixing per sample is exact for maps that act on each sample separately; for maps that
couple samples (BatchNorm with batch statistics) it is still an iteration with the same fixed
points. Safeguards against the kinks of ReLU networks: :class:`_Anderson`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

METHODS = ("anderson", "picard")
# Float32 iterates are trusted to reach tolerances down to this (absolute, for states of order 1;
# relative for the adjoint): 64 units of float32 rounding. Below it, run in float64
# (see float64_needed).
FLOAT32_FLOOR = 64 * torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class SolverSettings:
    """Forward fixed-point solve and backward linear solve."""

    tol: float = 1e-5  # forward: stop when max |g(y) - y| <= tol (absolute)
    max_iter: int = 100  # forward: evaluations of f at most (after y^1 = x + f(x))
    backward_tol: float = 1e-6  # backward: max |residual| <= backward_tol * max |g| (relative)
    backward_max_iter: int = 100  # backward: products at most, as many GMRES steps after
    divergence: float = 1e3  # backward: fall back once the residual grows by this factor
    method: str = "picard"  # "picard" (plain iteration / Neumann series) or "anderson"
    history: int = 5  # Anderson: past differences mixed (m)
    regularisation: float = 1e-6  # Anderson: Tikhonov weight, relative to the Gram diagonal

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.history < 1 or self.max_iter < 1 or self.backward_max_iter < 1:
            raise ValueError("history, max_iter and backward_max_iter must be >= 1")
        if self.tol <= 0 or self.backward_tol <= 0 or self.regularisation < 0:
            raise ValueError("tolerances must be > 0 and the regularisation >= 0")


DEFAULT_SETTINGS = SolverSettings()


def float64_needed(settings: SolverSettings, scale: float = 1.0) -> bool:
    """Whether a tolerance lies below what float32 iterates resolve: the forward tolerance
    against ``FLOAT32_FLOOR * max(scale, 1)`` (``scale``: the size of the states), the relative
    backward tolerance against ``FLOAT32_FLOOR``."""
    return settings.tol < FLOAT32_FLOOR * max(scale, 1.0) or settings.backward_tol < FLOAT32_FLOOR


@dataclass
class SolveStats:
    """Counters accumulated over every call that receives this object (call :meth:`reset`
    between epochs or evaluations). Residuals are those at the end of each solve."""

    forward_calls: int = 0  # forward solves (one per layer application with theta > 0)
    forward_iterations: int = 0  # evaluations of f in the fixed-point loops (summed)
    forward_max_iterations: int = 0  # most evaluations one solve used
    forward_failures: int = 0  # forward solves that stopped above tol (limit or non-finite)
    forward_max_residual: float = 0.0  # largest final max |g(y) - y| seen
    backward_calls: int = 0  # backward linear solves
    backward_iterations: int = 0  # vector-Jacobian products (summed, GMRES included)
    backward_max_iterations: int = 0  # most products one solve used
    backward_fallbacks: int = 0  # solves where the first method failed and GMRES ran
    backward_failures: int = 0  # solves still above backward_tol after the fallback
    backward_max_residual: float = 0.0  # largest final relative residual seen
    forward_residuals: list[float] = field(default_factory=list)  # final residual of each solve
    backward_residuals: list[float] = field(default_factory=list)  # same, relative, backward

    def reset(self) -> None:
        for name, value in asdict(SolveStats()).items():
            setattr(self, name, value)

    @property
    def mean_forward_iterations(self) -> float:
        return self.forward_iterations / self.forward_calls if self.forward_calls else math.nan

    @property
    def mean_backward_iterations(self) -> float:
        return self.backward_iterations / self.backward_calls if self.backward_calls else math.nan

    @property
    def forward_failure_fraction(self) -> float:
        return self.forward_failures / self.forward_calls if self.forward_calls else math.nan

    @property
    def backward_failure_fraction(self) -> float:
        return self.backward_failures / self.backward_calls if self.backward_calls else math.nan


@dataclass
class FixedPointResult:
    """Outcome of one solve. When it failed, ``y`` is the iterate with the smallest residual:
    not a fixed point, and ``residual`` says by how much per sample."""

    y: Tensor  # the returned iterate
    residual: Tensor  # per sample (dim 0): max |g(y) - y| over the sample's elements, float64
    iterations: int  # evaluations of g
    converged: bool  # every sample within the tolerance

    @property
    def max_residual(self) -> float:
        return float(self.residual.max()) if self.residual.numel() else 0.0


def sample_residual(t: Tensor) -> Tensor:
    """``max |t|`` per sample (dim 0) in float64: (N,); a 0-d tensor is one sample."""
    t = t.detach()
    flat = t.reshape(1, -1) if t.dim() == 0 else t.reshape(t.shape[0], -1)
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0], dtype=torch.float64)
    return flat.abs().amax(dim=1).double()


def _max(res: Tensor) -> float:
    return float(res.max()) if res.numel() else 0.0


def fixed_point(
    g: Callable[[Tensor], Tensor],
    y0: Tensor,
    tol: float,
    max_iter: int,
    method: str = "picard",
    history: int = 5,
    regularisation: float = 1e-6,
    divergence: float | None = None,
) -> FixedPointResult:
    """Solve ``y = g(y)`` from ``y0`` with at most ``max_iter`` evaluations of ``g`` (no
    autograd inside). Stops at the first iterate whose residual ``max |g(y) - y|`` is within
    ``tol``; otherwise (limit, a non-finite residual, or, with ``divergence``, a residual grown
    by that factor over the first one) returns the iterate with the smallest residual."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y, iters = y0, 0
    best: FixedPointResult | None = None
    first = math.nan
    mixer = _Anderson(history, regularisation) if method == "anderson" else None
    with torch.no_grad():
        while iters < max_iter:
            gy = g(y)
            iters += 1
            r = gy - y
            res = sample_residual(r)
            worst = _max(res)
            first = worst if iters == 1 else first
            if best is None or worst < best.max_residual or math.isnan(best.max_residual):
                best = FixedPointResult(y, res, iters, False)
            if worst <= tol or not math.isfinite(worst):
                break
            if divergence is not None and worst > divergence * first:
                break
            y = gy if mixer is None else mixer.step(gy, r, res).reshape(y.shape).to(y.dtype)
    assert best is not None
    best.iterations = iters
    best.converged = best.max_residual <= tol
    return best


class _Anderson:
    """Safeguarded Anderson mixing, per sample (dim 0), on float64 copies of the iterates.

    Two safeguards keep it from doing much worse than plain iteration on maps that are
    contractive but only piecewise smooth (ReLU networks, whose kinks make the linear model of
    the history wrong):

    - an evaluated point is accepted when its residual is below ``growth`` times that of the
      sample's last accepted point, or when it came from a plain step; a rejected sample forgets
      its history and takes the plain step ``g`` of its last accepted point instead;
    - a sample whose best residual has not shrunk by ``progress`` over the last ``window``
      evaluations continues by plain iteration from its best point, for good.
    """

    growth = 2.0
    window = 20
    progress = 0.5

    def __init__(self, history: int, regularisation: float):
        self.history, self.regularisation = history, regularisation
        self.values: list[Tensor] = []  # g(y_k), (N, D)
        self.residuals: list[Tensor] = []  # r_k = g(y_k) - y_k, (N, D)
        self.valid: list[Tensor] = []  # (N,) bool: entry k belongs to the current history
        self.ref_g = self.ref_res = self.plain = torch.empty(0)  # set by the first step
        self.best_g = self.best_res = self.stalled = torch.empty(0)
        self.bests: list[Tensor] = []  # best residual after each of the last evaluations

    def step(self, gy: Tensor, r: Tensor, res: Tensor) -> Tensor:
        """The next point (flattened (N, D), float64) after evaluating ``gy = g(y)``."""
        n = gy.shape[0] if gy.dim() else 1
        gy, r, res = gy.reshape(n, -1).double(), r.reshape(n, -1).double(), res.to(gy.device)
        if not self.values:
            self.ref_g, self.ref_res, self.best_g, self.best_res = gy, res, gy, res
            self.plain = self.stalled = torch.zeros(n, dtype=torch.bool, device=gy.device)
        accept = self.plain | (res < self.growth * self.ref_res) | ~torch.isfinite(self.ref_res)
        better = res < self.best_res
        self.best_res = torch.where(better, res, self.best_res)
        self.best_g = torch.where(better[:, None], gy, self.best_g)
        self.bests = [*self.bests[-self.window :], self.best_res]
        stall = ~self.stalled & (len(self.bests) > self.window)
        stall &= self.best_res > self.progress * self.bests[0]
        self.valid = [v & accept for v in self.valid]  # a rejection restarts the history
        self.values.append(gy)
        self.residuals.append(r)
        self.valid.append(accept)
        del self.values[: -self.history - 1], self.residuals[: -self.history - 1]
        del self.valid[: -self.history - 1]
        self.ref_g = torch.where(accept[:, None], gy, self.ref_g)
        self.ref_res = torch.where(accept, res, self.ref_res)
        mixed, differences = self._mix()
        self.plain = ~accept | (differences == 0)
        nxt = torch.where(accept[:, None], mixed, self.ref_g)
        nxt = torch.where(stall[:, None], self.best_g, nxt)  # plain step from the best point
        nxt = torch.where(self.stalled[:, None], gy, nxt)  # plain iteration
        self.stalled = self.stalled | stall
        return nxt

    def _mix(self) -> tuple[Tensor, Tensor]:
        """Per sample ``g_k - dG c``, ``c`` the regularised least-squares fit of ``r_k`` by
        ``dR`` over the valid differences; and the number of those differences (N,)."""
        gk, rk = self.values[-1], self.residuals[-1]
        if len(self.values) == 1:
            return gk, torch.zeros(gk.shape[0], dtype=torch.long, device=gk.device)
        mask = torch.stack([a & b for a, b in itertools.pairwise(self.valid)], dim=1)  # (N, k)
        m = mask[:, None, :].to(gk.dtype)
        d_g = torch.stack([b - a for a, b in itertools.pairwise(self.values)], dim=2) * m
        d_r = torch.stack([b - a for a, b in itertools.pairwise(self.residuals)], dim=2) * m
        gram = d_r.mT @ d_r  # (N, k, k); rows and columns of invalid differences are 0
        diag = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
        lam = self.regularisation * diag + torch.finfo(gram.dtype).tiny
        eye = torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device)
        coef = torch.linalg.solve(gram + lam[:, None, None] * eye, d_r.mT @ rk[:, :, None])
        return gk - (d_g @ coef)[:, :, 0], mask.sum(dim=1)


def solve_forward(
    f: Callable[[Tensor], Tensor],
    base: Tensor,
    y0: Tensor,
    theta: float,
    settings: SolverSettings,
    stats: SolveStats | None = None,
) -> FixedPointResult:
    """``y = base + theta f(y)`` from ``y0`` (no autograd), recorded in ``stats``."""
    out = fixed_point(
        lambda y: base + theta * f(y),
        y0,
        settings.tol,
        settings.max_iter,
        settings.method,
        settings.history,
        settings.regularisation,
    )
    if stats is not None:
        stats.forward_calls += 1
        stats.forward_iterations += out.iterations
        stats.forward_max_iterations = max(stats.forward_max_iterations, out.iterations)
        stats.forward_failures += int(not out.converged)
        stats.forward_max_residual = max(stats.forward_max_residual, out.max_residual)
        stats.forward_residuals.append(out.max_residual)
    return out


def _gmres(
    matvec: Callable[[Tensor], Tensor], b: Tensor, tol: float, max_iter: int
) -> tuple[Tensor, int]:
    """Unrestarted GMRES for ``A v = b`` (flattened in float64 inside): (v, matvecs used).
    Stops when the 2-norm residual is below ``tol * |b|``."""
    shape, dtype = b.shape, b.dtype
    rhs = b.reshape(-1).double()
    beta = float(rhs.norm())
    if beta == 0:
        return torch.zeros_like(b), 0
    basis = [rhs / beta]
    hess = torch.zeros(max_iter + 1, max_iter, dtype=torch.float64, device=b.device)
    e1 = torch.zeros(max_iter + 1, dtype=torch.float64, device=b.device)
    e1[0] = beta
    coef = e1[:1]
    steps = 0
    for j in range(max_iter):
        w = matvec(basis[j].reshape(shape).to(dtype)).reshape(-1).double()
        steps += 1
        for i, q in enumerate(basis):  # modified Gram-Schmidt
            hess[i, j] = w @ q
            w = w - hess[i, j] * q
        hess[j + 1, j] = w.norm()
        h = hess[: j + 2, : j + 1]
        coef = torch.linalg.lstsq(h, e1[: j + 2, None]).solution[:, 0]
        if float((e1[: j + 2] - h @ coef).norm()) <= tol * beta or float(hess[j + 1, j]) < 1e-30:
            break
        basis.append(w / hess[j + 1, j])
    v = sum(c * q for c, q in zip(coef, basis, strict=False))
    return v.reshape(shape).to(dtype), steps


@dataclass
class AdjointResult:
    """Outcome of one backward solve (residual relative to ``max |g|``)."""

    v: Tensor
    residual: float
    iterations: int  # vector-Jacobian products
    fallback: bool  # the first method failed and GMRES ran
    converged: bool


def adjoint(
    vjp: Callable[[Tensor], Tensor], g: Tensor, theta: float, settings: SolverSettings
) -> AdjointResult:
    """Solve ``(I - theta J)^T v = g`` given ``vjp(u) = J^T u``: the fixed point
    ``v = g + theta J^T v`` from ``v = g`` by ``settings.method`` (picard: the Neumann series),
    stopped early when its residual grows by ``settings.divergence``; then, if it failed,
    GMRES, keeping the better of the two solutions."""
    scale = max(float(g.detach().abs().max()) if g.numel() else 0.0, 1e-300)
    tol = settings.backward_tol * scale
    first = fixed_point(
        lambda v: g + theta * vjp(v),
        g,
        tol,
        settings.backward_max_iter,
        settings.method,
        settings.history,
        settings.regularisation,
        settings.divergence,
    )
    v, res, iters = first.y, first.max_residual, first.iterations
    fallback = not first.converged
    if fallback:
        sol, steps = _gmres(
            lambda u: u - theta * vjp(u), g, settings.backward_tol, settings.backward_max_iter
        )
        iters += steps + 1
        sol_res = _max(sample_residual(g + theta * vjp(sol) - sol))
        if sol_res < res:
            v, res = sol, sol_res
    res /= scale
    return AdjointResult(v, res, iters, fallback, res <= settings.backward_tol)


def solve_adjoint(
    vjp: Callable[[Tensor], Tensor],
    g: Tensor,
    theta: float,
    settings: SolverSettings = DEFAULT_SETTINGS,
    stats: SolveStats | None = None,
) -> AdjointResult:
    """:func:`adjoint`, recorded in ``stats``."""
    out = adjoint(vjp, g, theta, settings)
    if stats is not None:
        stats.backward_calls += 1
        stats.backward_iterations += out.iterations
        stats.backward_max_iterations = max(stats.backward_max_iterations, out.iterations)
        stats.backward_fallbacks += int(out.fallback)
        stats.backward_failures += int(not out.converged)
        stats.backward_max_residual = max(stats.backward_max_residual, out.residual)
        stats.backward_residuals.append(out.residual)
    return out
