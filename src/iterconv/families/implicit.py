"""Family ``implicit``: the examples of Reshniak & Webster 2019, docs/implicit.md.

Two synthetic examples with the fully connected :class:`~iterconv.models.implicit.ImplicitResNet`
(``dz/dt = relu(W(t) z + b(t))`` discretised by the theta-method, theta = 0 the explicit ResNet):

- ``function`` (Example 1): fit ``sin(2 pi x) exp(-x^2 / 2)`` on [-1, 1] from equally spaced
  points, MSE loss plus the convergence-rate regulariser; one job per (theta, depth, seed).
  Records loss curves, solver iteration counts, gradient magnitudes, the layers' amplification
  factors, the fitted function and hidden-state trajectories.
- ``spirals`` (Example 2): two-spirals classification (every other point held out), trained
  with the perturbation-stream regulariser at an input-noise level; one job per (theta, noise,
  depth, seed). Records accuracy under Gaussian input noise and decision regions.

The spec (``families.implicit`` of a preset) is :class:`ImplicitConfig`: one optional mapping
per example, :class:`FunctionSpec` and :class:`SpiralsSpec`; an example left out is not run,
``{}`` runs it with the defaults. A job is a :class:`FunctionJob` or a :class:`SpiralsJob` (keys,
defaults and allowed values: docs/implicit.md).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from iterconv.families.config import (
    SEED_MAX,
    Invalid,
    parse,
    parse_tagged,
    required,
    setting,
    shared,
    to_dict,
)
from iterconv.figures import implicit as figs
from iterconv.io import write_json
from iterconv.models.fixed_point import METHODS, float64_needed
from iterconv.models.implicit import ImplicitResNet, SolverSettings, perturbation_penalty
from iterconv.report.engine import (
    MIN_RUNS,
    Above,
    Below,
    ClaimResult,
    difference_check,
    level_check,
    rounded,
)

NAME = "implicit"
TITLE = "Implicit residual networks (Reshniak & Webster 2019)"


@dataclass(frozen=True, kw_only=True)
class Common:
    """Settings of both examples, with the same defaults: the learning-rate schedule, the
    fixed-point solver and the vector field."""

    lr: float = setting(0.01, "initial learning rate", exclusive_minimum=0)
    lr_decay: float = setting(
        0.5, "learning-rate factor every decay_every epochs", exclusive_minimum=0, maximum=1
    )
    tol: float = setting(1e-5, "forward fixed-point tolerance (absolute)", exclusive_minimum=0)
    max_iter: int = setting(
        1000, "forward iteration limit per layer (also caps the regulariser's steps)", minimum=1
    )
    backward_tol: float = setting(
        1e-6, "relative tolerance of the backward linear solve", exclusive_minimum=0
    )
    backward_max_iter: int = setting(
        200, "backward products (then GMRES steps) per layer", minimum=1
    )
    method: str = setting(
        "anderson",
        "forward and backward solver: anderson, or picard (plain iteration, Neumann series)",
        choices=METHODS,
    )
    history: int = setting(5, "Anderson history m", minimum=1)
    antisymmetric: bool = setting(False, "W - W^T in the vector field (the authors' early scripts)")


@dataclass(frozen=True, kw_only=True)
class FunctionSettings(Common):
    """Example 1's settings that every job of a spec shares."""

    width: int = setting(8, "hidden-state dimension (the input padded with zeros)", minimum=1)
    horizon: float = setting(
        2.0, "T: total time of the ODE the network discretises", exclusive_minimum=0
    )
    n_train: int = setting(20, "equally spaced training points on [-1, 1]", minimum=2)
    n_val: int = setting(200, "uniform random validation points on [-1, 1]", minimum=1)
    epochs: int = setting(1000, "full-batch Adam steps", minimum=1)
    decay_every: int = setting(250, "epochs between learning-rate decays", minimum=1)
    rate: float = setting(
        0.5, "alpha of the convergence-rate regulariser", exclusive_minimum=0, maximum=1
    )
    rate_weight: float = setting(0.01, "its weight in the loss (0: off)", minimum=0)
    rate_iterations: int = setting(
        0, "plain steps it looks at; 0: the whole solve (the paper)", minimum=0
    )
    log_every: int = setting(10, "epochs between recorded curve points", minimum=1)


