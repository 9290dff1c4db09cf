"""Small statistics (numpy only), shared by the claims and the figures: bootstrap intervals,
permutation tests and binomial intervals.

Every resampling function takes a seeded :class:`numpy.random.Generator` so results are
reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

N_RESAMPLES = 4000


def bootstrap_mean_ci(
    values: Sequence[float], rng: np.random.Generator, level: float = 0.95, n: int = N_RESAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return (float("nan"), float("nan"))
    means = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def stratified_difference(
    high: Sequence[Sequence[float]],
    low: Sequence[Sequence[float]],
    rng: np.random.Generator,
    level: float = 0.95,
    n: int = N_RESAMPLES,
) -> tuple[float, tuple[float, float], float]:
    """Mean over strata of (mean(high_s) - mean(low_s)): estimate, bootstrap CI and one-sided
    permutation p-value for "difference > 0".

    Args:
        high, low: per stratum (e.g. per width), the values of the two groups; each group of
            each stratum needs at least one value (the caller checks for enough data).

    The bootstrap resamples within each group of each stratum; the permutation test shuffles
    the group labels within each stratum, so strata never mix.
    """
    pairs = [
        (np.asarray(h, float), np.asarray(lo_, float)) for h, lo_ in zip(high, low, strict=True)
    ]
    estimate = float(np.mean([h.mean() - lo_.mean() for h, lo_ in pairs]))
    boot = np.zeros(n)
    perm = np.zeros(n)
    for h, lo_ in pairs:
        boot += h[rng.integers(0, h.size, (n, h.size))].mean(1) - lo_[
            rng.integers(0, lo_.size, (n, lo_.size))
        ].mean(1)
        pooled = np.concatenate([h, lo_])
        shuffled = rng.permuted(np.tile(pooled, (n, 1)), axis=1)
        perm += shuffled[:, : h.size].mean(1) - shuffled[:, h.size :].mean(1)
    boot /= len(pairs)
    perm /= len(pairs)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    p = (1 + np.sum(perm >= estimate - 1e-12)) / (n + 1)
    return estimate, (float(lo), float(hi)), float(p)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size)
        for value in np.unique(v):  # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def sign_flip_p(
    differences: Sequence[float], rng: np.random.Generator, n: int = N_RESAMPLES
) -> float:
    """One-sided p-value for "mean difference > 0" by random sign flips (paired data)."""
    d = np.asarray(differences, float)
    d = d[~np.isnan(d)]
    signs = rng.choice([-1.0, 1.0], size=(n, d.size))
    null = (signs * np.abs(d)).mean(axis=1)
    return float((1 + np.sum(null >= d.mean() - 1e-12)) / (n + 1))


def stratified_rate_difference(
    high: Sequence[tuple[int, int]],
    low: Sequence[tuple[int, int]],
    rng: np.random.Generator,
    level: float = 0.95,
    n: int = N_RESAMPLES,
) -> tuple[float, tuple[float, float], float]:
    """Mean over strata of the success-rate difference high - low: estimate, percentile
    bootstrap interval (each group's trials redrawn: binomial draws) and one-sided permutation
    p-value for "difference > 0" (labels shuffled within strata: hypergeometric draws).

    Args:
        high, low: per stratum, ``(successes, trials)`` of each group (trials >= 1).
    """
    estimate = 0.0
    boot, perm = np.zeros(n), np.zeros(n)
    for (sh, nh), (sl, nl) in zip(high, low, strict=True):
        estimate += sh / nh - sl / nl
        boot += rng.binomial(nh, sh / nh, n) / nh - rng.binomial(nl, sl / nl, n) / nl
        drawn = rng.hypergeometric(sh + sl, nh + nl - sh - sl, nh, n)
        perm += drawn / nh - (sh + sl - drawn) / nl
    m = len(high)
    estimate, boot, perm = estimate / m, boot / m, perm / m
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    p = (1 + np.sum(perm >= estimate - 1e-12)) / (n + 1)
    return float(estimate), (float(lo), float(hi)), float(p)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sensible at 0 and 1 too)."""
    if n == 0:
        return math.nan, math.nan
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
