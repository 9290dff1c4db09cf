"""The claims report as JSON records and as markdown (a table and one note per claim)."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from iterconv.report.engine import (
    CONTRADICTED,
    INCONCLUSIVE,
    MIN_RUNS,
    NO_DATA,
    NOT_REPRODUCIBLE,
    NOT_TESTED,
    SUPPORTED,
    ClaimResult,
)
from iterconv.results import dataset_name

VERDICT_MARK = {
    SUPPORTED: "supported",
    CONTRADICTED: "**contradicted**",
    INCONCLUSIVE: "inconclusive",
    NO_DATA: "not enough data",
    NOT_TESTED: "not tested by this preset",
    NOT_REPRODUCIBLE: "**not reproducible as specified**",
}
# A rule's parameters (the notes state them) stay out of the table's measured column.
RULE_FIELDS = ("target", "tolerance", "threshold", "low", "high", "margin")


def to_json(results: list[ClaimResult]) -> list[dict]:
    return [asdict(r) for r in results]


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
        f"Groups need at least {MIN_RUNS} runs; a claim whose compared runs this preset does "
        f"not train at all reads *{NOT_TESTED}*. {_verdict_counts(results)}",
        "",
        *_claims_table(results),
    ]
    for title, (summary, claims) in (families or {}).items():
        lines += ["", f"# {title}", ""]
        lines += [summary.rstrip(), ""] if summary.strip() else []
        lines += [_verdict_counts(claims), "", *_claims_table(claims)]
    return "\n".join(lines) + "\n"


def _verdict_counts(results: list[ClaimResult]) -> str:
    """Claims per verdict, in the order of :data:`VERDICT_MARK`."""
    verdicts = [r.verdict for r in results]
    counts = [f"{v}: {verdicts.count(v)}" for v in VERDICT_MARK if v in verdicts]
    return "Verdict counts: " + ", ".join(counts) + "."


def _claims_table(results: list[ClaimResult]) -> list[str]:
    lines = [
        "| id | claim | paper | measured | runs (seeds) | 95% interval | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        measured = ", ".join(
            f"{k} {_fmt(v)}" for k, v in r.measured.items() if k not in RULE_FIELDS
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
