"""What a preset builds, by address: its datasets, training runs, family jobs and analysis
settings. The workflow's rules are wired from this (workflow/rules/common.smk), and
``iterconv gc`` keeps what any preset references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iterconv.families.registry import Job, expand_families
from iterconv.pipeline.address import analysis_address, dataset_address
from iterconv.pipeline.grid import Run, expand_runs

DEFAULT_EXTRA_EVALUATIONS = 16


@dataclass(frozen=True)
class Dataset:
    name: str
    spec: dict[str, Any]
    address: str


@dataclass(frozen=True)
class Units:
    preset: str
    datasets: dict[str, Dataset]  # by address
    runs: dict[str, Run]  # by address
    jobs: dict[str, dict[str, Job]]  # family -> address -> job
    analysis: str  # address of the per-run analysis settings


def preset_units(params: dict[str, Any]) -> Units:
    """Every unit of the selected preset (validated; raises ParamsError naming the key)."""
    runs = {run.address: run for run in expand_runs(params).values()}
    jobs = {
        family: {job.address: job for job in family_jobs.values()}
        for family, family_jobs in expand_families(params).items()
    }
    names = {run.config.dataset for run in runs.values()}
    names |= {
        ds for family_jobs in jobs.values() for job in family_jobs.values() for ds in job.datasets
    }
    specs = params["datasets"]
    datasets = {}
    for name in sorted(names):
        address = dataset_address(name, specs[name])
        datasets[address] = Dataset(name, specs[name], address)
    extra = (params.get("indices") or {}).get("extra_evaluations", DEFAULT_EXTRA_EVALUATIONS)
    return Units(params["preset"], datasets, runs, jobs, analysis_address(extra))