@dataclass(frozen=True, kw_only=True)
class FunctionSpec(FunctionSettings):
    """``families.implicit.function``: Example 1, one job per (theta, depth, seed)."""

    thetas: tuple[float, ...] = setting(
        (0.0, 0.25, 0.5, 0.75, 1.0),
        "theta of the layers (0: the explicit ResNet)",
        minimum=0,
        maximum=1,
    )
    depths: tuple[int, ...] = setting((2, 8), "layers L (step h = horizon / L)", minimum=1)
    seeds: tuple[int, ...] = setting((0,), "initialisation seeds", minimum=0, maximum=SEED_MAX)


@dataclass(frozen=True, kw_only=True)
class FunctionJob(FunctionSettings):
    """One job of Example 1."""

    example: str = required("function: Example 1", choices=("function",))
    theta: float = required("theta of the layers", minimum=0, maximum=1)
    depth: int = required("layers L", minimum=1)
    seed: int = required("initialisation seed", minimum=0, maximum=SEED_MAX)


@dataclass(frozen=True, kw_only=True)
class SpiralsSettings(Common):
    """Example 2's settings that every job of a spec shares."""

    width: int = setting(
        4, "hidden-state dimension, at least the input's 2 (padded with zeros)", minimum=2
    )
    horizon: float = setting(4.0, "T: total time of the ODE", exclusive_minimum=0)
    n_points: int = setting(256, "points on the two spirals together (half held out)", minimum=8)
    turns: float = setting(1.5, "turns of each spiral", exclusive_minimum=0)
    epochs: int = setting(600, "full-batch Adam steps", minimum=1)
    decay_every: int = setting(200, "epochs between learning-rate decays", minimum=1)
    streams: int = setting(1, "perturbation streams per step (noise > 0)", minimum=1)
    damping: float = setting(1.0, "beta of the perturbation regulariser", exclusive_minimum=0)
    perturbation_weight: float = setting(1.0, "its weight in the loss", minimum=0)
    eval_noise: tuple[float, ...] = setting(
        (0.0, 0.05, 0.1, 0.2, 0.3), "input-noise sigmas of the evaluation", minimum=0
    )
    eval_draws: int = setting(10, "noise draws per evaluation level", minimum=1)
    grid: int = setting(41, "decision-region grid points per axis", minimum=2)
    log_every: int = setting(20, "epochs between recorded curve points", minimum=1)


@dataclass(frozen=True, kw_only=True)
class SpiralsSpec(SpiralsSettings):
    """``families.implicit.spirals``: Example 2, one job per (theta, noise, depth, seed)."""

    thetas: tuple[float, ...] = setting(
        (0.0, 0.5), "theta of the layers (0: the explicit ResNet)", minimum=0, maximum=1
    )
    noise: tuple[float, ...] = setting(
        (0.0, 0.05, 0.1, 0.2), "training input-noise sigmas (0: no perturbation)", minimum=0
    )
    depths: tuple[int, ...] = setting((100,), "layers L", minimum=1)
    seeds: tuple[int, ...] = setting(
        (0,), "initialisation and noise seeds", minimum=0, maximum=SEED_MAX
    )


@dataclass(frozen=True, kw_only=True)
class SpiralsJob(SpiralsSettings):
    """One job of Example 2."""

    example: str = required("spirals: Example 2", choices=("spirals",))
    theta: float = required("theta of the layers", minimum=0, maximum=1)
    noise: float = required("training input-noise sigma", minimum=0)
    depth: int = required("layers L", minimum=1)
    seed: int = required("initialisation and noise seed", minimum=0, maximum=SEED_MAX)


@dataclass(frozen=True, kw_only=True)
class ImplicitConfig:
    """``families.implicit`` of a preset: the examples to run."""

    # Frozen configurations or None: immutable defaults.
    function: FunctionSpec | None = setting(  # noqa: RUF009
        None, "Example 1, the 1-D function (left out: not run; {}: its defaults)"
    )
    spirals: SpiralsSpec | None = setting(  # noqa: RUF009
        None, "Example 2, two spirals (left out: not run; {}: its defaults)"
    )

    def __post_init__(self) -> None:
        if self.function is None and self.spirals is None:
            raise Invalid("", "name at least one example: function, spirals")


