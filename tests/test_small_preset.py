"""The `small` preset: a CPU-sized replication that covers what the main paper's claims need.

It is too long to build in the test suite (docs/results-small.md records a build); here its grid
is checked against what the claims compare, and its plan against a dry run.
"""

import pytest
from params_helpers import with_preset
from test_pipeline import planned_jobs, snakemake, workflow_copy

from iterconv.pipeline.grid import expand_runs

SETTINGS = {(0.0, "nonrecurrent"), (0.0, "recurrent"), (0.5, "recurrent"), (1.0, "recurrent")}


def small_runs() -> list:
    return [run.config for run in expand_runs(with_preset("small")).values()]


def test_every_configuration_has_three_seeds():
    groups: dict[tuple, set[int]] = {}
    for cfg in small_runs():
        key = (cfg.variant, cfg.width, cfg.coupling, cfg.init)
        groups.setdefault(key, set()).add(cfg.seed)
    assert groups and all(len(seeds) >= 3 for seeds in groups.values())


def test_the_grid_covers_the_main_claims():
    runs = small_runs()
    standard = [c for c in runs if c.variant == "standard"]
    # ordinary, recurrent-initialised, soft (0 < lambda < 1) and full coupling (figs 2, 3)
    assert {(c.coupling, c.init) for c in standard} == SETTINGS
    # two widths for "wider networks ..." and for the stratified comparisons
    assert len({c.width for c in standard}) == 2
    # ICR and PCR at a setting and at widths the standard ResNets share (fig 4, S2 Fig)
    for variant in ("icr", "pcr"):
        cfgs = [c for c in runs if c.variant == variant]
        assert {(c.coupling, c.init) for c in cfgs} <= SETTINGS
        assert {c.width for c in cfgs} == {c.width for c in standard}
    # one stage of several blocks at least: the indices drop and repeat blocks within a stage
    assert all(c.blocks >= 3 and c.stages >= 2 for c in runs)


def test_nothing_is_downloaded():
    params = with_preset("small")
    datasets = {c.dataset for c in small_runs()}
    assert {params["datasets"][name]["source"] for name in datasets} == {"digitclutter"}


@pytest.mark.slow  # plans the preset through Snakemake (a few seconds)
def test_small_dry_run(tmp_path):
    result = snakemake(workflow_copy(tmp_path), "-n", "--config", "preset=small")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    n = len(small_runs())
    assert jobs["train_run"] == n and jobs["compute_indices"] == n
    assert jobs["prepare_dataset"] == 1 and jobs["check_claims"] == 1
