"""The experiment families.

:data:`~iterconv.families.FAMILY_MODULES` is the table of families: each module is a
:class:`Family` (docs/pipeline.md, "Experiment families"), loaded when first asked for so that
naming the families stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from iterconv.families import FAMILY_MODULES

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


def family(name: str) -> Family:
    """Family ``name``."""
    if name not in FAMILY_MODULES:
        raise KeyError(f"unknown family {name!r}; choose from {', '.join(FAMILY_MODULES)}")
    module = importlib.import_module(FAMILY_MODULES[name])
    if not isinstance(module, Family) or name != module.NAME:
        raise TypeError(f"{FAMILY_MODULES[name]} does not define family {name!r}")
    return module


def family_figures() -> dict[str, tuple[str, str]]:
    """``{figure name: (family, caption)}`` over every family."""
    out: dict[str, tuple[str, str]] = {}
    for name in FAMILY_MODULES:
        for fig, (caption, _build) in family(name).FIGURES.items():
            out[fig] = (name, caption)
    return out
