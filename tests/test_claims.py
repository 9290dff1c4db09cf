"""Claim verdicts on synthetic tables where the answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_tables import OTHER_DATASETS, fake_tables

from iterconv import stats
from iterconv.cli import main
from iterconv.report.catalogue import check_claims
from iterconv.report.engine import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    NOT_REPRODUCIBLE,
    NOT_TESTED,
    SUPPORTED,
    Above,
    Band,
    Below,
    ClaimResult,
    Near,
    difference_check,
    level_check,
    one_sided,
    proportion_check,
)
from iterconv.report.render import to_markdown

DIRECTIONAL = [
    "coupling_raises_ci",
    "coupling_lowers_di",
    "wider_higher_ci",
    "wider_lower_di",
    "coupling_raises_error:cifar10",
]


VARIATION_CLAIMS = [
    "variation_not_better:bn_gamma",
    "variation_not_better:kernel",
    "variation_not_better:couple_from",
    "bn_gamma_helps_at_0.9",
]
PCR_CLAIMS = ["pcr_di_near_zero", "pcr_raises_error", "pcr_worse_than_icr"]
VARIANT_CLAIMS = ["plain_ri_below_resnet", "van_ri_below_resnet", "implicit_ci_above_resnet"]
ARCHITECTURE_CLAIMS = ["tv_resnet_diverges", "tv_vit_diverges"]  # the fake tables train none


def _results(runs: pd.DataFrame, stages: pd.DataFrame) -> dict[str, ClaimResult]:
    return {r.id: r for r in check_claims(runs, stages)[1]}


def _verdicts(tables) -> dict[str, str]:
    return {i: r.verdict for i, r in _results(tables["runs"], tables["stages"]).items()}


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


def test_runs_present_but_too_few_are_not_enough_data_not_untested():
    verdicts = _verdicts(fake_tables(seeds=1))  # every group trained, one run per cell
    assert NOT_TESTED not in {v for k, v in verdicts.items() if k not in ARCHITECTURE_CLAIMS}
    assert {verdicts[k] for k in ARCHITECTURE_CLAIMS} == {NOT_TESTED}
    for claim in [*VARIATION_CLAIMS, *PCR_CLAIMS[1:], *VARIANT_CLAIMS]:
        assert verdicts[claim] == NO_DATA, claim


def _without_variations(runs: pd.DataFrame, drop_columns: bool) -> pd.DataFrame:
    ordinary = (
        (runs["bn_gamma"] == 1.0) & (runs["kernel"] == "uniform") & (runs["couple_from"] == 0)
    )
    runs = runs[ordinary]
    return runs.drop(columns=["bn_gamma", "kernel", "couple_from"]) if drop_columns else runs


@pytest.mark.parametrize("drop_columns", [False, True])
def test_variation_claims_are_listed_as_not_tested_without_variation_runs(drop_columns):
    tables = fake_tables(seeds=2)
    with_variations = _verdicts(tables)
    results = _results(_without_variations(tables["runs"], drop_columns), tables["stages"])
    for claim in VARIATION_CLAIMS:
        assert results[claim].verdict == NOT_TESTED, claim
        assert results[claim].note.startswith("Needs "), claim
    gamma = "the preset trains no standard runs with BN gamma = 0.1 at lambda = 0.9 (rec.)."
    assert gamma in results["bn_gamma_helps_at_0.9"].note  # ordinary ones at 0.9 exist
    assert "BN gamma = 0.1" in results["variation_not_better:bn_gamma"].note
    assert "triangular kernel" in results["variation_not_better:kernel"].note
    assert "coupling from block 5" in results["variation_not_better:couple_from"].note
    others = {i: r.verdict for i, r in results.items() if i not in VARIATION_CLAIMS}
    assert others == {i: v for i, v in with_variations.items() if i not in VARIATION_CLAIMS}


def test_pcr_claims_are_not_tested_without_pcr_runs():
    tables = fake_tables(seeds=3)
    runs = tables["runs"]
    results = _results(runs[runs["variant"] != "pcr"], tables["stages"])
    for claim in PCR_CLAIMS:
        assert results[claim].verdict == NOT_TESTED, claim
        assert "PCR runs" in results[claim].note, claim
    assert "the preset trains none." in results["pcr_di_near_zero"].note
    assert "the preset trains no PCR runs." in results["pcr_raises_error"].note
    assert results["icr_raises_error"].verdict == SUPPORTED  # ICR runs still compared


def test_a_missing_reference_group_is_named():
    tables = fake_tables(seeds=2)
    runs = tables["runs"]
    rec0 = (runs["coupling"] == 0.0) & (runs["init"] == "recurrent")
    results = _results(runs[~rec0], tables["stages"])
    note = results["coupling_raises_ci"].note
    assert results["coupling_raises_ci"].verdict == NOT_TESTED
    assert note.startswith("Needs standard runs at 0 < lambda < 1 (rec.) next to standard runs")
    assert "the preset trains no standard runs at lambda = 0 (rec.)." in note


def test_every_claim_is_listed_without_runs():
    tables = fake_tables(seeds=2)
    full = _results(tables["runs"], tables["stages"])
    main_only = [i for i in full if i.partition(":")[2] not in OTHER_DATASETS]
    dataset, results = check_claims(tables["runs"].iloc[0:0], pd.DataFrame())
    assert dataset is None
    assert [r.id.replace(":none", ":cifar10") for r in results] == main_only
    assert {r.verdict for r in results} == {NOT_TESTED}
    assert check_claims(pd.DataFrame(), pd.DataFrame())[1] == results  # no column either


def test_markdown_counts_and_renders_the_not_tested_verdict():
    tables = fake_tables(preset="demo", seeds=2)
    dataset, results = check_claims(tables["runs"], tables["stages"])
    text = to_markdown(results, tables["runs"], dataset)
    untested = sum(r.verdict == NOT_TESTED for r in results)
    assert untested >= len(VARIATION_CLAIMS)
    counts = next(line for line in text.splitlines() if "Verdict counts:" in line)
    assert f"not tested by this preset: {untested}" in counts
    assert f"supported: {sum(r.verdict == SUPPORTED for r in results)}," in counts
    assert "| `bn_gamma_helps_at_0.9` |" in text and "| not tested by this preset |" in text
    assert "- `variation_not_better:kernel` (not tested by this preset): Needs " in text


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
    claim = ClaimResult(id="x", claim="c", paper_reference="p", verdict=NOT_REPRODUCIBLE)
    runs = pd.DataFrame({"dataset": ["d"]})
    text = to_markdown([], runs, "d", {"Family": ("setting", [claim])})
    assert "| **not reproducible as specified** |" in text
    assert "Verdict counts: not reproducible as specified: 1." in text
    assert text.index("setting") < text.index("| `x` |")


def test_wilson_interval():
    for s, n in ((0, 10), (10, 10), (37, 100)):
        lo, hi = stats.wilson_interval(s, n)
        assert 0 <= lo <= s / n <= hi <= 1 and hi - lo > 0
    lo, hi = stats.wilson_interval(5, 10)  # symmetric about 0.5: 0.5 -+ 1.96 * 0.5 / sqrt(13.84)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_stratified_rate_difference_reference_values():
    rng = np.random.default_rng(0)
    est, (lo, hi), p = stats.stratified_rate_difference(
        [(90, 100), (80, 100)], [(50, 100)] * 2, rng
    )
    assert est == pytest.approx(0.35) and 0.25 < lo < 0.35 < hi < 0.45 and p < 0.001
    est, (lo, hi), p = stats.stratified_rate_difference([(50, 100)], [(50, 100)], rng)
    assert est == 0 and lo < 0 < hi and p > 0.3


@pytest.mark.parametrize(
    ("rule", "interval", "verdict"),
    [
        (Near(1.0, 0.1), (0.95, 1.05), SUPPORTED),
        (Near(1.0, 0.1), (1.15, 1.3), CONTRADICTED),
        (Near(1.0, 0.1), (0.85, 1.05), INCONCLUSIVE),
        (Band(-0.01, 0.01), (-0.01, 0.01), SUPPORTED),  # the band is closed
        (Above(0.1), (0.1, 0.3), INCONCLUSIVE),  # "above" is strict
        (Above(0.1), (0.0, 0.09), CONTRADICTED),
        (Above(0.99, inclusive=True), (0.99, 1.0), SUPPORTED),
        (Above(-0.005, contradiction=0.0), (-0.004, 0.002), SUPPORTED),
        (Above(-0.005, contradiction=0.0), (-0.02, -0.001), CONTRADICTED),
        (Above(-0.02), (-0.03, -0.01), INCONCLUSIVE),
        (Below(0.01), (0.0, 0.009), SUPPORTED),
        (Below(0.01), (0.02, 0.03), CONTRADICTED),
        (Below(0.01), (0.0, 0.01), INCONCLUSIVE),
    ],
)
def test_rules(rule, interval, verdict):
    assert rule.verdict(*interval) == verdict


def test_one_sided_verdict_needs_the_interval_and_the_p_value():
    assert one_sided(0.1, 0.3, 0.01) == SUPPORTED
    assert one_sided(0.1, 0.3, ALPHA) == INCONCLUSIVE  # p must be below ALPHA
    assert one_sided(-0.3, -0.1, 0.99) == CONTRADICTED


def _base() -> ClaimResult:
    return ClaimResult(id="x", claim="c", paper_reference="p")


def test_bounded_difference_reports_the_interval_not_a_p_value():
    df = pd.DataFrame({"group": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2})
    df["v"] = [0.50, 0.51, 0.49, 0.50, 0.50, 0.52, 0.48, 0.50]
    rows = {g: (lambda frame, g=g: frame["group"] == g) for g in "ab"}
    rng = np.random.default_rng(0)
    out = difference_check(_base(), df, "v", rows["a"], rows["b"], [], rng, bound=Band(-0.1, 0.1))
    assert out.verdict == SUPPORTED and out.p_value is None
    assert out.measured["difference"] == pytest.approx(0.0) and out.n["runs"] == 8
    one_sided_out = difference_check(_base(), df, "v", rows["a"], rows["b"], [], rng)
    assert one_sided_out.verdict == INCONCLUSIVE and one_sided_out.p_value is not None


def test_proportion_and_level_checks():
    rng = np.random.default_rng(0)
    out = proportion_check(_base(), 1000, 1000, Above(0.99, inclusive=True), rng)
    assert out.verdict == SUPPORTED and out.interval == [1.0, 1.0] and out.n["trials"] == 1000
    out = proportion_check(_base(), 900, 1000, Above(0.99, inclusive=True), rng)
    assert out.verdict == CONTRADICTED and out.measured["success_rate"] == 0.9
    assert proportion_check(_base(), 1, 1, Above(0.5), rng).verdict == NO_DATA
    base = _base()
    base.measured = {"max": 0.3}  # numbers declared with the claim are kept
    df = pd.DataFrame({"x": [0.2, 0.25, 0.3], "seed": [0, 1, 2]})
    out = level_check(base, df, "x", Below(0.5), rng)
    assert out.verdict == SUPPORTED and out.measured == {"mean": 0.25, "threshold": 0.5, "max": 0.3}


def test_architecture_claims_check_the_divergence_index_of_their_runs():
    tables = fake_tables(preset="demo", seeds=1)
    runs = tables["runs"]
    ordinary = runs[(runs["variant"] == "standard") & (runs["coupling"] == 0)]
    ordinary = ordinary[ordinary["init"] == "nonrecurrent"].iloc[[0]]
    tv = [
        ordinary.assign(variant=variant, run_id=f"{variant}-{seed}", seed=seed, DI=di + 0.01 * seed)
        for seed in range(3)
        for variant, di in (("tv_resnet", 0.9), ("tv_vit", 0.02))
    ]
    with_tv = {**tables, "runs": pd.concat([runs, *tv], ignore_index=True)}
    verdicts = _verdicts(with_tv)
    assert verdicts["tv_resnet_diverges"] == "supported"
    assert verdicts["tv_vit_diverges"] == "contradicted"
