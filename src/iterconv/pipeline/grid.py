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
from iterconv.pipeline.address import dataset_address, resolved_dataset_spec, run_address
from iterconv.pipeline.memory import MEMORY_LIMIT_BYTES, training_memory_bytes
from iterconv.train.config import SEED_LIMIT, ConfigError, RunConfig, check_schedule

SOURCES = ("digitclutter", *TORCHVISION_SOURCES)
DATASET_KEYS = ("source", "n_digits", "n_train", "n_val", "seed")  # what Digitclutter takes
# Images of the archives' official training sets; preparation holds out the source's n_val of
# them for validation (iterconv.data.torchvision_sets), the rest is the training split.
ARCHIVE_TRAIN_IMAGES = {
    "cifar10": 50_000,
    "cifar100": 50_000,
    "mnist": 60_000,
    "fashion_mnist": 60_000,
}


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


def _grid_points(grid: dict[str, list], where: str) -> Iterator[tuple[dict, dict[str, str]]]:
    """Each point of the cartesian product, with the key path that set each setting."""
    keys = list(grid)
    for choice in itertools.product(*(list(enumerate(grid[k])) for k in keys)):
        point: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, (j, value) in zip(keys, choice, strict=True):
            path = f"{where}.grid.{key}[{j}]"
            if isinstance(value, dict):  # a mapping sets several settings
                point.update(value)
                origin.update({k: f"{path}.{k}" for k in value})
            else:
                point[key], origin[key] = value, path
        yield point, origin


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
    for name, spec in datasets.items():
        check_dataset(name, spec)
    names: dict[str, int] = {}
    for i, sweep in enumerate(preset(params).get("sweeps", [])):
        where = f"presets.{params['preset']}.sweeps[{i}] ({sweep.get('name', '?')})"
        if sweep.get("name") in names:
            raise ParamsError(
                f"{where}.name: {sweep['name']!r} is already the name of sweep "
                f"{names[sweep['name']]}; sweep names must be unique within a preset"
            )
        names[sweep.get("name")] = i
        recipe = sweep.get("recipe")
        if recipe not in recipes:
            raise ParamsError(f"{where}.recipe: {recipe!r} is not one of {sorted(recipes)}")
        grid, fixed = sweep.get("grid") or {}, sweep.get("fixed") or {}
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ParamsError(f"{where}.grid.{key}: must be a non-empty list")
        if not sweep.get("datasets"):
            raise ParamsError(f"{where}.datasets: must name at least one dataset")
        origin = {k: f"recipes.{recipe}.{k}" for k in recipes[recipe]}
        origin.update({k: f"{where}.fixed.{k}" for k in fixed})
        for dataset in sweep["datasets"]:
            if dataset not in datasets:
                raise ParamsError(f"{where}.datasets: {dataset!r} is not one of {sorted(datasets)}")
            for point, point_origin in _grid_points(grid, where):
                keys = {**origin, **point_origin}
                if "dataset" in keys:
                    raise ParamsError(
                        f"{keys['dataset']}: 'dataset' is not a run setting here; list the "
                        f"sweep's datasets in {where}.datasets"
                    )
                values = {**recipes[recipe], **fixed, **point, "dataset": dataset}
                cfg = _run_config(values, keys, where)
                _check_combination(cfg, datasets[dataset], keys, where)
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


def _run_config(values: dict[str, Any], origin: dict[str, str], where: str) -> RunConfig:
    """The run's configuration; an invalid setting is named by the key path that set it."""
    try:
        cfg = RunConfig.from_dict(values)
        check_schedule(cfg)
    except ConfigError as err:
        path = origin.get(err.key)
        if path is None:
            path = f"{where}.{err.key} (not set: the default)"
        elif not path.startswith(where):
            path += f" (used by {where})"
        raise ParamsError(f"{path}: {err.problem}") from err
    return cfg


def _check_combination(
    cfg: RunConfig, dataset: dict[str, Any], origin: dict[str, str], where: str
) -> None:
    if cfg.coupling > 0 and cfg.init != "recurrent":
        # the paper initialises every coupled network recurrently (section "Soft gradient coupling")
        path = origin.get("init", f"{where}.init")
        raise ParamsError(
            f"{path}: coupling {cfg.coupling} > 0 needs init 'recurrent', got {cfg.init!r}"
        )
    n_train = training_split(dataset)
    if cfg.batch_size > n_train:
        path = origin.get("batch_size", f"{where}.batch_size (not set: the default)")
        raise ParamsError(
            f"{path}: {cfg.batch_size} exceeds the {n_train} training images of dataset "
            f"{cfg.dataset!r}; must be at most {n_train}"
        )
    need = training_memory_bytes(
        cfg.width, cfg.stages, cfg.blocks, cfg.batch_size, dataset["source"]
    )
    if need > MEMORY_LIMIT_BYTES:
        raise ParamsError(
            f"{where}: run {run_id(cfg)} needs about {need / 1e9:.0f} GB to train "
            f"(width {cfg.width}, {cfg.stages} stages x {cfg.blocks} blocks, batch "
            f"{cfg.batch_size}; iterconv.pipeline.memory), more than the "
            f"{MEMORY_LIMIT_BYTES / 1e9:.0f} GB of the largest single device; reduce width, "
            "stages, blocks or batch_size"
        )


def training_split(spec: dict[str, Any]) -> int:
    """Training images of a (checked) dataset spec."""
    source = spec["source"]
    if source == "digitclutter":
        return resolved_dataset_spec(spec)["n_train"]
    return spec.get("n_train", ARCHIVE_TRAIN_IMAGES[source] - TORCHVISION_SOURCES[source].n_val)


def check_dataset(name: str, spec: dict[str, Any]) -> None:
    """What a dataset spec's preparation would refuse, or silently ignore."""
    where = f"datasets.{name}"
    if not isinstance(spec, dict) or spec.get("source") not in SOURCES:
        raise ParamsError(f"{where}.source: must be one of {list(SOURCES)}")
    source = spec["source"]
    used = DATASET_KEYS if source == "digitclutter" else ("source", "n_train")
    for key in spec:
        if key not in used:
            raise ParamsError(
                f"{where}.{key}: not used by source {source!r}, which takes only "
                f"{', '.join(used)}; remove it"
            )
    for key, low, high in (("n_train", 1, None), ("n_val", 1, None), ("seed", 0, SEED_LIMIT)):
        value = spec.get(key, low)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        if not ok or (high is not None and value >= high):
            allowed = f"an integer >= {low}" + (" and < 2**63" if high else "")
            raise ParamsError(f"{where}.{key}: {value!r} is not allowed; must be {allowed}")
    if source in ARCHIVE_TRAIN_IMAGES:
        split = ARCHIVE_TRAIN_IMAGES[source] - TORCHVISION_SOURCES[source].n_val
        if spec.get("n_train", 0) > split:
            raise ParamsError(
                f"{where}.n_train: {spec['n_train']} is not allowed; {source}'s training split "
                f"has {split} images ({ARCHIVE_TRAIN_IMAGES[source]} minus "
                f"{TORCHVISION_SOURCES[source].n_val} held out for validation)"
            )
    digits = spec.get("n_digits", 1)
    lo, _, hi = str(digits).partition("-")
    if source == "digitclutter" and not (
        lo.isdigit() and (hi or lo).isdigit() and 1 <= int(lo) <= int(hi or lo) <= 10
    ):
        raise ParamsError(
            f"{where}.n_digits: {digits!r} is not allowed; must be an integer from 1 to 10 or "
            'a range "lo-hi" of such integers with lo <= hi, e.g. "2-5"'
        )