CONFIG = ImplicitConfig  # the family's section of a preset
_JOBS = {"function": FunctionJob, "spirals": SpiralsJob}


# --- expand --------------------------------------------------------------------------------


def _job_id(example: str, cfg: dict[str, Any]) -> str:
    noise = f"_n{cfg['noise']:g}" if example == "spirals" else ""
    prefix = "fn" if example == "function" else "sp"
    return f"{prefix}_t{cfg['theta']:g}{noise}_d{cfg['depth']}_s{cfg['seed']}"


def jobs(config: ImplicitConfig) -> dict[str, FunctionJob | SpiralsJob]:
    """The spec's jobs by id: ``fn_t0.5_d12_s0``, ``sp_t0.5_n0.1_d100_s0``."""
    out: list[FunctionJob | SpiralsJob] = []
    if (fn := config.function) is not None:
        settings = shared(fn, FunctionSettings)
        out += [
            FunctionJob(example="function", theta=theta, depth=depth, seed=seed, **settings)
            for theta, depth, seed in itertools.product(fn.thetas, fn.depths, fn.seeds)
        ]
    if (sp := config.spirals) is not None:
        settings = shared(sp, SpiralsSettings)
        out += [
            SpiralsJob(
                example="spirals", theta=theta, noise=noise, depth=depth, seed=seed, **settings
            )
            for theta, noise, depth, seed in itertools.product(
                sp.thetas, sp.noise, sp.depths, sp.seeds
            )
        ]
    return {_job_id(job.example, to_dict(job)): job for job in out}


def expand(spec: Mapping[str, Any], where: str = f"families.{NAME}") -> dict[str, dict]:
    """``families.implicit`` -> {job id: configuration as JSON}; raises ParamsError naming the
    key from ``where``."""
    return {
        job_id: to_dict(job) for job_id, job in jobs(parse(ImplicitConfig, spec, where)).items()
    }


