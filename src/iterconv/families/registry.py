"""The experiment families and their jobs for a preset.

:data:`~iterconv.families.FAMILY_MODULES` is the table of families: each module is a
:class:`Family` (docs/pipeline.md, "Experiment families"), loaded when first asked for so that
naming the families stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from iterconv.errors import ParamsError
from iterconv.families import FAMILY_MODULES
from iterconv.pipeline.address import dataset_address, job_address
from iterconv.pipeline.grid import preset

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

Tables = dict[str, "pd.DataFrame"]


@runtime_checkable
class Family(Protocol):
    """An experiment family: a module of :mod:`iterconv.families` defining these names."""

    NAME: str
    TITLE: str
    CONFIG: type  # the typed ``families.<NAME>`` section (iterconv.families.config)
    FIGURES: Mapping[str, tuple[str, Callable[[Tables], Figure]]]  # name: (caption, build)

    def expand(self, spec: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
        """The section as a preset writes it -> ``{job id: job configuration}`` (JSON), checked;
        raises ParamsError naming the key from ``where``."""
        ...

    def parse_job(self, config: Mapping[str, Any], where: str) -> dict[str, Any]:
        """One job's configuration, checked and normalised (ParamsError otherwise)."""
        ...

    def datasets(self, config: Mapping[str, Any]) -> list[str]:
        """The prepared datasets a job reads."""
        ...

    def run(
        self, config: dict[str, Any], out: Path, *, data: dict[str, Path], device: str = "cpu"
    ) -> None:
        """One job; writes ``out/result.json`` last."""
        ...

    def collect(self, results: dict[str, dict[str, Any]]) -> Tables:
        """The jobs' results (by job id) as tables."""
        ...

    def claims(self, tables: Tables, rng: np.random.Generator) -> list[Any]:
        """The paper's claims checked on the tables."""
        ...

    def summary(self, tables: Tables) -> str:
        """Markdown shown above the family's claims ("" for none)."""
        ...


@dataclass(frozen=True)
class Job:
    family: str
    job_id: str
    config: dict[str, Any]
    datasets: tuple[str, ...]
    address: str  # job id + hash of the configuration and the datasets' addresses


def family(name: str) -> Family:
    """Family ``name``."""
    if name not in FAMILY_MODULES:
        raise KeyError(f"unknown family {name!r}; choose from {', '.join(FAMILY_MODULES)}")
    module = importlib.import_module(FAMILY_MODULES[name])
    if not isinstance(module, Family) or name != module.NAME:
        raise TypeError(f"{FAMILY_MODULES[name]} does not define family {name!r}")
    return module


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


def family_figures() -> dict[str, tuple[str, str]]:
    """``{figure name: (family, caption)}`` over every family."""
    out: dict[str, tuple[str, str]] = {}
    for name in FAMILY_MODULES:
        for fig, (caption, _build) in family(name).FIGURES.items():
            out[fig] = (name, caption)
    return out
