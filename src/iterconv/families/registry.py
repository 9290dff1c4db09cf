"""The experiment families and their jobs for a preset.

A family is a module with this contract (see docs/pipeline.md, "Experiment families"):

- ``NAME``, ``TITLE``;
- ``expand(spec) -> {job_id: job config}``: the family's section of a preset in params.yaml,
  validated (raises :class:`~iterconv.pipeline.grid.ParamsError` naming the key);
- ``datasets(config) -> [dataset names]``: prepared datasets a job reads;
- ``run(config, out, data=..., device=...)``: one job; writes ``out/result.json`` last;
- ``collect({job_id: result}) -> {table name: DataFrame}``;
- ``FIGURES``: ``{name: (caption, build(tables) -> Figure)}``;
- ``claims(tables, rng) -> [ClaimResult]``;
- optionally ``summary(tables) -> markdown`` shown above the family's claims (e.g. a table).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from iterconv.families import FAMILY_MODULES
from iterconv.pipeline import ParamsError
from iterconv.pipeline.address import dataset_address, job_address
from iterconv.pipeline.grid import preset


@dataclass(frozen=True)
class Job:
    family: str
    job_id: str
    config: dict[str, Any]
    datasets: tuple[str, ...]
    address: str  # job id + hash of the configuration and the datasets' addresses


def family(name: str) -> ModuleType:
    """The module of family ``name``."""
    if name not in FAMILY_MODULES:
        raise KeyError(f"unknown family {name!r}; choose from {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name])


def family_specs(params: dict[str, Any]) -> dict[str, Any]:
    """The selected preset's ``families`` section (empty when it has none)."""
    specs = preset(params).get("families") or {}
    where = f"presets.{params['preset']}.families"
    for name in specs:
        if name not in FAMILY_MODULES:
            raise ParamsError(f"{where}.{name}: unknown family; choose from {list(FAMILY_MODULES)}")
    return specs


def expand_families(params: dict[str, Any]) -> dict[str, dict[str, Job]]:
    """Every family job of the selected preset: ``{family: {job_id: Job}}`` (validated)."""
    known = params.get("datasets", {})
    jobs: dict[str, dict[str, Job]] = {}
    for name, spec in family_specs(params).items():
        module = family(name)
        where = f"presets.{params['preset']}.families.{name}"
        if not isinstance(spec, dict):
            raise ParamsError(f"{where}: must be a mapping of the family's settings")
        try:
            expanded = module.expand(spec)
        except ParamsError as err:  # the family names keys from "families.<name>"
            msg = str(err)
            prefix = f"presets.{params['preset']}." if msg.startswith("families.") else f"{where}: "
            raise ParamsError(prefix + msg) from err
        if not expanded:
            raise ParamsError(f"{where}: defines no jobs")
        jobs[name] = {}
        for job_id, config in expanded.items():
            names = tuple(module.datasets(config))
            for ds in names:
                if ds not in known:
                    raise ParamsError(f"{where}: dataset {ds!r} is not one of {sorted(known)}")
            data = {ds: dataset_address(ds, known[ds]) for ds in names}
            address = job_address(name, job_id, config, data)
            jobs[name][job_id] = Job(name, job_id, config, names, address)
    return jobs


def family_figures() -> dict[str, tuple[str, str]]:
    """``{figure name: (family, caption)}`` over every family."""
    out: dict[str, tuple[str, str]] = {}
    for name in FAMILY_MODULES:
        for fig, (caption, _build) in family(name).FIGURES.items():
            out[fig] = (name, caption)
    return out
