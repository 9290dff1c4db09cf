"""Two-layer non-overlapping convolutional ResNet teacher-student problem (Liu et al. 2019).

Input ``Z = [Z_1 .. Z_k]``, ``Z_j ~ N(0, I_p)`` i.i.d. (k non-overlapping patches of size p).

    teacher   y          = sum_j a*_j relu(Z_j^T v*),            v* = 1 + w*, |v*| = 1
    ResNet    f(Z; w, a) = sum_j a_j relu(Z_j^T (1 + w) / |1 + w|)
    CNN       f(Z; v, a) = sum_j a_j relu(Z_j^T v / |v|)      (Du et al. 2017)

where ``1 = (1, .., 1) / sqrt(p)`` is the unit average-pooling shortcut. Both students only
see the direction ``u`` of their first layer, so the population loss
``L = E (f - y)^2 / 2`` has the closed form (Du et al. 2017, thm 3.1)

    L = [(pi-1)|a|^2 + (1'a)^2 + (pi-1)|a*|^2 + (1'a*)^2
         - 2 (g(phi) - 1) a'a* - 2 (1'a)(1'a*)] / (4 pi),
    g(phi) = (pi - phi) cos(phi) + sin(phi),   phi = angle(u, v*),

with gradients

    dL/da = [((pi-1) I + 11') a - ((g-1) I + 11') a*] / (2 pi)
    dL/dv = -(a'a*) (pi - phi) / (2 pi |v|) (I - u u') v*.

The spurious local optimum is ``u = -v*``, ``a = ((pi-1) I + 11')^{-1} (11' - I) a*``.

Every function takes a leading trial dimension (float64 numpy arrays, ``v: (T, p)``,
``a: (T, k)``), so thousands of independent runs advance in one array operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("ssw", "plain", "cnn")  # ResNet with step-size warm-up, ResNet without, plain CNN
# Balls of initial a: the theorem's radius |1'a*|/sqrt(k), or a fixed radius calibrated to
# the paper's no-warm-up rate at k = 16 (a sensitivity analysis, not independent evidence).
BALLS = ("theory", "calibrated")


@dataclass(frozen=True)
class Teacher:
    """Teacher parameters (the global optimum)."""

    v: np.ndarray  # (p,) unit first-layer weight v* = 1 + w*
    a: np.ndarray  # (k,) output weights a*


def shortcut(p: int) -> np.ndarray:
    """The unit average-pooling shortcut direction ``(1, .., 1) / sqrt(p)``."""
    return np.full(p, 1.0 / np.sqrt(p))


def _zero_sum_direction(n: int) -> np.ndarray:
    """A fixed unit vector orthogonal to ``(1, .., 1)``: a sampled cosine, ``n >= 2``."""
    e = np.cos(2 * np.pi * np.arange(n) / n)
    e -= e.mean()
    return e / np.linalg.norm(e)


def make_teacher(k: int, p: int, angle: float, a_sum: float, a_norm: float) -> Teacher:
    """Deterministic teacher: ``v*`` at ``angle`` (radians) from the shortcut direction,
    ``a* = a_sum / k * 1 + b e`` with ``1'a* = a_sum`` and ``|a*| = a_norm`` (e a fixed
    zero-sum unit vector); needs ``k, p >= 2`` and ``a_norm >= |a_sum| / sqrt(k)``."""
    if k < 2 or p < 2:
        raise ValueError(f"k and p must be >= 2, got k={k}, p={p}")
    mean_part = a_sum**2 / k
    if a_norm**2 < mean_part:
        raise ValueError(f"a_norm={a_norm} < |a_sum|/sqrt(k)={np.sqrt(mean_part):.4g}")
    v = np.cos(angle) * shortcut(p) + np.sin(angle) * _zero_sum_direction(p)
    a = np.full(k, a_sum / k) + np.sqrt(a_norm**2 - mean_part) * _zero_sum_direction(k)
    return Teacher(v=v, a=a)


def theory_radius(teacher: Teacher) -> float:
    """Radius ``|1'a*| / sqrt(k)`` of the initialisation ball of theorem 2 (``1`` all ones)."""
    return float(abs(teacher.a.sum()) / np.sqrt(teacher.a.size))


