"""Family ``shortcut``: GD on a two-layer convolutional ResNet teacher-student problem.

Liu, Chen, Zhou, Du, Zhou & Zhao (2019): Table 1 (success rate of population GD
over many random initialisations, per number of patches k, for the ResNet with step-size
warm-up, without it, and the plain CNN of Du et al. 2017) and Figure 5 (one solution path
with and without warm-up from the same initialisation). The model is
:mod:`iterconv.models.two_layer`; docs/shortcut.md lists every reconstruction.

The spec (``families.shortcut`` of a preset) is :class:`ShortcutConfig`, every key optional
(defaults: the paper's sweep); a job is a :class:`TableJob` or a :class:`PathJob` (keys,
defaults and allowed values: docs/shortcut.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from iterconv import stats
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
from iterconv.figures.shortcut import plot_paths, plot_success
from iterconv.io import write_json
from iterconv.models.two_layer import (
    BALLS,
    METHODS,
    GDConfig,
    gradient_descent,
    initial_points,
    make_teacher,
    shortcut,
    theory_radius,
)
from iterconv.report.engine import (
    CONTRADICTED,
    SUPPORTED,
    Above,
    ClaimResult,
    proportion_check,
    rate_difference_check,
    rounded,
)
from iterconv.stats import wilson_interval

NAME = "shortcut"
TITLE = "Shortcut connections in a two-layer convolutional ResNet (Liu et al. 2019)"

PAPER_KS = (16, 25, 36, 49, 64, 81, 100)  # the paper's k (Table 1 columns)

# The paper's Table 1 (success rate over 5000 runs), for figures and docs.
PAPER_TABLE1: dict[str, dict[int, float]] = {
    "ssw": dict.fromkeys(PAPER_KS, 1.0),
    "plain": dict(
        zip(PAPER_KS, (0.7042, 0.7354, 0.7776, 0.7848, 0.822, 0.8388, 0.8426), strict=True)
    ),
    "cnn": dict(
        zip(PAPER_KS, (0.5348, 0.5528, 0.5312, 0.5426, 0.5192, 0.5368, 0.5374), strict=True)
    ),
}
METHOD_LABELS = {"ssw": "ResNet w/ SSW", "plain": "ResNet w/o SSW", "cnn": "CNN"}
CALIBRATED_LABEL = "calibrated to the paper's k = 16 rate, not independent evidence"
_PATH_METHODS = ("ssw", "plain")
_MAX_K = 4096  # guards against typos that would allocate huge arrays


# --- spec -> jobs ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Descent:
    """The teacher and gradient descent: every job of a spec has the same."""

    p: int = setting(16, "patch size", minimum=2, maximum=_MAX_K)
    trials: int = setting(5000, "random initialisations per Table 1 job", minimum=1)
    seed: int = setting(0, "seeds a0 (and the CNN's v0) per k", minimum=0, maximum=SEED_MAX)
    angle: float = setting(
        math.pi / 3,
        "angle between v* and the shortcut in radians (pi/3: |w*| = 1)",
        exclusive_minimum=0,
        exclusive_maximum=math.pi,
    )
    a_sum: float = setting(1.0, "1'a* of the teacher")
    a_norm: float = setting(
        1.0, "|a*| of the teacher, at least |a_sum|/sqrt(k)", exclusive_minimum=0
    )
    a0_radius: float = setting(
        8.0, "radius of the calibrated ball (and of Figure 5's start)", exclusive_minimum=0
    )
    eta: float = setting(
        0.1, "step size of a, and of w after or without the warm-up", exclusive_minimum=0
    )
    eta_w_warmup: float = setting(0.001, "step size of w during the warm-up", exclusive_minimum=0)
    warmup_steps: int = setting(1000, "warm-up iterations", minimum=0)
    max_steps: int = setting(20000, "iteration budget per trial", minimum=1)
    tol: float = setting(
        0.001, "success: |u - v*|^2 + |a - a*|^2 <= tol within max_steps", exclusive_minimum=0
    )


def _check_teacher(descent: Descent, ks: set[int]) -> None:
    """The teacher exists for every k (|a*|^2 >= (1'a*)^2 / k), and GD on a, linear with largest
    Hessian eigenvalue (k + pi - 1) / (2 pi), is stable: eta (k + pi - 1) / (2 pi) < 2."""
    for k in sorted(ks):
        if descent.a_norm**2 < descent.a_sum**2 / k:
            raise Invalid("a_norm", f"must be >= |a_sum|/sqrt(k) for every k (k={k})")
    k = max(ks)
    if descent.eta * (k + math.pi - 1) / (2 * math.pi) >= 2:
        raise Invalid(
            "eta", f"{descent.eta} makes GD on a diverge for k={k}; need eta < 4 pi / (k + pi - 1)"
        )


@dataclass(frozen=True, kw_only=True)
class ShortcutConfig(Descent):
    """``families.shortcut`` of a preset: Table 1 jobs per (k, method, ball), Figure 5's paths."""

    ks: tuple[int, ...] = setting(
        PAPER_KS, "numbers of patches k (Table 1 columns)", minimum=2, maximum=_MAX_K
    )
    methods: tuple[str, ...] = setting(
        METHODS, "ResNet with step-size warm-up, ResNet without, CNN of Du et al.", choices=METHODS
    )
    ball: str = setting(
        "theory",
        "ball of initial a for the experiment: theory (radius |1'a*|/sqrt(k), theorem 2) or "
        "calibrated (radius a0_radius)",
        choices=BALLS,
    )
    sensitivity: tuple[str, ...] = setting(
        ("calibrated",),
        "further balls, run as a labelled sensitivity analysis ([]: none)",
        choices=BALLS,
        min_items=0,
    )
    paths: bool = setting(True, "also the two solution paths of Figure 5 (ssw and plain)")
    path_k: int = setting(16, "k of the solution paths", minimum=2, maximum=_MAX_K)
    record_every: int = setting(5, "iterations between recorded points of a path", minimum=1)

    def __post_init__(self) -> None:
        _check_teacher(self, {*self.ks, self.path_k} if self.paths else set(self.ks))
        if "theory" in self.balls and self.a_sum == 0:
            raise Invalid("a_sum", "the theory ball (radius |a_sum|/sqrt(k)) needs a_sum != 0")

    @property
    def balls(self) -> tuple[str, ...]:
        """The experiment's ball, then the further ones (listing it again adds nothing)."""
        return (self.ball, *(b for b in self.sensitivity if b != self.ball))


@dataclass(frozen=True, kw_only=True)
class TableJob(Descent):
    """One Table 1 job: ``trials`` initialisations of one method in one ball at one k;
    ``a0_radius`` is that ball's radius."""

    kind: str = required("table: a Table 1 job", choices=("table",))
    k: int = required("number of patches", minimum=2, maximum=_MAX_K)
    method: str = required("method", choices=METHODS)
    ball: str = required("ball of initial a", choices=BALLS)

    def __post_init__(self) -> None:
        _check_teacher(self, {self.k})


@dataclass(frozen=True, kw_only=True)
class PathJob(Descent):
    """One solution path of Figure 5, from the calibrated ball's boundary."""

    kind: str = required("path: a Figure 5 path", choices=("path",))
    k: int = required("number of patches", minimum=2, maximum=_MAX_K)
    method: str = required("method", choices=_PATH_METHODS)
    ball: str = required("Figure 5 starts on the calibrated ball", choices=("calibrated",))
    record_every: int = required("iterations between recorded points", minimum=1)

    def __post_init__(self) -> None:
        _check_teacher(self, {self.k})


CONFIG = ShortcutConfig  # the family's section of a preset
_JOBS = {"table": TableJob, "path": PathJob}


def jobs(config: ShortcutConfig) -> dict[str, TableJob | PathJob]:
    """One Table 1 job per (k, method, ball) (``shortcut_k16_ssw_theory_s0``) and, with
    ``paths``, one Figure 5 job per warm-up setting (``shortcut_path_k16_ssw_s0``)."""
    descent = shared(config, Descent)
    seed = config.seed
    out: dict[str, TableJob | PathJob] = {}
    for k in config.ks:
        teacher = make_teacher(k, config.p, config.angle, config.a_sum, config.a_norm)
        radius = {"theory": float(theory_radius(teacher)), "calibrated": config.a0_radius}
        for m in config.methods:
            for ball in config.balls:
                out[f"shortcut_k{k}_{m}_{ball}_s{seed}"] = TableJob(
                    **{**descent, "a0_radius": radius[ball]}, kind="table", k=k, method=m, ball=ball
                )
    if config.paths:  # Figure 5 starts on the calibrated ball's boundary, whatever the balls
        for m in _PATH_METHODS:
            out[f"shortcut_path_k{config.path_k}_{m}_s{seed}"] = PathJob(
                **{**descent, "trials": 1},
                kind="path",
                k=config.path_k,
                method=m,
                ball="calibrated",
                record_every=config.record_every,
            )
    return out


def expand(spec: Mapping[str, Any], where: str = f"families.{NAME}") -> dict[str, dict]:
    """``families.shortcut`` -> {job id: configuration as JSON}; raises ParamsError naming the
    key from ``where``."""
    return {
        job_id: to_dict(job) for job_id, job in jobs(parse(ShortcutConfig, spec, where)).items()
    }


def parse_job(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One job's configuration (``family-run``), checked and normalised."""
    return to_dict(parse_tagged(_JOBS, "kind", config, where))


def datasets(config: dict) -> list[str]:
    """No prepared datasets: the inputs are Gaussian and the loss is in closed form."""
    return []


# --- one job -----------------------------------------------------------------------------


def _gd_config(config: dict) -> GDConfig:
    keys = ("eta", "eta_w_warmup", "warmup_steps", "max_steps", "tol")
    return GDConfig(method=config["method"], **{key: config[key] for key in keys})


def run(config: dict, out: Path, *, data: dict[str, Path], device: str = "cpu") -> None:
    """Run one job (numpy on the CPU whatever ``device``); writes ``out/result.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k, method = config["k"], config["method"]
    teacher = make_teacher(k, config["p"], config["angle"], config["a_sum"], config["a_norm"])
    start = time.process_time()
    result: dict[str, Any] = {"family": NAME, "config": config}
    if config["kind"] == "path":
        # Figure 5's initialisation: w0 = 0 and a0 on the ball's boundary, opposite to a*.
        v0 = shortcut(config["p"])[None, :]
        a0 = (-config["a0_radius"] / np.linalg.norm(teacher.a) * teacher.a)[None, :]
        res = gradient_descent(_gd_config(config), teacher, v0, a0, config["record_every"])
        result["path"] = {
            key.removeprefix("path_"): (value if key == "path_step" else value[:, 0]).tolist()
            for key, value in res.items()
            if key.startswith("path_")
        }
    else:
        rng = np.random.default_rng([config["seed"], k])
        v0, a0 = initial_points(method, teacher, config["trials"], config["a0_radius"], rng)
        res = gradient_descent(_gd_config(config), teacher, v0, a0)
    outcome, steps = res["outcome"], res["steps"]
    result.update(
        n_global=int((outcome == 1).sum()),
        n_spurious=int((outcome == -1).sum()),
        n_unconverged=int((outcome == 0).sum()),
        median_steps=float(np.median(steps)),
        max_steps_taken=int(steps.max()),
        cpu_seconds=round(time.process_time() - start, 3),
    )
    print(
        f"shortcut k={k} {method} {config['kind']}: {result['n_global']}/{config['trials']} "
        f"global, {result['n_spurious']} spurious ({result['cpu_seconds']} s)",
        flush=True,
    )
    write_json(out / "result.json", result)


# --- tables ------------------------------------------------------------------------------


def collect(results: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """``success``: one row per Table 1 job (k, method, counts, success rate, 95% Wilson
    interval); ``paths``: long table of the Figure 5 paths (one row per recorded step)."""
    rows, path_rows = [], []
    for job_id, res in sorted(results.items()):
        cfg = res["config"]
        if cfg["kind"] == "path":
            path = res["path"]
            for i, step in enumerate(path["step"]):
                path_rows.append(
                    {"job": job_id, "k": cfg["k"], "method": cfg["method"], "step": step}
                    | {q: path[q][i] for q in path if q != "step"}
                )
            continue
        n = cfg["trials"]
        lo, hi = wilson_interval(res["n_global"], n)
        rows.append(
            {
                "job": job_id,
                "k": cfg["k"],
                "method": cfg["method"],
                # Results from before the ball was recorded all used the calibrated radius.
                "ball": cfg.get("ball", "calibrated"),
                "a0_radius": cfg["a0_radius"],
                "p": cfg["p"],
                "trials": n,
                "n_global": res["n_global"],
                "n_spurious": res["n_spurious"],
                "n_unconverged": res["n_unconverged"],
                "success_rate": res["n_global"] / n,
                "ci_low": lo,
                "ci_high": hi,
                "median_steps": res["median_steps"],
                "paper_success_rate": PAPER_TABLE1[cfg["method"]].get(cfg["k"], math.nan),
            }
        )
    success_cols = ["job", "k", "method", "ball", "a0_radius", "p", "trials", "n_global"]
    path_cols = ["job", "k", "method", "step", "phi", "w_err", "a_err", "a_bar_err", "a_dot"]
    return {
        "success": pd.DataFrame(rows, columns=None if rows else success_cols),
        "paths": pd.DataFrame(path_rows, columns=None if path_rows else [*path_cols, "loss"]),
    }


def _ball_rows(success: pd.DataFrame, ball: str) -> pd.DataFrame:
    """The rows of one initialisation ball (none if the table does not record the ball)."""
    if "ball" not in success:
        return success.iloc[0:0]
    return success[success["ball"] == ball]


def table1_markdown(success: pd.DataFrame, paper: bool = True) -> str:
    """The rebuilt Table 1 as markdown (one row per method and ball, columns k), with the
    paper's rows below if asked."""
    if success.empty:
        return "(no Table 1 jobs)\n"
    ks = sorted(success["k"].unique())
    present = set(success["ball"]) if "ball" in success else set()
    balls = [b for b in BALLS if b in present] or [None]
    lines = ["| | " + " | ".join(str(k) for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for method in [m for m in METHODS if m in set(success["method"])]:
        for ball in balls:
            rows = success if ball is None else _ball_rows(success, ball)
            rates = rows[rows["method"] == method].set_index("k")["success_rate"]
            cells = [f"{rates[k]:.4f}" if k in rates else "" for k in ks]
            label = f"{METHOD_LABELS[method]} ({ball or 'rebuilt'}{' ball' if ball else ''})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if paper:
            paper_rates = PAPER_TABLE1[method]
            cells = [f"{paper_rates[k]:.4f}" if k in paper_rates else "" for k in ks]
            lines.append(f"| {METHOD_LABELS[method]} (paper) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(tables: dict[str, pd.DataFrame]) -> str:
    """The claims report's section header: the rebuilt Table 1 beside the paper's, the theory
    ball as the experiment and the calibrated ball as a labelled sensitivity analysis."""
    success = tables.get("success", pd.DataFrame())
    if success.empty or "ball" not in success:
        return "Table 1, success rates:\n\n" + table1_markdown(success)
    out = []
    theory, calibrated = _ball_rows(success, "theory"), _ball_rows(success, "calibrated")
    if not theory.empty:
        out.append(
            "Table 1, success rates, the experiment: a0 uniform in the ball of theorem 2, "
            "radius |1'a*|/sqrt(k) (independent evidence):\n\n" + table1_markdown(theory)
        )
    if not calibrated.empty:
        radius = ", ".join(f"{r:g}" for r in sorted(calibrated["a0_radius"].unique()))
        out.append(
            f"Sensitivity analysis, a0 uniform in the calibrated ball, radius {radius} for "
            f"every k ({CALIBRATED_LABEL}):\n\n" + table1_markdown(calibrated)
        )
    return "\n".join(out)


# --- figures -----------------------------------------------------------------------------

FIGURES: dict[str, tuple[str, Callable[[dict[str, pd.DataFrame]], Figure]]] = {
    "shortcut_table": (
        "Success rate of population gradient descent (reaching the teacher rather than the "
        "spurious optimum) against the number of patches k, with 95% Wilson intervals; the "
        "paper's Table 1 is drawn in faint dashed lines.",
        lambda tables: plot_success(tables.get("success", pd.DataFrame()), PAPER_TABLE1),
    ),
    "shortcut_paths": (
        "Solution paths of gradient descent from the same initialisation (w0 = 0, a0 opposite "
        "to a*) with step-size warm-up (top) and without (bottom), as in the paper's fig. 5.",
        lambda tables: plot_paths(tables.get("paths", pd.DataFrame())),
    ),
}


# --- claims ------------------------------------------------------------------------------

ALWAYS = 0.99  # success rate that counts as "converges in all simulations"
# End-point tolerance of the path claim: the two optima are >= 2 apart (|u - v*| = 2 at -v*).
_PATH_TOL = 0.25


def _counts(success: pd.DataFrame, method: str) -> pd.DataFrame:
    return success[success["method"] == method].set_index("k")[["n_global", "trials"]]


def _rate_difference_claim(
    base: ClaimResult, hi: pd.DataFrame, lo: pd.DataFrame, rng: np.random.Generator
) -> ClaimResult:
    """Claimed: the success rate of ``hi`` exceeds that of ``lo``, averaged over their common k."""
    common = sorted(set(hi.index) & set(lo.index))
    hi, lo = hi.loc[common], lo.loc[common]
    base.n = {"ks": len(common)}
    pairs = [list(zip(c["n_global"], c["trials"], strict=True)) for c in (hi, lo)]
    return rate_difference_check(base, *pairs, rng)


def _ssw_always(success: pd.DataFrame, rng: np.random.Generator) -> ClaimResult:
    base = ClaimResult(
        id="shortcut_ssw_always",
        claim="GD with step-size warm-up on the ResNet converges to the global optimum in all "
        f"simulations (success rate 1 for every k; checked as >= {ALWAYS:g}).",
        paper_reference="Liu et al. 2019, sec. 4, table 1 (row 1), theorem 2",
    )
    counts = _counts(success, "ssw")
    base.n = {"ks": len(counts)}
    if len(counts):
        worst = float((counts["n_global"] / counts["trials"]).min())
        base.measured = {"worst_k_rate": rounded(worst)}
    wins, total = int(counts["n_global"].sum()), int(counts["trials"].sum())
    return proportion_check(base, wins, total, Above(ALWAYS, inclusive=True), rng)


def _plain_improves_with_k(success: pd.DataFrame, rng: np.random.Generator) -> ClaimResult:
    base = ClaimResult(
        id="shortcut_plain_k_trend",
        claim="Without warm-up the failure probability diminishes as the dimension k grows "
        "(success rate at the largest k exceeds that at the smallest).",
        paper_reference="Liu et al. 2019, sec. 4, table 1 (row 2)",
    )
    counts = _counts(success, "plain").sort_index()
    if len(counts) < 2:
        base.note = "Needs plain runs at two or more k."
        return base
    rates = counts["n_global"] / counts["trials"]
    # The largest and the smallest k as one stratum of "high" and "low".
    largest, smallest = counts.iloc[[-1]], counts.iloc[[0]].set_axis(counts.index[[-1]])
    base = _rate_difference_claim(base, largest, smallest, rng)
    base.measured |= {
        "k_small": int(counts.index[0]),
        "k_large": int(counts.index[-1]),
        "spearman_k_rate": round(stats.spearman(counts.index.to_numpy(float), rates), 4),
    }
    return base


def _paths_claim(paths: pd.DataFrame) -> ClaimResult:
    base = ClaimResult(
        id="shortcut_paths",
        claim="From the same initialisation, GD with warm-up converges to the global optimum "
        "while GD without it converges to the spurious optimum (phi -> pi, a -> a_bar).",
        paper_reference="Liu et al. 2019, sec. 4, fig. 5",
    )
    last = {}
    if not paths.empty:
        last = {m: g.sort_values("step").iloc[-1] for m, g in paths.groupby("method")}
    if not set(_PATH_METHODS) <= set(last):
        base.note = "Needs both solution paths (paths: true)."
        return base
    ssw, plain = last["ssw"], last["plain"]
    base.measured = {
        "ssw_final_distance": round(math.hypot(ssw["w_err"], ssw["a_err"]), 6),
        "plain_final_phi": round(float(plain["phi"]), 6),
        "plain_final_a_bar_err": round(float(plain["a_bar_err"]), 6),
    }
    base.n = {"paths": 2}
    ok_ssw = math.hypot(ssw["w_err"], ssw["a_err"]) < _PATH_TOL
    ok_plain = plain["phi"] > math.pi - _PATH_TOL and plain["a_bar_err"] < _PATH_TOL
    if ok_ssw and ok_plain:
        base.verdict = SUPPORTED
    else:  # the paper's path did converge, so a different end point contradicts it
        base.verdict = CONTRADICTED
    base.note = f"Deterministic single paths: no interval; tolerance {_PATH_TOL} on the end points."
    return base


_BALL_NOTES = {
    "theory": "Theory ball (radius |1'a*|/sqrt(k), theorem 2): independent evidence, no "
    "setting fitted to Table 1.",
    "calibrated": "Calibrated ball (fixed radius a0_radius for every k): "
    + CALIBRATED_LABEL
    + "; the rise with k follows from the fixed radius.",
}


def _with_ball(claim: ClaimResult, ball: str) -> ClaimResult:
    """Tag a claim with its ball: the calibrated ones get an ``_calibrated`` id suffix."""
    if ball != "theory":
        claim.id = f"{claim.id}_{ball}"
        claim.claim = f"[{ball} ball, sensitivity analysis] {claim.claim}"
    claim.note = " ".join(filter(None, [_BALL_NOTES[ball], claim.note.strip()]))
    return claim


def claims(tables: dict[str, pd.DataFrame], rng: np.random.Generator) -> list[ClaimResult]:
    """The paper's claims on the ``success`` and ``paths`` tables: the Table 1 claims once on
    the theory ball (the evidence) and once on the calibrated ball (``*_calibrated``)."""
    success = tables.get("success", pd.DataFrame())
    if success.empty or "ball" not in success:
        success = pd.DataFrame(columns=["k", "method", "ball", "n_global", "trials"])
    out = []
    for ball in BALLS:
        out += [_with_ball(c, ball) for c in _table_claims(_ball_rows(success, ball), rng)]
    path_claim = _paths_claim(tables.get("paths", pd.DataFrame()))
    path_claim.note += (
        " The start a0 = -a0_radius a*/|a*| lies on the calibrated ball's boundary (the "
        "paper's start is lost): the path illustrates the trap, not how often it occurs."
    )
    return [*out, path_claim]


def _table_claims(success: pd.DataFrame, rng: np.random.Generator) -> list[ClaimResult]:
    """The Table 1 claims on the rows of one ball."""
    out = [_ssw_always(success, rng)]
    out.append(
        _rate_difference_claim(
            ClaimResult(
                id="shortcut_ssw_beats_plain",
                claim="Without warm-up GD can be trapped by the spurious optimum: its success "
                "rate is below that with warm-up (mean difference over k > 0).",
                paper_reference="Liu et al. 2019, sec. 4, table 1 (rows 1-2)",
            ),
            _counts(success, "ssw"),
            _counts(success, "plain"),
            rng,
        )
    )
    out.append(_plain_improves_with_k(success, rng))
    out.append(
        _rate_difference_claim(
            ClaimResult(
                id="shortcut_resnet_beats_cnn",
                claim="The plain CNN student of Du et al. (2017) is trapped with constant "
                "probability: its success rate is below the ResNet's with warm-up.",
                paper_reference="Liu et al. 2019, sec. 4, table 1 (rows 1 and 3)",
            ),
            _counts(success, "ssw"),
            _counts(success, "cnn"),
            rng,
        )
    )
    return out
