"""What a preset builds, by address: its datasets, training runs, family jobs and analysis
settings. The workflow's rules are wired from this (workflow/rules/common.smk), and
``iterconv gc`` keeps what any preset references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iterconv.errors import ParamsError
from iterconv.families import FAMILY_MODULES
from iterconv.families.registry import family
from iterconv.pipeline.address import analysis_address, dataset_address, job_address
from iterconv.pipeline.grid import Run, expand_runs, preset

DEFAULT_EXTRA_EVALUATIONS = 16


@dataclass(frozen=True)
class Dataset:
    name: str
    spec: dict[str, Any]
    address: str


@dataclass(frozen=True)
class Job:
    family: str
    job_id: str
    config: dict[str, Any]
    datasets: tuple[str, ...]
    address: str  # job id + hash of the configuration and the datasets' addresses


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


def family_specs(params: dict[str, Any]) -> dict[str, Any]:
    """The selected preset's ``families`` section (empty when it has none)."""
    specs = preset(params).get("families") or {}
    where = f"presets.{params['preset']}.families"
    for name in specs:
        if name not in FAMILY_MODULES:
            raise ParamsError(f"{where}.{name}: unknown family; choose from {list(FAMILY_MODULES)}")
    return specs


def expand_families(params: dict[str, Any]) -> dict[str, dict[str, Job]]:
    """Every family job of the selected preset: ``{family: {job_id: Job}}`` (checked)."""
    known = params.get("datasets", {})
    jobs: dict[str, dict[str, Job]] = {}
    for name, spec in family_specs(params).items():
        fam = family(name)
        where = f"presets.{params['preset']}.families.{name}"
        jobs[name] = {}
        for job_id, config in fam.expand(spec, where).items():
            names = tuple(fam.datasets(config))
            for ds in names:
                if ds not in known:
                    raise ParamsError(f"{where}: dataset {ds!r} is not one of {sorted(known)}")
            data = {ds: dataset_address(ds, known[ds]) for ds in names}
            address = job_address(name, job_id, config, data)
            jobs[name][job_id] = Job(name, job_id, config, names, address)
    return jobs
