"""Expansion of ``params.yaml`` into training runs, and the checks a JSON schema cannot express.

Both engines use this module: the Snakefile (through workflow/rules/common.smk) and the tests.
A run is ``RunConfig`` defaults <- recipe <- sweep ``fixed`` <- one point of the sweep ``grid``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from iterconv.data.torchvision_sets import SOURCES as TORCHVISION_SOURCES
from iterconv.pipeline import ParamsError
from iterconv.pipeline.address import dataset_address, run_address
from iterconv.train.config import RunConfig

SOURCES = ("digitclutter", *TORCHVISION_SOURCES)


@dataclass(frozen=True)
class Run:
    run_id: str  # readable: the settings that vary in the grids
    sweep: str
    config: RunConfig
    data: str  # the dataset's address (iterconv.pipeline.address)
    address: str  # run id + hash of the configuration and the dataset's address


def _fmt(x: float) -> str:
    return f"{x:g}"


def run_id(cfg: RunConfig) -> str:
    """Readable id from the settings that vary in the grids, e.g.
    ``cifar10-standard-w16-rec-c0.5-s0`` or ``cifar10-van-4x10-w64-nonrec-c0-s1``; defaults of
    the variations are omitted."""
    default = RunConfig()
    parts = [cfg.dataset, cfg.variant]
    if (cfg.stages, cfg.blocks) != (default.stages, default.blocks):
        parts.append(f"{cfg.stages}x{cfg.blocks}")  # stages x blocks, when not the paper's 3x16
    parts += [
        f"w{cfg.width}",
        cfg.init[:3] if cfg.init == "recurrent" else "nonrec",
        f"c{_fmt(cfg.coupling)}",
    ]
    if cfg.kernel != default.kernel:
        parts.append(cfg.kernel[:3])
    if cfg.couple_from:
        parts.append(f"from{cfg.couple_from}")
    if cfg.bn_gamma != default.bn_gamma:
        parts.append(f"g{_fmt(cfg.bn_gamma)}")
    if cfg.variant in ("icr", "pcr") and cfg.mu != default.mu:
        parts.append(f"mu{_fmt(cfg.mu)}")
    if cfg.variant == "implicit":
        parts.append(f"t{_fmt(cfg.theta)}")
    if cfg.variant == "van" and cfg.multiplier_step == 0:
        parts.append("free")  # VAN (lambda = 0): the constraint is not enforced
    if cfg.variant == "van" and (cfg.multiplier_init, cfg.multiplier_step) not in (
        (default.multiplier_init, default.multiplier_step),
        (0.0, 0.0),
    ):
        parts.append(f"m{_fmt(cfg.multiplier_init)}x{_fmt(cfg.multiplier_step)}")
    parts.append(f"s{cfg.seed}")
    return "-".join(parts)


def _grid_points(grid: dict[str, list]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=True):
            point.update(value if isinstance(value, dict) else {key: value})
        yield point


def preset(params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("preset")
    presets = params.get("presets", {})
    if name not in presets:
        raise ParamsError(f"preset: {name!r} is not defined; choose one of {sorted(presets)}")
    return presets[name]


def expand_runs(params: dict[str, Any]) -> dict[str, Run]:
    """All runs of the selected preset, by run id (validated; raises :class:`ParamsError`)."""
    runs: dict[str, Run] = {}
    datasets, recipes = params.get("datasets", {}), params.get("recipes", {})
    for i, sweep in enumerate(preset(params).get("sweeps", [])):
        where = f"presets.{params['preset']}.sweeps[{i}] ({sweep.get('name', '?')})"
        recipe = sweep.get("recipe")
        if recipe not in recipes:
            raise ParamsError(f"{where}.recipe: {recipe!r} is not one of {sorted(recipes)}")
        grid = sweep.get("grid", {})
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ParamsError(f"{where}.grid.{key}: must be a non-empty list")
        if not sweep.get("datasets"):
            raise ParamsError(f"{where}.datasets: must name at least one dataset")
        for dataset in sweep["datasets"]:
            if dataset not in datasets:
                raise ParamsError(f"{where}.datasets: {dataset!r} is not one of {sorted(datasets)}")
            for point in _grid_points(grid):
                values = {**recipes[recipe], **sweep.get("fixed", {}), **point, "dataset": dataset}
                try:
                    cfg = RunConfig.from_dict(values)
                except (TypeError, ValueError) as err:
                    raise ParamsError(f"{where}: {err}") from err
                _check_combination(cfg, datasets[dataset], where)
                rid = run_id(cfg)
                if rid in runs and runs[rid].config != cfg:
                    raise ParamsError(
                        f"{where}: run id {rid!r} names two different configurations "
                        f"(also in sweep {runs[rid].sweep!r}); vary a setting the id shows"
                    )
                if rid not in runs:
                    data = dataset_address(dataset, datasets[dataset])
                    address = run_address(rid, cfg.to_dict(), data)
                    runs[rid] = Run(rid, sweep.get("name", f"sweep{i}"), cfg, data, address)
    if not runs:
        raise ParamsError(f"presets.{params['preset']}.sweeps: the preset defines no runs")
    return runs


def _check_combination(cfg: RunConfig, dataset: dict[str, Any], where: str) -> None:
    if cfg.coupling > 0 and cfg.init != "recurrent":
        # the paper initialises every coupled network recurrently (section "Soft gradient coupling")
        raise ParamsError(
            f"{where}.init: coupling {cfg.coupling} > 0 needs init 'recurrent', got {cfg.init!r}"
        )
    if dataset.get("source") not in SOURCES:
        raise ParamsError(f"datasets.{cfg.dataset}.source: must be one of {list(SOURCES)}")


def datasets_used(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dataset specs the selected preset's runs and family jobs need, by name."""
    from iterconv.families.registry import family_datasets

    names = sorted({run.config.dataset for run in expand_runs(params).values()})
    names = sorted({*names, *family_datasets(params)})
    return {name: params["datasets"][name] for name in names}
