"""Claim verdicts on synthetic tables where the answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_tables import fake_tables

from iterconv import stats
from iterconv.cli import main
from iterconv.report.claims import check_claims

DIRECTIONAL = [
    "coupling_raises_ci",
    "coupling_lowers_di",
    "wider_higher_ci",
    "wider_lower_di",
    "coupling_raises_error:cifar10",
]


def _verdicts(tables) -> dict[str, str]:
    _, results = check_claims(tables["runs"], tables["stages"])
    return {r.id: r.verdict for r in results}


@pytest.fixture(scope="module")
def holds():
    return _verdicts(fake_tables(seeds=3, effect=1.0))


@pytest.fixture(scope="module")
def fails():
    return _verdicts(fake_tables(seeds=3, effect=-1.0))


@pytest.mark.parametrize(
    "claim",
    [
        *DIRECTIONAL,
        "ri_near_one",
        "icr_di_near_zero",
        "pcr_di_near_zero",
        "icr_raises_error",
        "pcr_worse_than_icr",
        "coupled_not_better:cifar10",
        "first_stage_lowest_di",
    ],
)
def test_supported_when_effect_holds(holds, claim):
    assert holds[claim] == "supported"


@pytest.mark.parametrize("claim", [*DIRECTIONAL, "coupled_not_better:cifar10"])
def test_contradicted_when_effect_reversed(fails, claim):
    assert fails[claim] == "contradicted"


def test_one_run_per_group_is_not_enough(tmp_path):
    tables = fake_tables(seeds=1)
    verdicts = _verdicts(tables)
    for claim in [*DIRECTIONAL, "icr_raises_error"]:
        assert verdicts[claim] == "not enough data", claim


def test_no_effect_is_never_supported():
    verdicts = _verdicts(fake_tables(seeds=3, effect=0.0, seed=3))
    for claim in DIRECTIONAL:
        assert verdicts[claim] != "supported", claim


def test_cli_writes_json_and_markdown(tmp_path):
    tables = fake_tables(preset="demo", seeds=2)
    for name in ("runs", "stages"):
        tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
    rc = main(
        [
            "claims",
            "--runs",
            str(tmp_path / "runs.csv"),
            "--stages",
            str(tmp_path / "stages.csv"),
            "--out",
            str(tmp_path / "claims.md"),
            "--out-json",
            str(tmp_path / "claims.json"),
        ]
    )
    assert rc == 0
    records = json.loads((tmp_path / "claims.json").read_text())
    keys = {
        "id",
        "claim",
        "paper_reference",
        "measured",
        "n",
        "interval",
        "p_value",
        "verdict",
        "note",
    }
    assert records and all(set(r) == keys for r in records)
    md = (tmp_path / "claims.md").read_text()
    assert "Digitclutter demo" in md and "| id |" in md


def test_stats_reference_values():
    rng = np.random.default_rng(0)
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
    est, (lo, hi), p = stats.stratified_difference([[5.0, 5.1, 4.9]], [[1.0, 1.1, 0.9]], rng)
    assert est == pytest.approx(4.0) and lo > 3.5 and hi < 4.5
    assert p == pytest.approx(0.05, abs=0.02)  # 1 of C(6, 3) = 20 splits is as extreme
    lo, hi = stats.bootstrap_mean_ci(pd.Series([1.0, 2.0, 3.0, np.nan]), rng)
    assert 1.0 <= lo < 2.0 < hi <= 3.0


def test_not_reproducible_verdict_is_rendered_and_counted():
    from iterconv.report.claims import NOT_REPRODUCIBLE, ClaimResult, to_markdown

    claim = ClaimResult(id="x", claim="c", paper_reference="p", verdict=NOT_REPRODUCIBLE)
    runs = pd.DataFrame({"dataset": ["d"]})
    text = to_markdown([], runs, "d", {"Family": ("setting", [claim])})
    assert "| **not reproducible as specified** |" in text
    assert "Verdict counts: not reproducible as specified: 1." in text
    assert text.index("setting") < text.index("| `x` |")