def relu_kernel(phi: np.ndarray) -> np.ndarray:
    """``g(phi) = (pi - phi) cos phi + sin phi``: ``2 pi E[relu(z'u) relu(z'v)]`` for unit
    ``u, v`` at angle ``phi``."""
    return (np.pi - phi) * np.cos(phi) + np.sin(phi)


def angle(v: np.ndarray, teacher: Teacher) -> np.ndarray:
    """Angle between each row of ``v`` (T, p) and ``v*``: (T,)."""
    cos = (v @ teacher.v) / np.linalg.norm(v, axis=-1)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def population_loss(v: np.ndarray, a: np.ndarray, teacher: Teacher) -> np.ndarray:
    """Closed-form ``E (f - y)^2 / 2`` per trial: (T,). ``v`` need not be unit."""
    g = relu_kernel(angle(v, teacher))
    s, s_star = a.sum(-1), teacher.a.sum()
    quad = (np.pi - 1) * ((a * a).sum(-1) + teacher.a @ teacher.a) + s**2 + s_star**2
    return (quad - 2 * (g - 1) * (a @ teacher.a) - 2 * s * s_star) / (4 * np.pi)


def population_grad(
    v: np.ndarray, a: np.ndarray, teacher: Teacher
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form gradients ``(dL/dv (T, p), dL/da (T, k))``; ``dL/dw = dL/dv``."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / norm
    cos = np.clip(u @ teacher.v, -1.0, 1.0)
    phi = np.arccos(cos)
    g = relu_kernel(phi)
    s, s_star = a.sum(-1, keepdims=True), teacher.a.sum()
    grad_a = ((np.pi - 1) * a + s - (g - 1)[:, None] * teacher.a - s_star) / (2 * np.pi)
    scale = -(a @ teacher.a) * (np.pi - phi) / (2 * np.pi)
    grad_v = scale[:, None] * (teacher.v - cos[:, None] * u) / norm
    return grad_v, grad_a


def spurious_optimum(teacher: Teacher) -> tuple[np.ndarray, np.ndarray]:
    """The spurious local optimum ``(-v*, ((pi-1) I + 11')^{-1} (11' - I) a*)``."""
    k = teacher.a.size
    ones = np.ones((k, k))
    a_bar = np.linalg.solve((np.pi - 1) * np.eye(k) + ones, (ones - np.eye(k)) @ teacher.a)
    return -teacher.v, a_bar


@dataclass(frozen=True)
class GDConfig:
    """Gradient descent on the population loss (one method, one step-size schedule)."""

    method: str  # ssw | plain (ResNet, w0 = 0, normalised) | cnn (Du et al., weight norm.)
    eta: float = 0.1  # step size of a (all methods) and of w after the warm-up / without it
    eta_w_warmup: float = 1e-3  # step size of w during the warm-up (ssw only)
    warmup_steps: int = 1000  # warm-up iterations (ssw only)
    max_steps: int = 20000  # iteration budget; unfinished trials count as unconverged
    tol: float = 1e-4  # a trial stops when |u - v|^2 + |a - a_opt|^2 <= tol at an optimum

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    def eta_w(self, step: int) -> float:
        """Step size of the first layer at iteration ``step`` (0-based)."""
        warm = self.method == "ssw" and step < self.warmup_steps
        return self.eta_w_warmup if warm else self.eta


def initial_points(
    method: str, teacher: Teacher, trials: int, a0_radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(v0 (T, p), a0 (T, k))``: ``a0`` uniform in the ball ``B(0, a0_radius)``;
    ResNet: ``w0 = 0`` (``v0`` = shortcut); CNN: ``v0`` uniform on the unit sphere."""
    p, k = teacher.v.size, teacher.a.size
    # a0 is drawn first, so the three methods start from the same a0 under the same seed.
    direction = rng.standard_normal((trials, k))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    a0 = a0_radius * rng.uniform(size=(trials, 1)) ** (1.0 / k) * direction
    if method == "cnn":
        v0 = rng.standard_normal((trials, p))
        v0 /= np.linalg.norm(v0, axis=-1, keepdims=True)
    else:
        v0 = np.tile(shortcut(p), (trials, 1))
    return v0, a0


def _distance2(v: np.ndarray, a: np.ndarray, v_opt: np.ndarray, a_opt: np.ndarray) -> np.ndarray:
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return ((u - v_opt) ** 2).sum(-1) + ((a - a_opt) ** 2).sum(-1)


def gradient_descent(
    cfg: GDConfig,
    teacher: Teacher,
    v0: np.ndarray,
    a0: np.ndarray,
    record_every: int = 0,
) -> dict[str, np.ndarray]:
    """Run population GD on every trial until it reaches an optimum or ``max_steps``.

    ResNet (ssw, plain): ``w <- w - eta_w dL/dw``, then ``1 + w`` is rescaled to unit norm
    (the paper's normalisation); CNN: Du et al.'s GD with weight normalisation (no rescaling).
    ``a <- a - eta dL/da`` at the same point. A trial is frozen once within ``tol`` of the
    global or the spurious optimum, so each trial is independent of the others.

    Returns ``v``, ``a`` (final), ``steps`` (T,), ``outcome`` (T,: 1 global, -1 spurious,
    0 neither) and, when ``record_every > 0``, ``path_step`` (S,) and ``path_<q>`` (S, T)
    for the quantities of :func:`path_quantities`, recorded every ``record_every`` steps
    and at the last step.
    """
    v, a = v0.astype(np.float64, copy=True), a0.astype(np.float64, copy=True)
    v_bad, a_bad = spurious_optimum(teacher)
    steps = np.zeros(len(v), dtype=np.int64)
    outcome = np.zeros(len(v), dtype=np.int64)
    path: dict[str, list] = {}
    for step in range(cfg.max_steps + 1):
        live = outcome == 0
        live &= ~_settle(v, a, teacher, (v_bad, a_bad), cfg.tol, outcome, live)
        last = step == cfg.max_steps or not live.any()
        if record_every and (step % record_every == 0 or last):  # the end point always
            path.setdefault("step", []).append(step)
            for name, value in path_quantities(v, a, teacher).items():
                path.setdefault(name, []).append(value)
        if last:
            break
        grad_v, grad_a = population_grad(v[live], a[live], teacher)
        new_v = v[live] - cfg.eta_w(step) * grad_v
        if cfg.method != "cnn":  # the paper's normalisation of 1 + w
            new_v /= np.linalg.norm(new_v, axis=-1, keepdims=True)
        v[live] = new_v
        a[live] -= cfg.eta * grad_a
        steps[live] += 1
    out = {"v": v, "a": a, "steps": steps, "outcome": outcome}
    out.update({f"path_{name}": np.asarray(values) for name, values in path.items()})
    return out


def _settle(v, a, teacher, spurious, tol, outcome, live) -> np.ndarray:
    """Mark live trials within ``tol`` of an optimum in ``outcome``; return the mask."""
    at_global = live & (_distance2(v, a, teacher.v, teacher.a) <= tol)
    at_spurious = live & ~at_global & (_distance2(v, a, *spurious) <= tol)
    outcome[at_global], outcome[at_spurious] = 1, -1
    return at_global | at_spurious


def path_quantities(v: np.ndarray, a: np.ndarray, teacher: Teacher) -> dict[str, np.ndarray]:
    """Per trial (T,): ``phi`` (angle to v*), ``w_err`` = |u - v*| (= |w - w*| for the
    ResNet), ``a_err`` = |a - a*|, ``a_bar_err`` = |a - a_bar|, ``a_dot`` = a'a*, ``loss``."""
    _, a_bar = spurious_optimum(teacher)
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return {
        "phi": angle(v, teacher),
        "w_err": np.linalg.norm(u - teacher.v, axis=-1),
        "a_err": np.linalg.norm(a - teacher.a, axis=-1),
        "a_bar_err": np.linalg.norm(a - a_bar, axis=-1),
        "a_dot": a @ teacher.a,
        "loss": population_loss(v, a, teacher),
    }