def parse_job(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One job's configuration (``family-run``), checked and normalised."""
    return to_dict(parse_tagged(_JOBS, "example", config, where))


def datasets(config: Mapping[str, Any]) -> list[str]:
    """Both examples generate their data from the config: no prepared dataset."""
    return []


# --- data ----------------------------------------------------------------------------------


def target(x: Tensor) -> Tensor:
    """The function of Example 1 (reconstructed, docs/implicit.md)."""
    return torch.sin(2 * math.pi * x) * torch.exp(-(x**2) / 2)


def two_spirals(n_points: int, turns: float) -> tuple[Tensor, Tensor]:
    """``n_points`` points on two interleaved spirals (radius 0.1 .. 1), alternating labels
    along the arc: (x (n, 2), label (n,) int64). Point i of each spiral at angle
    ``2 pi turns t_i``, ``t_i`` equally spaced; spiral 1 is spiral 0 rotated by pi."""
    per = n_points // 2
    t = torch.linspace(0, 1, per, dtype=torch.float64)
    angle, radius = 2 * math.pi * turns * t, 0.1 + 0.9 * t
    arm = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    x = torch.stack([arm, -arm], dim=1).reshape(-1, 2)  # interleave: 0, 1, 0, 1, ...
    y = torch.arange(2 * per) % 2
    return x.float(), y


# --- run -----------------------------------------------------------------------------------


def _settings(cfg: dict) -> SolverSettings:
    return SolverSettings(
        cfg["tol"],
        cfg["max_iter"],
        cfg["backward_tol"],
        cfg["backward_max_iter"],
        method=cfg["method"],
        history=cfg["history"],
    )


def _model(cfg: dict, d_in: int, d_out: int) -> ImplicitResNet:
    """The network of a job, in float64 when a tolerance is below float32's resolution."""
    settings = _settings(cfg)
    model = ImplicitResNet(
        d_in,
        d_out,
        cfg["width"],
        cfg["depth"],
        cfg["theta"],
        cfg["horizon"],
        settings,
        cfg["antisymmetric"],
    )
    return model.to(torch.float64 if float64_needed(settings) else torch.float32)


def _lr(cfg: dict, epoch: int) -> float:
    return cfg["lr"] * cfg["lr_decay"] ** (epoch // cfg["decay_every"])


def _grad_norm(model: ImplicitResNet) -> float:
    """Mean over layers of |dL/dW_l| (Frobenius), the paper's gradient magnitude (fig. 6)."""
    norms = [float(layer.linear.weight.grad.norm()) for layer in model.layers]
    return float(np.mean(norms))


def _solver_row(model: ImplicitResNet) -> dict[str, float]:
    """This step's solves: mean iterations, failure fractions, largest final residuals."""
    s = model.stats
    return {
        "fwd_iters": s.mean_forward_iterations,
        "bwd_iters": s.mean_backward_iterations,
        "fwd_fail": s.forward_failure_fraction,
        "bwd_fail": s.backward_failure_fraction,
        "fwd_residual": s.forward_max_residual if s.forward_calls else math.nan,
        "bwd_residual": s.backward_max_residual if s.backward_calls else math.nan,
    }


class _Totals:
    """Solver counters summed over every training step (the curves sample only some)."""

    KEYS = (
        "forward_calls",
        "forward_iterations",
        "forward_failures",
        "backward_calls",
        "backward_iterations",
        "backward_failures",
    )

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0)
        self.fwd_residual, self.fwd_max_iters, self.bwd_max_iters = 0.0, 0, 0

    def add(self, model: ImplicitResNet) -> None:
        for k in self.KEYS:
            self.sums[k] += getattr(model.stats, k)
        self.fwd_residual = max(self.fwd_residual, model.stats.forward_max_residual)
        self.fwd_max_iters = max(self.fwd_max_iters, model.stats.forward_max_iterations)
        self.bwd_max_iters = max(self.bwd_max_iters, model.stats.backward_max_iterations)

    def summary(self) -> dict[str, float]:
        t = self.sums

        def ratio(a: str, b: str) -> float:
            return t[a] / t[b] if t[b] else math.nan

        return {
            "fwd_iters": ratio("forward_iterations", "forward_calls"),
            "bwd_iters": ratio("backward_iterations", "backward_calls"),
            "fwd_fail": ratio("forward_failures", "forward_calls"),
            "bwd_fail": ratio("backward_failures", "backward_calls"),
            "fwd_residual": self.fwd_residual if t["forward_calls"] else math.nan,
            "fwd_max_iters": self.fwd_max_iters if t["forward_calls"] else math.nan,
            "bwd_max_iters": self.bwd_max_iters if t["backward_calls"] else math.nan,
        }


def _unsolved(model: ImplicitResNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """(states, mask of the samples some layer of which did not reach the tolerance)."""
    states, residual = model.solve(x)
    return states, ~model.converged(residual)


def _run_function(cfg: dict, log) -> dict[str, Any]:
    torch.manual_seed(cfg["seed"])
    x = torch.linspace(-1, 1, cfg["n_train"])[:, None]
    xv = torch.rand(cfg["n_val"], 1) * 2 - 1
    model = _model(cfg, 1, 1)
    dtype = model.head.weight.dtype
    x, xv = x.to(dtype), xv.to(dtype)
    y, yv = target(x), target(xv)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    curve, totals = [], _Totals()
    iterations = cfg["rate_iterations"] or None  # 0: the whole solve
    for epoch in range(cfg["epochs"] + 1):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, epoch)
        model.stats.reset()
        states = model.trajectory(x)
        mse = torch.mean((model.head(states[-1]) - y) ** 2)
        loss = mse
        if cfg["rate_weight"] > 0 and cfg["theta"] > 0:
            reg = model.convergence_penalty(states[:-1], cfg["rate"], iterations)
            loss = loss + cfg["rate_weight"] * reg
        opt.zero_grad()
        loss.backward()
        totals.add(model)
        if epoch % cfg["log_every"] == 0 or epoch == cfg["epochs"]:
            solver = _solver_row(model)  # this step's forward and backward solves
            with torch.no_grad():
                val = float(torch.mean((model(xv) - yv) ** 2))
            row = {"epoch": epoch, "train_loss": float(mse.detach()), "val_loss": val}
            curve.append({**row, "grad_norm": _grad_norm(model), **solver})
            if epoch % (cfg["log_every"] * 10) == 0:
                log(f"epoch {epoch}: train {float(mse.detach()):.3g} val {val:.3g}")
        if epoch < cfg["epochs"]:  # the last pass only measures
            opt.step()
    with torch.no_grad():
        # the final network: which training and validation points some layer did not solve
        states, bad = _unsolved(model, x)
        bad_val = _unsolved(model, xv)[1]
        amp = model.amplification(states).amax(dim=0)[~bad]  # fixed points only
        xs = torch.linspace(-1, 1, 101, dtype=dtype)[:, None]
        fit = model(xs)[:, 0]
        starts = torch.linspace(-1, 1, 11, dtype=dtype)[:, None]
        traj = torch.stack(model.trajectory(starts), dim=1)  # (11, L + 1, width)
    final = curve[-1]
    return {
        "train_loss": final["train_loss"],
        "val_loss": final["val_loss"],
        "amplification": float(amp.mean()) if len(amp) else math.nan,
        "amplification_max": float(amp.max()) if len(amp) else math.nan,
        "amp_points": len(amp) / len(x),
        "eval_fail": float(torch.cat([bad, bad_val]).double().mean()),
        **totals.summary(),
        "grad_norm": float(np.mean([r["grad_norm"] for r in curve])),
        "float64": dtype == torch.float64,
        "curve": curve,
        "fit": {"x": xs[:, 0].tolist(), "y_true": target(xs)[:, 0].tolist(), "y": fit.tolist()},
        "trajectories": traj[:, :, :2].tolist(),
    }


def _accuracy(model: ImplicitResNet, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """(accuracy, mask of the points some layer did not solve)."""
    states, bad = _unsolved(model, x)
    return float((model.head(states[-1]).argmax(dim=1) == y).float().mean()), bad


def _run_spirals(cfg: dict, log) -> dict[str, Any]:
    points, labels = two_spirals(cfg["n_points"], cfg["turns"])
    x, y, xv, yv = points[0::4], labels[0::4], points[2::4], labels[2::4]
    x, y = torch.cat([x, points[1::4]]), torch.cat([y, labels[1::4]])
    xv, yv = torch.cat([xv, points[3::4]]), torch.cat([yv, labels[3::4]])
    torch.manual_seed(cfg["seed"])
    model = _model(cfg, 2, 2)
    dtype = model.head.weight.dtype
    points, x, xv = points.to(dtype), x.to(dtype), xv.to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    curve, totals = [], _Totals()
    for epoch in range(cfg["epochs"]):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, epoch)
        model.stats.reset()
        states = model.trajectory(x)
        ce = torch.nn.functional.cross_entropy(model.head(states[-1]), y)
        loss = ce
        if cfg["noise"] > 0:  # fresh perturbations every step (eq. 10)
            streams = [
                model.trajectory(x + cfg["noise"] * torch.randn_like(x))
                for _ in range(cfg["streams"])
            ]
            loss = loss + cfg["perturbation_weight"] * perturbation_penalty(
                states, streams, cfg["damping"]
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.add(model)
        if epoch % cfg["log_every"] == 0:
            curve.append({"epoch": epoch, "train_loss": float(ce.detach()), **_solver_row(model)})
        if epoch % (cfg["log_every"] * 10) == 0:
            log(f"epoch {epoch}: loss {float(ce.detach()):.3g}")
    gen = torch.Generator().manual_seed(10_000 + cfg["seed"])  # evaluation noise, fixed
    with torch.no_grad():
        robust = []
        for sigma in cfg["eval_noise"]:
            draws = 1 if sigma == 0 else cfg["eval_draws"]
            acc, bad = [], []
            for _ in range(draws):
                noise = sigma * torch.randn(xv.shape, generator=gen).to(dtype)
                a, b = _accuracy(model, xv + noise, yv)
                acc.append(a)
                bad.append(b)
            robust.append(
                {
                    "eval_noise": sigma,
                    "val_acc": float(np.mean(acc)),
                    "unsolved": float(torch.cat(bad).double().mean()),
                }
            )
        ticks = torch.linspace(-1.3, 1.3, cfg["grid"], dtype=dtype)
        gx, gy = torch.meshgrid(ticks, ticks, indexing="xy")
        grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
        p1 = torch.softmax(model(grid), dim=1)[:, 1]
        (train_acc, bad), (val_acc, bad_val) = _accuracy(model, x, y), _accuracy(model, xv, yv)
    return {
        "train_acc": train_acc,
        "val_acc": val_acc,
        "eval_fail": float(torch.cat([bad, bad_val]).double().mean()),
        **totals.summary(),
        "float64": dtype == torch.float64,
        "curve": curve,
        "robustness": robust,
        "regions": {"x": grid[:, 0].tolist(), "y": grid[:, 1].tolist(), "p1": p1.tolist()},
        "data": {
            "x": points[:, 0].tolist(),
            "y": points[:, 1].tolist(),
            "label": labels.tolist(),
        },
    }


def run(config: dict, out: Path, *, data: dict[str, Path], device: str = "cpu") -> None:
    """One job (CPU: the networks are tiny, ``device`` is accepted and ignored); writes
    ``out/result.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tag = _job_id(config["example"], config)

    def log(msg: str) -> None:
        print(f"[{tag}] {msg}", flush=True)

    start = time.process_time()
    runner = _run_function if config["example"] == "function" else _run_spirals
    result = runner(config, log)
    seconds = time.process_time() - start
    log(f"done in {seconds:.1f} s CPU")
    write_json(out / "result.json", {"config": config, "cpu_seconds": seconds, **result})


# --- collect -------------------------------------------------------------------------------

_KEYS = {"function": ["theta", "depth", "seed"], "spirals": ["theta", "noise", "depth", "seed"]}


def collect(results: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Tables (long format): ``fn_runs``, ``fn_curves``, ``fn_fits``, ``fn_trajectories``,
    ``sp_runs``, ``sp_curves``, ``sp_robustness``, ``sp_regions``, ``sp_data``; an example
    without results gives empty tables."""
    rows: dict[str, list[dict]] = {name: [] for name in figs.TABLES}
    for job_id, res in sorted(results.items()):
        cfg = res["config"]
        key = {"job_id": job_id, **{k: cfg[k] for k in _KEYS[cfg["example"]]}}
        scalars = {k: v for k, v in res.items() if isinstance(v, int | float)}
        if cfg["example"] == "function":
            rows["fn_runs"].append({**key, **scalars})
            rows["fn_curves"] += [{**key, **r} for r in res["curve"]]
            fit = res["fit"]
            rows["fn_fits"] += [
                {**key, "x": a, "y_true": b, "y": c}
                for a, b, c in zip(fit["x"], fit["y_true"], fit["y"], strict=True)
            ]
            rows["fn_trajectories"] += [
                {**key, "start": i, "layer": layer, "z0": z[0], "z1": z[1] if len(z) > 1 else 0.0}
                for i, path in enumerate(res["trajectories"])
                for layer, z in enumerate(path)
            ]
        else:
            rows["sp_runs"].append({**key, **scalars})
            rows["sp_curves"] += [{**key, **r} for r in res["curve"]]
            rows["sp_robustness"] += [{**key, **r} for r in res["robustness"]]
            reg = res["regions"]
            rows["sp_regions"] += [
                {**key, "x": a, "y": b, "p1": c}
                for a, b, c in zip(reg["x"], reg["y"], reg["p1"], strict=True)
            ]
            if not rows["sp_data"]:
                d = res["data"]
                rows["sp_data"] = [
                    {"x": a, "y": b, "label": c, "split": "train" if i % 4 < 2 else "val"}
                    for i, (a, b, c) in enumerate(zip(d["x"], d["y"], d["label"], strict=True))
                ]
    return {name: pd.DataFrame(r) for name, r in rows.items()}


FIGURES = figs.FIGURES


def summary(tables: dict[str, pd.DataFrame]) -> str:
    """The claims report's section header: none (each claim reports its own measures)."""
    return ""


# --- claims --------------------------------------------------------------------------------

FAILURE_TOL = 0.01  # mean fraction of failed solves below which the solves count as converging
ACCURACY_LOSS = 0.02  # accuracy the noise-trained networks may lose and still count as accurate


def _claim(id_: str, claim: str, ref: str, note: str) -> ClaimResult:
    return ClaimResult(
        id=id_, claim=claim, paper_reference=f"Reshniak & Webster 2019, {ref}", note=note
    )


def _depth_groups(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    depths = sorted(runs["depth"].unique()) if len(runs) else []
    if len(depths) < 1:
        return None
    return runs[runs["depth"] == depths[0]], runs[runs["depth"] == depths[-1]]


def _explicit(g: pd.DataFrame) -> pd.Series:
    return g["theta"] == 0


def _implicit(g: pd.DataFrame) -> pd.Series:
    return g["theta"] > 0


def _failure_claim(runs: pd.DataFrame, rng: np.random.Generator) -> ClaimResult:
    base = _claim(
        "implicit_solves_converge",
        "With the convergence-rate regulariser, the fixed-point and Neumann iterations of the "
        "implicit layers converge (to tolerance, within the iteration limit).",
        "sec. 2.1 and fig. 5",
        "Per job, the largest of three failure fractions: forward and backward solves over all "
        "training steps, and the training and validation points of the final network that some "
        "layer did not solve; supported when the 95% interval of the mean lies below "
        f"{FAILURE_TOL:g}.",
    )
    imp = runs[runs["theta"] > 0] if len(runs) else runs
    if len(imp) < MIN_RUNS or "fwd_fail" not in imp:
        base.note += f" Needs at least {MIN_RUNS} implicit jobs."
        return base
    kinds = [k for k in ("fwd_fail", "bwd_fail", "eval_fail") if k in imp]
    base.measured = {
        **{f"mean_{k}": rounded(float(imp[k].mean())) for k in kinds},
        "mean_forward_iterations": rounded(float(imp["fwd_iters"].mean())),
        "mean_backward_iterations": rounded(float(imp["bwd_iters"].mean())),
    }
    for key, name in (("fwd_max_iters", "forward"), ("bwd_max_iters", "backward")):
        if key in imp:
            base.measured[f"max_{name}_iterations"] = rounded(float(imp[key].max()))
    failure = imp[kinds].to_numpy(float).max(axis=1)
    return level_check(
        base,
        imp.assign(failure=failure),
        "failure",
        Below(FAILURE_TOL),
        rng,
        label="mean_failure_fraction",
    )


def _solved(df: pd.DataFrame, value: str, flag: str) -> tuple[pd.DataFrame, int]:
    """``value`` set to NaN (left out of the comparison) in the rows whose ``flag`` (fraction
    of points some layer did not solve) is above 0; and how many rows those are."""
    if flag not in df or not len(df):
        return df, 0
    bad = df[flag].fillna(0) > 0
    return df.assign(**{value: df[value].where(~bad)}), int(bad.sum())


def _with_failures(
    claim: ClaimResult, df: pd.DataFrame, flag: str, excluded: int, what: str
) -> ClaimResult:
    """Record the unsolved fraction of the compared rows and the rows left out."""
    claim.n = {**claim.n, "runs_excluded_unsolved": excluded}
    if flag in df and len(df):
        claim.measured = {
            **claim.measured,
            f"mean_{flag}": rounded(float(df[flag].fillna(0).mean())),
        }
    claim.note += f" {what}"
    return claim


def claims(tables: dict[str, pd.DataFrame], rng: np.random.Generator) -> list[ClaimResult]:
    """The paper's claims on Examples 1 and 2 (differences stratified by seed-free groups;
    NO_DATA when the preset did not run the groups a claim needs)."""
    fn = tables.get("fn_runs", pd.DataFrame())
    sp = tables.get("sp_runs", pd.DataFrame())
    rob = tables.get("sp_robustness", pd.DataFrame())
    out = []
    groups = _depth_groups(fn) if len(fn) else None
    shallow, deep = groups if groups else (fn, fn)
    specs = [
        (
            "explicit_unstable_shallow",
            "On a coarse time grid (few layers) the trained explicit ResNet is unstable "
            "(its layers amplify perturbations more) while implicit networks are stable.",
            "Example 1, fig. 7",
            shallow,
            "amplification",
            _explicit,
            _implicit,
            "Fewest layers: per job the mean over training points of the largest spectral "
            "radius of a layer Jacobian dz_{l+1}/dz_l; explicit minus implicit (theta > 0).",
        ),
        (
            "explicit_best_train_shallow",
            "With few layers the explicit ResNet reaches the lowest training loss.",
            "Example 1, fig. 4 (left)",
            shallow,
            "train_loss",
            _implicit,
            _explicit,
            "Fewest layers: mean final training MSE of implicit (theta > 0) minus explicit.",
        ),
        (
            "explicit_generalises_worse_shallow",
            "With few layers the explicit ResNet generalises worse than implicit networks "
            "(larger validation-minus-training loss gap).",
            "Example 1, fig. 4 (left)",
            shallow.assign(gap=shallow["val_loss"] - shallow["train_loss"])
            if len(shallow)
            else shallow,
            "gap",
            _explicit,
            _implicit,
            "Fewest layers: the paper says explicit is second worst in validation loss while "
            "best in training loss; tested as the generalisation gap, explicit minus implicit.",
        ),
        (
            "explicit_worse_deep",
            "With many layers implicit networks reach a lower validation loss than the explicit "
            "ResNet, which gets stuck.",
            "Example 1, figs. 4 (right) and 6",
            deep,
            "val_loss",
            _explicit,
            _implicit,
            "Most layers: final validation MSE, explicit minus implicit (theta > 0).",
        ),
    ]
    for id_, text, ref, df, value, high, low, note in specs:
        base = _claim(f"fn_{id_}", text, ref, note)
        if groups is None or len(df) == 0 or value not in df:
            base.note += " Needs Example 1 jobs."
            out.append(base)
            continue
        if value == "amplification":  # unsolved points are left out inside each job
            flag, excluded = "amp_unsolved", int(df[value].isna().sum())
            if "amp_points" in df:
                df = df.assign(amp_unsolved=1 - df["amp_points"])
            what = "Training points some layer did not solve are left out of each job's mean."
        else:
            flag = "eval_fail"
            df, excluded = _solved(df, value, flag)
            what = "Jobs whose final network left some point unsolved are left out."
        result = difference_check(base, df, value, high, low, [], rng)
        out.append(_with_failures(result, df, flag, excluded, what))
    if groups is not None and shallow["depth"].iloc[0] == deep["depth"].iloc[0]:
        for c in out:
            c.note += " Only one depth was run: fewest = most layers."
    out.append(_failure_claim(fn, rng))
    out += _spiral_claims(sp, rob, rng)
    return out


def _spiral_claims(
    sp: pd.DataFrame, rob: pd.DataFrame, rng: np.random.Generator
) -> list[ClaimResult]:
    trained = sorted(n for n in sp["noise"].unique() if n > 0) if len(sp) else []
    top = max(rob["eval_noise"]) if len(rob) else 0.0
    acc = _claim(
        "sp_noise_training_more_accurate",
        "Networks trained with perturbation streams classify the held-out spiral points at "
        "least as accurately as the original network.",
        "Example 2, fig. 9",
        "Clean validation accuracy, largest training noise minus none, stratified by theta; "
        f"supported when the interval excludes a loss of more than {ACCURACY_LOSS:g}.",
    )
    robust = _claim(
        "sp_noise_training_more_robust",
        "Networks trained with perturbation streams are more robust to input noise than the "
        "original network.",
        "Example 2, fig. 9",
        f"Validation accuracy under Gaussian input noise sigma = {top:g}, largest training "
        "noise minus none, stratified by theta.",
    )
    if not trained or not (sp["noise"] == 0).any() or top == 0:
        for c in (acc, robust):
            c.note += " Needs spirals jobs with and without training noise and noisy evaluation."
        return [acc, robust]
    hi_noise = trained[-1]
    both, excluded = _solved(sp[sp["noise"].isin([0.0, hi_noise])], "val_acc", "eval_fail")
    out = difference_check(
        acc,
        both,
        "val_acc",
        lambda g: g["noise"] == hi_noise,
        lambda g: g["noise"] == 0,
        ["theta"],
        rng,
        bound=Above(-ACCURACY_LOSS),
    )
    noisy = rob[(rob["eval_noise"] == top) & rob["noise"].isin([0.0, hi_noise])]
    noisy, excluded_noisy = _solved(noisy, "val_acc", "unsolved")
    robust = difference_check(
        robust,
        noisy,
        "val_acc",
        lambda g: g["noise"] == hi_noise,
        lambda g: g["noise"] == 0,
        ["theta"],
        rng,
    )
    left_out = "Jobs whose final network left some evaluation point unsolved are left out."
    return [
        _with_failures(out, both, "eval_fail", excluded, left_out),
        _with_failures(robust, noisy, "unsolved", excluded_noisy, left_out),
    ]
