"""The claims engine: the record of a checked claim, the verdicts and the checks that give them.

A check measures one quantity, with a 95% percentile bootstrap interval (and, where a direction
is claimed, a one-sided permutation p-value), and judges the interval by a rule:

- one-sided difference (:func:`difference_check`, :func:`paired_check`,
  :func:`rate_difference_check`): ``supported`` when the interval lies above 0 and
  p < :data:`ALPHA`, ``contradicted`` when it lies below 0;
- near a value or inside a band (:class:`Near`, :class:`Band`): ``supported`` when the interval
  lies inside the band, ``contradicted`` when it lies wholly outside;
- beyond a threshold (:class:`Above`, :class:`Below`): ``supported`` when the interval lies
  beyond the threshold, ``contradicted`` when it lies wholly on the other side of the
  contradiction point (by default the threshold itself);
- a level (:func:`level_check`), a bounded difference (:func:`difference_check` with a
  ``bound``: "no better than", "loses at most") and a proportion (:func:`proportion_check`) are
  judged by one of those rules; a bound is not a direction, so they report no p-value;
- otherwise ``inconclusive``. ``not enough data``: the groups' runs exist but a group has fewer
  than :data:`MIN_RUNS` values (in every stratum). ``not tested by this preset``
  (:func:`not_tested`): the tables hold no run at all of a group the claim needs (a variant, a
  training variation, a coupling setting, a second width), so the preset does not test it; the
  note names what it needs. ``not reproducible as specified`` is set by a family when the
  paper's stated method, run as stated, does not behave as the paper's own figures show, so the
  experiment does not test the claim.

These six are the values of :attr:`ClaimResult.verdict` (the ``verdict`` field of
``claims.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from iterconv import stats

MIN_RUNS = 2  # per group and stratum
ALPHA = 0.05  # one-sided level of the permutation tests
SUPPORTED, CONTRADICTED = "supported", "contradicted"
INCONCLUSIVE, NO_DATA = "inconclusive", "not enough data"
NOT_TESTED = "not tested by this preset"
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


def not_tested(base: ClaimResult, needs: Sequence[str], missing: Sequence[str]) -> ClaimResult:
    """``base`` marked :data:`NOT_TESTED`: of the groups it compares (``needs``, described as
    runs), the tables hold no run at all of those in ``missing``. The note names them."""
    absent = "none" if set(missing) == set(needs) else "no " + " and no ".join(missing)
    base.verdict = NOT_TESTED
    base.note = f"Needs {' next to '.join(needs)}; the preset trains {absent}. {base.note}".strip()
    return base


def rounded(x: float, digits: int = 4) -> float:
    """A reported number: ``x`` rounded to ``digits`` decimals."""
    return float(round(x, digits))


# --- rules -----------------------------------------------------------------------------------


class Rule(Protocol):
    """How an interval decides a claim about a level or a bound."""

    def verdict(self, lo: float, hi: float) -> str: ...

    def fields(self) -> dict[str, float]:
        """The rule's parameters as reported next to a level's mean."""
        ...


def one_sided(lo: float, hi: float, p: float) -> str:
    """Verdict on a claimed positive difference with interval ``[lo, hi]`` and p-value ``p``."""
    if lo > 0 and p < ALPHA:
        return SUPPORTED
    return CONTRADICTED if hi < 0 else INCONCLUSIVE


@dataclass(frozen=True)
class Band:
    """Claimed: the quantity lies in the closed band ``[low, high]``."""

    low: float
    high: float

    def verdict(self, lo: float, hi: float) -> str:
        if self.low <= lo and hi <= self.high:
            return SUPPORTED
        return CONTRADICTED if hi < self.low or lo > self.high else INCONCLUSIVE

    def fields(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class Near:
    """Claimed: the quantity is close to ``target`` (within ``tolerance`` either side)."""

    target: float
    tolerance: float

    def verdict(self, lo: float, hi: float) -> str:
        return Band(self.target - self.tolerance, self.target + self.tolerance).verdict(lo, hi)

    def fields(self) -> dict[str, float]:
        return {"target": self.target, "tolerance": self.tolerance}


@dataclass(frozen=True)
class Above:
    """Claimed: the quantity exceeds ``threshold`` (``inclusive``: reaches it). Contradicted when
    the interval lies below ``contradiction`` (default: the threshold)."""

    threshold: float
    contradiction: float | None = None
    inclusive: bool = False

    def verdict(self, lo: float, hi: float) -> str:
        beyond = lo >= self.threshold if self.inclusive else lo > self.threshold
        against = self.threshold if self.contradiction is None else self.contradiction
        return SUPPORTED if beyond else CONTRADICTED if hi < against else INCONCLUSIVE

    def fields(self) -> dict[str, float]:
        return {"threshold": self.threshold}


@dataclass(frozen=True)
class Below:
    """Claimed: the quantity is below ``threshold`` (``inclusive``: at most it); the mirror image
    of :class:`Above`."""

    threshold: float
    contradiction: float | None = None
    inclusive: bool = False

    def verdict(self, lo: float, hi: float) -> str:
        against = None if self.contradiction is None else -self.contradiction
        return Above(-self.threshold, against, self.inclusive).verdict(-hi, -lo)

    def fields(self) -> dict[str, float]:
        return {"threshold": self.threshold}


# --- checks ----------------------------------------------------------------------------------

Rows = Callable[[pd.DataFrame], pd.Series]  # a group's rows within a stratum
Check = Callable[..., ClaimResult]  # called as check(base, rng=rng)

# Every check fills ``measured`` with its own numbers first; numbers the claim already carries
# (e.g. which groups are compared) are kept after them.


def _counts(df: pd.DataFrame) -> dict[str, object]:
    seeds = int(df["seed"].nunique()) if "seed" in df and len(df) else 0
    return {"runs": len(df), "seeds": seeds}


def level_check(
    base: ClaimResult,
    df: pd.DataFrame,
    column: str,
    rule: Rule,
    rng: np.random.Generator,
    digits: int = 4,
    label: str = "mean",
) -> ClaimResult:
    """The mean of ``df[column]`` (one value per run, reported as ``label``) judged by ``rule``;
    numbers reported to ``digits`` decimals."""
    df = df.dropna(subset=[column]) if column in df else df.iloc[0:0]
    x = df[column].to_numpy(float)
    base.n = {**base.n, **_counts(df)}
    if x.size < MIN_RUNS:
        base.note += f" Fewer than {MIN_RUNS} values."
        return base
    lo, hi = stats.bootstrap_mean_ci(x, rng)
    spread = {"sd": rounded(x.std(ddof=1), digits)} if isinstance(rule, Near) else {}
    base.measured = {label: rounded(x.mean(), digits), **spread, **rule.fields(), **base.measured}
    base.interval = [rounded(lo, digits), rounded(hi, digits)]
    base.verdict = rule.verdict(lo, hi)
    return base


def difference_check(
    base: ClaimResult,
    df: pd.DataFrame,
    value: str,
    high: Rows,
    low: Rows,
    strata: list[str],
    rng: np.random.Generator,
    sign: float = 1.0,
    bound: Rule | None = None,
) -> ClaimResult:
    """Claimed: mean ``value`` of ``high`` rows exceeds that of ``low`` rows (``sign=-1``: is
    below), averaged over strata (e.g. widths) in which both groups have enough runs.

    A bounded difference (``bound``, e.g. ``Above(-0.02)``: ``high`` is worse than ``low`` by at
    most 0.02) is judged by the rule on the reported interval of high - low instead; a bound is
    not a direction, so no p-value is reported."""
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
        "seeds": _counts(df)["seeds"],
        "strata": len(used),
    }
    if not used:
        base.note += (
            f" No {'/'.join(strata) or 'group'} with at least {MIN_RUNS} runs in both groups."
        )
        return base
    est, (lo, hi), p = stats.stratified_difference(hi_groups, lo_groups, rng)
    base.measured = {
        "mean_high": rounded(sign * np.mean([h.mean() for h in hi_groups])),
        "mean_low": rounded(sign * np.mean([g.mean() for g in lo_groups])),
        "difference": rounded(sign * est),
        **base.measured,
    }
    ordered = sorted((sign * lo, sign * hi))
    base.interval = [rounded(ordered[0]), rounded(ordered[1])]
    if bound is None:
        base.p_value, base.verdict = rounded(p), one_sided(lo, hi, p)
    else:
        base.verdict = bound.verdict(*base.interval)
    return base


def paired_check(
    base: ClaimResult, differences: pd.Series, rng: np.random.Generator, sign: float = 1.0
) -> ClaimResult:
    """Claimed: the mean of paired ``differences`` (one per run) is above 0 (``sign=-1``:
    below); percentile bootstrap interval and sign-flip p-value."""
    d = differences.dropna()
    if len(d) < MIN_RUNS:
        base.note += f" Fewer than {MIN_RUNS} paired values."
        return base
    lo, hi = stats.bootstrap_mean_ci(d, rng)
    p = stats.sign_flip_p(sign * d, rng)
    base.measured = {"mean_difference": rounded(d.mean()), **base.measured}
    base.interval, base.p_value = [rounded(lo), rounded(hi)], rounded(p)
    base.verdict = one_sided(*sorted((sign * lo, sign * hi)), p)
    return base


def proportion_check(
    base: ClaimResult, successes: int, trials: int, rule: Rule, rng: np.random.Generator
) -> ClaimResult:
    """The pooled success rate of ``trials`` Bernoulli trials judged by ``rule`` (e.g.
    ``Above(0.99, inclusive=True)``: "succeeds in at least 99% of the trials"); percentile
    bootstrap interval over the trials."""
    base.n = {**base.n, "trials": trials}
    if trials < MIN_RUNS:
        base.note += f" Fewer than {MIN_RUNS} trials."
        return base
    outcomes = np.r_[np.ones(successes), np.zeros(trials - successes)]
    lo, hi = stats.bootstrap_mean_ci(outcomes, rng)
    base.measured = {"success_rate": rounded(successes / trials), **base.measured}
    base.interval = [rounded(lo), rounded(hi)]
    base.verdict = rule.verdict(lo, hi)
    return base


def rate_difference_check(
    base: ClaimResult,
    high: Sequence[tuple[int, int]],
    low: Sequence[tuple[int, int]],
    rng: np.random.Generator,
) -> ClaimResult:
    """Claimed: the success rate of ``high`` exceeds that of ``low``, averaged over strata.

    Args:
        high, low: per stratum, ``(successes, trials)`` of each group (stratum i of ``high``
            pairs with stratum i of ``low``).
    """
    trials = [n for _, n in (*high, *low)]
    if not trials or min(trials) < MIN_RUNS:
        base.note += f" Needs both groups in a common stratum with at least {MIN_RUNS} trials each."
        return base
    est, (lo, hi), p = stats.stratified_rate_difference(high, low, rng)
    base.n = {**base.n, "trials": int(sum(trials))}
    base.measured = {"difference": rounded(est), **base.measured}
    base.interval, base.p_value = [rounded(lo), rounded(hi)], rounded(p)
    base.verdict = one_sided(lo, hi, p)
    return base


def evaluate(
    entries: Iterable[tuple[ClaimResult, Check | None]], rng: np.random.Generator
) -> list[ClaimResult]:
    """Each claim checked in order (the order fixes the resampling); a claim without a check
    keeps its verdict (``not tested by this preset`` when the preset trains none of a group it
    needs, else ``not enough data``)."""
    return [base if check is None else check(base, rng=rng) for base, check in entries]
