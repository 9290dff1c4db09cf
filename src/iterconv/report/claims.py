"""The paper's claims as checks on ``runs.csv`` and ``stages.csv``.

Each check returns a :class:`ClaimResult` with the measured numbers, the runs used, a 95%
bootstrap interval, a one-sided permutation p-value where a direction is claimed, and a
verdict. Verdicts are conservative:

- ``supported``: the interval excludes the null in the claimed direction (and p < 0.05), or,
  for "close to" claims, the interval lies inside the tolerance band;
- ``contradicted``: the interval excludes the null in the opposite direction (or lies wholly
  outside the band);
- ``inconclusive``: enough runs, but the interval contains the null;
- ``not enough data``: a group is missing or has fewer than ``MIN_RUNS`` runs;
- ``not reproducible as specified``: the paper's stated method, run as stated, does not
  behave as the paper's own figures show, so the experiment does not test the claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from iterconv import stats
from iterconv.figures.data import main_dataset, ordinary_training, select
from iterconv.figures.style import coupling_label, dataset_name

MIN_RUNS = 2  # per group and stratum
ALPHA = 0.05
SUPPORTED, CONTRADICTED = "supported", "contradicted"
INCONCLUSIVE, NO_DATA = "inconclusive", "not enough data"
NOT_REPRODUCIBLE = "not reproducible as specified"


@dataclass
class ClaimResult:
    """One checked claim (the JSON record)."""

    id: str
    claim: str
    paper_reference: str
    measured: dict[str, float] = field(default_factory=dict)
    n: dict[str, object] = field(default_factory=dict)
    interval: list[float] | None = None
    p_value: float | None = None
    verdict: str = NO_DATA
    note: str = ""


def _counts(df: pd.DataFrame) -> dict[str, object]:
    seeds = int(df["seed"].nunique()) if "seed" in df and len(df) else 0
    return {"runs": len(df), "seeds": seeds}


def _with_setting(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(
        setting=[coupling_label(c, i) for c, i in zip(df["coupling"], df["init"], strict=True)]
    )


def _r(x: float) -> float:
    return float(round(x, 4))


# --- generic checks ----------------------------------------------------------------------


def level_check(
    base: ClaimResult,
    df: pd.DataFrame,
    column: str,
    target: float,
    tol: float,
    rng: np.random.Generator,
    kind: str = "near",
) -> ClaimResult:
    """Mean of ``df[column]`` near ``target`` (|mean - target| <= tol) or above it
    (``kind="above"``), one value per run."""
    df = df.dropna(subset=[column]) if column in df else df.iloc[0:0]
    x = df[column].to_numpy(float)
    base.n = {**base.n, **_counts(df)}
    if x.size < MIN_RUNS:
        base.note += f" Fewer than {MIN_RUNS} values."
        return base
    lo, hi = stats.bootstrap_mean_ci(x, rng)
    base.measured = (
        {"mean": _r(x.mean()), "sd": _r(x.std(ddof=1)), "target": target, "tolerance": tol}
        if kind == "near"
        else {"mean": _r(x.mean()), "threshold": target}
    )
    base.interval = [_r(lo), _r(hi)]
    if kind == "near":
        inside = target - tol <= lo and hi <= target + tol
        outside = hi < target - tol or lo > target + tol
    else:
        inside, outside = lo > target, hi < target
    base.verdict = SUPPORTED if inside else CONTRADICTED if outside else INCONCLUSIVE
    return base


def difference_check(
    base: ClaimResult,
    df: pd.DataFrame,
    value: str,
    high: Callable[[pd.DataFrame], pd.Series],
    low: Callable[[pd.DataFrame], pd.Series],
    strata: list[str],
    rng: np.random.Generator,
    sign: float = 1.0,
) -> ClaimResult:
    """Claimed: mean ``value`` of ``high`` rows exceeds that of ``low`` rows (``sign=-1``: is
    below), averaged over strata (e.g. widths) in which both groups have enough runs."""
    df = df.dropna(subset=[value])
    hi_groups, lo_groups, used = [], [], []
    for key, g in df.groupby(strata) if strata else [((), df)]:
        h, lo_ = g.loc[high(g), value], g.loc[low(g), value]
        if len(h) >= MIN_RUNS and len(lo_) >= MIN_RUNS:
            hi_groups.append(sign * h.to_numpy(float))
            lo_groups.append(sign * lo_.to_numpy(float))
            used.append(key)
    base.n = {
        **base.n,
        "runs": int(sum(map(len, hi_groups)) + sum(map(len, lo_groups))),
        "seeds": int(df["seed"].nunique()) if "seed" in df and len(df) else 0,
        "strata": len(used),
    }
    if not used:
        base.note += (
            f" No {'/'.join(strata) or 'group'} with at least {MIN_RUNS} runs in both groups."
        )
        return base
    est, (lo, hi), p = stats.stratified_difference(hi_groups, lo_groups, rng)
    base.measured = {
        "mean_high": _r(sign * np.mean([h.mean() for h in hi_groups])),
        "mean_low": _r(sign * np.mean([g.mean() for g in lo_groups])),
        "difference": _r(sign * est),
    }
    ordered = sorted((sign * lo, sign * hi))
    base.interval = [_r(ordered[0]), _r(ordered[1])]
    base.p_value = _r(p)
    if lo > 0 and p < ALPHA:
        base.verdict = SUPPORTED
    elif hi < 0:
        base.verdict = CONTRADICTED
    else:
        base.verdict = INCONCLUSIVE
    return base


def no_better_check(
    base: ClaimResult,
    df: pd.DataFrame,
    alternatives: list[str],
    reference: str,
    rng: np.random.Generator,
    margin: float,
) -> ClaimResult:
    """Claimed: no alternative setting has a lower error than ``reference`` by more than
    ``margin``. The best alternative (lowest mean error) is tested, stratified by width."""
    df = _with_setting(df.dropna(subset=["val_error"]))
    means = df[df["setting"].isin(alternatives)].groupby("setting")["val_error"].mean()
    if means.empty:
        base.note += " No alternative runs."
        return base
    best = str(means.idxmin())
    out = difference_check(
        base,
        df,
        "val_error",
        lambda g: g["setting"] == best,
        lambda g: g["setting"] == reference,
        ["width"],
        rng,
    )
    out.measured = {**out.measured, "best_alternative": best, "margin": margin}
    out.p_value = None  # the claim is a bound, not a direction; the interval decides
    if out.verdict != NO_DATA and out.interval is not None:
        lo, hi = out.interval
        out.verdict = SUPPORTED if lo > -margin else CONTRADICTED if hi < 0 else INCONCLUSIVE
    out.note += (
        f" Best alternative: {best}; supported when the 95% interval of its error "
        f"minus the reference's excludes an improvement larger than {margin:.3f}."
    )
    return out


# --- the claims --------------------------------------------------------------------------


def _std(runs: pd.DataFrame, dataset: str | None, variant: str = "standard") -> pd.DataFrame:
    return ordinary_training(select(runs, dataset=dataset, variant=variant))


def _is(coupling: float, init: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda g: (g["coupling"] == coupling) & (g["init"] == init)


def _variant(variant: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda g: g["variant"] == variant


def _claim(id_: str, claim: str, ref: str, note: str = "") -> ClaimResult:
    return ClaimResult(id=id_, claim=claim, paper_reference=ref, note=note)


def index_claims(
    runs: pd.DataFrame, stages: pd.DataFrame, ds: str, rng: np.random.Generator
) -> list[ClaimResult]:
    """Claims about the indices of standard and spectrally normalised ResNets."""
    std = _std(runs, ds)
    ordinary = select(std, coupling=0.0, init="nonrecurrent")
    out = [
        level_check(
            _claim(
                "ri_near_one",
                "Ordinary ResNets have a Recurrence Index close to 1.",
                "Fig 2b; Results, Recurrence Index",
                "Tolerance |mean RI - 1| <= 0.1 (the 95% interval must lie inside).",
            ),
            ordinary,
            "RI",
            1.0,
            0.1,
            rng,
        ),
        level_check(
            _claim(
                "ri_near_one_coupled",
                "Gradient-coupled ResNets have a Recurrence Index centred around 1.",
                "S1 Fig a",
                "All coupling settings pooled; tolerance 0.1.",
            ),
            std,
            "RI",
            1.0,
            0.1,
            rng,
        ),
        level_check(
            _claim(
                "ordinary_diverge",
                "Ordinary ResNets are not robust to extra evaluations of the last "
                "block (Divergence Index clearly above 0).",
                "Fig 2b; Results, Divergence Index",
                "Threshold DI > 0.1 (lower end of the 95% interval).",
            ),
            ordinary,
            "DI",
            0.1,
            0.0,
            rng,
            kind="above",
        ),
        first_stage_claim(stages, ordinary, rng),
    ]
    rec = select(std, init="recurrent")
    below_one = sorted(c for c in rec["coupling"].unique() if 0 < c < 1)
    for index, sign, verb in (("CI", 1.0, "raises"), ("DI", -1.0, "lowers")):
        base = _claim(
            f"coupling_{verb}_{index.lower()}",
            f"Soft gradient coupling {verb} the "
            f"{'Convergence' if index == 'CI' else 'Divergence'} Index.",
            "Fig 3a",
        )
        if not below_one:
            base.note = "Needs recurrent-initialised runs with 0 < lambda < 1."
            out.append(base)
            continue
        top = below_one[-1]
        base.note = (
            f"lambda = {top:g} (rec.) vs 0 (rec.), stratified by width; lambda = 1 is "
            "left out because the paper reports the trend does not hold there."
        )
        out.append(
            difference_check(
                base, rec, index, _is(top, "recurrent"), _is(0.0, "recurrent"), ["width"], rng, sign
            )
        )
    widths = sorted(std["width"].unique())
    for index, sign, verb in (("CI", 1.0, "higher"), ("DI", -1.0, "lower")):
        base = _claim(
            f"wider_{verb}_{index.lower()}",
            f"Wider networks have a {verb} {index}.",
            "Fig 3a; Results",
            "Widest vs narrowest width, stratified by coupling setting.",
        )
        if len(widths) < 2:
            base.note = "Needs at least two widths."
            out.append(base)
            continue
        df = _with_setting(std)
        out.append(
            difference_check(
                base,
                df,
                index,
                lambda g, w=widths[-1]: g["width"] == w,
                lambda g, w=widths[0]: g["width"] == w,
                ["setting"],
                rng,
                sign,
            )
        )
    for variant in ("icr", "pcr"):
        out.append(
            level_check(
                _claim(
                    f"{variant}_di_near_zero",
                    f"Spectrally normalised {variant.upper()} networks converge "
                    "(Divergence Index about 0).",
                    "Fig 4a" if variant == "icr" else "S2 Fig a",
                    "Tolerance |mean DI| <= 0.1 (the 95% interval must lie inside).",
                ),
                _std(runs, ds, variant),
                "DI",
                0.0,
                0.1,
                rng,
            )
        )
    both = _with_setting(pd.concat([std, _std(runs, ds, "icr")]))
    out.append(
        difference_check(
            _claim(
                "icr_lower_di",
                "ICR networks diverge less than standard ResNets (lower DI).",
                "Fig 4a vs Fig 3a",
                "Standard minus ICR, stratified by width and coupling.",
            ),
            both,
            "DI",
            lambda g: g["variant"] == "standard",
            lambda g: g["variant"] == "icr",
            ["width", "setting"],
            rng,
        )
    )
    return out


def first_stage_claim(
    stages: pd.DataFrame, runs: pd.DataFrame, rng: np.random.Generator
) -> ClaimResult:
    """The first stage has the lowest DI: per run, DI(stage 1) - mean DI(other stages) < 0."""
    base = _claim(
        "first_stage_lowest_di",
        "In ordinary ResNets the first stage has the lowest Divergence Index.",
        "Fig 2b; Results, Divergence Index",
        "Paired per run: DI of stage 1 minus the mean DI of the other stages.",
    )
    df = (
        stages[stages["run_id"].isin(runs["run_id"])].dropna(subset=["DI"])
        if len(stages)
        else stages
    )
    if df.empty or df["stage"].nunique() < 2:
        base.note += " Needs per-stage DI of at least two stages."
        return base
    first = df[df["stage"] == 1].set_index("run_id")["DI"]
    rest = df[df["stage"] != 1].groupby("run_id")["DI"].mean()
    d = (first - rest).dropna()
    base.n = {"runs": len(d), "seeds": int(runs["seed"].nunique())}
    if len(d) < MIN_RUNS:
        return base
    lo, hi = stats.bootstrap_mean_ci(d, rng)
    base.measured = {
        "mean_difference": _r(d.mean()),
        "stage1_mean": _r(first.mean()),
        "other_stages_mean": _r(rest.mean()),
    }
    base.interval, base.p_value = [_r(lo), _r(hi)], _r(stats.sign_flip_p(-d, rng))
    base.verdict = (
        SUPPORTED if hi < 0 and base.p_value < ALPHA else CONTRADICTED if lo > 0 else INCONCLUSIVE
    )
    return base


def error_claims(
    runs: pd.DataFrame, ds: str, rng: np.random.Generator, margin: float
) -> list[ClaimResult]:
    """Claims about error rates: coupling, convergence regularisation, variations."""
    out = []
    datasets = [
        ds,
        *sorted(set(ordinary_training(select(runs, variant="standard"))["dataset"]) - {ds}),
    ]
    for name in datasets:
        std = _std(runs, name)
        rec = select(std, init="recurrent")
        top = max(rec["coupling"], default=0.0)
        base = _claim(
            f"coupling_raises_error:{name}",
            f"Higher coupling raises the error of non-convergent ResNets ({dataset_name(name)}).",
            "Fig 3b; S3 Fig",
            f"lambda = {top:g} (rec.) vs 0 (rec.), stratified by width.",
        )
        out.append(
            difference_check(
                base, rec, "val_error", _is(top, "recurrent"), _is(0.0, "recurrent"), ["width"], rng
            )
            if top > 0
            else base
        )
        alts = sorted({coupling_label(c, "recurrent") for c in rec["coupling"] if c > 0})
        out.append(
            no_better_check(
                _claim(
                    f"coupled_not_better:{name}",
                    f"Gradient-coupled ResNets do not outperform ordinary ResNets "
                    f"({dataset_name(name)}).",
                    "Fig 3b; S3 Fig; Discussion",
                ),
                std,
                alts,
                "0 (non-rec.)",
                rng,
                margin,
            )
        )
    std, icr, pcr = (_with_setting(_std(runs, ds, v)) for v in ("standard", "icr", "pcr"))
    for name, a, b, ref in (
        ("icr_raises_error", icr, std, "Fig 4b"),
        ("pcr_raises_error", pcr, std, "S2 Fig b"),
        ("pcr_worse_than_icr", pcr, icr, "S2 Fig b"),
    ):
        va, vb = a["variant"].iloc[0] if len(a) else "?", b["variant"].iloc[0] if len(b) else "?"
        text = (
            f"Convergence regularisation ({va.upper()}) raises the error over {vb} ResNets."
            if name != "pcr_worse_than_icr"
            else "PCR networks perform a bit worse than ICR networks."
        )
        out.append(
            difference_check(
                _claim(name, text, ref, "Stratified by width and coupling setting."),
                pd.concat([a, b]),
                "val_error",
                lambda g, v=va: g["variant"] == v,
                lambda g, v=vb: g["variant"] == v,
                ["width", "setting"],
                rng,
            )
        )
    out += variation_claims(runs, ds, rng, margin)
    return out


VARIATIONS = {
    "bn_gamma": (0.1, "BN gamma = 0.1"),
    "kernel": ("triangular", "triangular kernel"),
    "couple_from": (5, "coupling from block 5"),
}


def variation_claims(
    runs: pd.DataFrame, ds: str, rng: np.random.Generator, margin: float
) -> list[ClaimResult]:
    """The training variations do not beat ordinary ResNets; BN gamma 0.1 helps at 0.9."""
    base = select(runs, dataset=ds, variant="standard")
    ordinary = ordinary_training(base)
    out = []
    for column, (value, label) in VARIATIONS.items():
        if column not in base:
            continue
        varied = base[base[column] == value]
        if varied.empty:
            continue
        ref = select(ordinary, coupling=0.0, init="nonrecurrent").assign(arm="ordinary")
        df = pd.concat([ref, varied.assign(arm="varied")])
        df = df[df["width"].isin(varied["width"].unique())]
        alts = sorted(
            {coupling_label(c, i) for c, i in zip(varied["coupling"], varied["init"], strict=True)}
            - {"0 (non-rec.)"}
        )
        df.loc[df["arm"] == "varied", "init"] = "recurrent"  # label varied runs as alternatives
        out.append(
            no_better_check(
                _claim(
                    f"variation_not_better:{column}",
                    f"Coupled ResNets with {label} do not outperform ordinary ResNets.",
                    "S4 Fig; Discussion",
                ),
                df,
                alts,
                "0 (non-rec.)",
                rng,
                margin,
            )
        )
    gamma = base[base.get("bn_gamma", pd.Series(1.0, index=base.index)) == 0.1]
    if len(gamma):
        df = pd.concat(
            [
                select(ordinary, coupling=0.9, init="recurrent").assign(arm="ordinary"),
                select(gamma, coupling=0.9, init="recurrent").assign(arm="gamma"),
            ]
        )
        out.append(
            difference_check(
                _claim(
                    "bn_gamma_helps_at_0.9",
                    "Initialising BN gamma at 0.1 improves performance at lambda = 0.9.",
                    "Appendix D.1 (ICLR draft fig 8a)",
                    "Ordinary minus gamma-0.1 error, lambda = 0.9 (rec.), stratified by width.",
                ),
                df,
                "val_error",
                lambda g: g["arm"] == "ordinary",
                lambda g: g["arm"] == "gamma",
                ["width"],
                rng,
            )
        )
    return out


def variant_claims(runs: pd.DataFrame, ds: str, rng: np.random.Generator) -> list[ClaimResult]:
    """Beyond the papers: the indices of the related papers' block types against the standard
    ResNet's, same dataset and training, stratified by width. These are this project's
    predictions, not claims of any of the papers."""
    from iterconv.figures.variants import variant_runs

    df = variant_runs(runs, ds)
    ref = "beyond the papers (seeds 002, 003)"
    specs = [
        (
            "plain_ri_below_resnet",
            "Without skip-connections, dropping a block hurts more: a plain network's "
            "Recurrence Index is below a ResNet's.",
            "plain",
            "RI",
        ),
        (
            "van_ri_below_resnet",
            "A VAN whose skip-connections were phased out (alpha -> 1) loses the ResNet's "
            "robustness to dropping a block: its Recurrence Index is below a ResNet's.",
            "van",
            "RI",
        ),
        (
            "implicit_ci_above_resnet",
            "Implicit residual layers approach the output more gradually than explicit ones: "
            "an implicit ResNet's Convergence Index exceeds a ResNet's.",
            "implicit",
            "CI",
        ),
    ]
    out = []
    for id_, text, variant, index in specs:
        high, low = _variant("standard"), _variant(variant)
        if variant == "implicit":  # claimed above the ResNet, not below
            high, low = low, high
        out.append(difference_check(_claim(id_, text, ref), df, index, high, low, ["width"], rng))
    return out


def check_claims(
    runs: pd.DataFrame, stages: pd.DataFrame, seed: int = 0, margin: float = 0.005
) -> tuple[str | None, list[ClaimResult]]:
    """(main dataset, every claim checked on it; error claims also on the other datasets).

    Args:
        runs, stages: ``runs.csv`` and ``stages.csv`` as frames.
        seed: seed of the resampling.
        margin: error difference (fraction, 0.005 = 0.5 points) below which a benefit of an
            alternative counts as no benefit.
    """
    ds = main_dataset(runs)
    if ds is None:
        return None, []
    rng = np.random.default_rng(seed)
    return ds, (
        index_claims(runs, stages, ds, rng)
        + error_claims(runs, ds, rng, margin)
        + variant_claims(runs, ds, rng)
    )


def to_json(results: list[ClaimResult]) -> list[dict]:
    return [asdict(r) for r in results]


VERDICT_MARK = {
    SUPPORTED: "supported",
    CONTRADICTED: "**contradicted**",
    INCONCLUSIVE: "inconclusive",
    NO_DATA: "not enough data",
    NOT_REPRODUCIBLE: "**not reproducible as specified**",
}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def to_markdown(
    results: list[ClaimResult],
    runs: pd.DataFrame,
    dataset: str | None,
    families: dict[str, tuple[str, list[ClaimResult]]] | None = None,
) -> str:
    """The claims report: header (dataset, runs), a table and one paragraph per claim; then a
    section per experiment family (``{title: (summary markdown, claims)}``)."""
    counts = runs["dataset"].value_counts().to_dict() if "dataset" in runs else {}
    lines = [
        "# Claims of Lippl, Peters & Kriegeskorte (2024) checked on this preset",
        "",
        f"Main dataset: **{dataset_name(dataset) if dataset else 'none'}** (`{dataset}`); "
        f"{len(runs)} runs in `runs.csv` "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}).",
        "",
        "Intervals are 95% percentile bootstraps over runs (resampled within each group and "
        f"stratum); p-values are one-sided permutation tests in the claimed direction. "
        f"Groups need at least {MIN_RUNS} runs. {_verdict_counts(results)}",
        "",
        *_claims_table(results),
    ]
    for title, (summary, claims) in (families or {}).items():
        lines += ["", f"# {title}", ""]
        lines += [summary.rstrip(), ""] if summary.strip() else []
        lines += [_verdict_counts(claims), "", *_claims_table(claims)]
    return "\n".join(lines) + "\n"


def _verdict_counts(results: list[ClaimResult]) -> str:
    counts = pd.Series([r.verdict for r in results]).value_counts().to_dict()
    return "Verdict counts: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "."


def _claims_table(results: list[ClaimResult]) -> list[str]:
    lines = [
        "| id | claim | paper | measured | runs (seeds) | 95% interval | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        measured = ", ".join(
            f"{k} {_fmt(v)}"
            for k, v in r.measured.items()
            if k not in ("target", "tolerance", "threshold", "margin")
        )
        interval = "-" if r.interval is None else f"[{r.interval[0]:.4g}, {r.interval[1]:.4g}]"
        runs_n = (
            f"{r.n.get('runs', 0)} ({r.n.get('seeds', 0)})"
            if "runs" in r.n or not r.n
            else ", ".join(f"{k} {v}" for k, v in r.n.items())  # e.g. k values and trials
        )
        claim = r.claim.replace("|", "/")
        lines.append(
            f"| `{r.id}` | {claim} | {r.paper_reference} | {measured or '-'} | "
            f"{runs_n} | {interval} | {_fmt(r.p_value)} | {VERDICT_MARK[r.verdict]} |"
        )
    lines += ["", "## Notes", ""]
    for r in results:
        lines.append(f"- `{r.id}` ({r.verdict}): {r.note.strip() or '-'}")
    return lines
