"""``iterconv family-run`` and ``iterconv family-collect``: one family job; a family's tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from iterconv.cli import UserError
from iterconv.families import FAMILY_MODULES
from iterconv.train.device import check_device_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("family-run", help="run one job of an experiment family")
    p.add_argument("family", choices=list(FAMILY_MODULES))
    p.add_argument("--config-json", required=True, help="the job's configuration (JSON object)")
    p.add_argument("--out", type=Path, required=True, help="job directory (result.json last)")
    p.add_argument(
        "--data", nargs="*", default=[], metavar="NAME=DIR", help="prepared datasets by name"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N, mps")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.set_defaults(handler=run_job)

    p = sub.add_parser("family-collect", help="collect a family's job results into CSV tables")
    p.add_argument("family", choices=list(FAMILY_MODULES))
    p.add_argument("--results", nargs="+", type=Path, required=True, help="jobs' result.json")
    p.add_argument(
        "--tables-dir",
        type=Path,
        required=True,
        help="directory replaced whole; refused if it holds anything family-collect does not write",
    )
    p.add_argument(
        "--stamp",
        type=Path,
        help="also write this inputs-*.json file, directly inside --tables-dir, listing the inputs",
    )
    p.set_defaults(handler=collect)


def run_job(args: argparse.Namespace) -> int:
    import sys

    from iterconv.families.registry import family

    try:
        config = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        raise UserError(f"--config-json is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise UserError("--config-json must be a JSON object")
    data = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--data expects NAME=DIR, got {item!r}")
        data[name] = Path(path)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    check_device_spec(args.device)
    module = family(args.family)
    check_job_config(args.family, module, config)
    device = args.device
    if "torch" in sys.modules:  # only families that train with torch pay for importing it
        import torch

        from iterconv.train.device import resolve_device

        torch.set_num_threads(args.threads)
        device = str(resolve_device(args.device))
    if missing := [d for d in module.datasets(config) if d not in data]:
        raise UserError(f"the job reads datasets {missing}: pass them with --data NAME=DIR")
    module.run(config, args.out, data=data, device=device)
    return 0


# Per family: the job keys that take one value of a list in the family's spec (job key -> spec
# key; None: a key that selects the kind of job).
SWEPT: dict[str, dict[str, str | None]] = {
    "van": {"dataset": "datasets", "arch": "archs", "depth": "depths"},
    "shortcut": {"kind": None, "k": "ks", "method": "methods"},
    "implicit": {"example": None, "theta": "thetas", "depth": "depths", "seed": "seeds"},
}


def check_job_config(name: str, module: ModuleType, config: dict[str, Any]) -> None:
    """Refuse a configuration that is not one job of family ``name``, with the family's own
    checks: the spec that would produce this job is rebuilt and expanded by the family's
    ``expand`` (which validates every value), and the job it yields must have the same keys."""
    what = f"--config-json is not a valid {name} job"
    if not config:
        raise UserError(
            f"--config-json is empty: pass one {name} job's configuration (a JSON object "
            "as the workflow writes it; `iterconv family-run --help`)"
        )
    if name not in SWEPT:  # a family without a known spec layout: its datasets must resolve
        try:
            module.datasets(config)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{what}: {type(err).__name__} {err}") from err
        return
    try:
        spec, same_job = _job_spec(name, config, what)
        expanded = module.expand(spec)
    except (ValueError, TypeError) as err:  # ParamsError is a ValueError
        raise UserError(f"{what}: {' '.join(str(err).split())}") from err
    job = next((j for j in expanded.values() if same_job(j)), None)
    if job is None:
        raise UserError(f"{what}: the family never runs this combination of settings")
    if missing := sorted(set(job) - set(config)):
        raise UserError(f"{what}: missing keys {missing}")
    if unknown := sorted(set(config) - set(job)):
        raise UserError(f"{what}: unknown keys {unknown}; allowed: {sorted(job)}")


def _job_spec(
    name: str, config: dict[str, Any], what: str
) -> tuple[dict[str, Any], Callable[[dict], bool]]:
    """A spec of family ``name`` (as in params.yaml) whose expansion holds ``config``, and a
    test that finds that job among the expansion's jobs. Each family sweeps some keys of its
    spec (``depths`` -> a job's ``depth``); the job's other keys are copied settings."""
    swept = SWEPT[name]
    required = [*swept, "seeds"] if name == "van" else list(swept)
    if missing := [key for key in required if key not in config]:
        raise UserError(f"{what}: missing keys {missing}")
    rest = {k: v for k, v in config.items() if k not in swept}
    lists = {spec_key: [config[key]] for key, spec_key in swept.items() if spec_key}
    if name == "van":
        seeds = rest["seeds"]
        group = len(seeds) if isinstance(seeds, list) and seeds else 1
        return {**lists, **rest, "seeds_per_job": group}, lambda job: True
    if name == "shortcut":
        kind = config["kind"]
        if kind not in ("table", "path"):
            raise UserError(f"{what}: kind must be 'table' or 'path', got {kind!r}")
        paths = {"paths": True, "path_k": config["k"]} if kind == "path" else {"paths": False}
        picked = (kind, config["k"], config["method"])
        spec = {**lists, **rest, **paths}
        return spec, lambda job: (job["kind"], job["k"], job["method"]) == picked
    if "noise" in rest:  # implicit: swept in the spirals example only
        lists["noise"] = [rest.pop("noise")]
    if not isinstance(config["example"], str):
        raise UserError(f"{what}: example must be a name, got {config['example']!r}")
    keys = [key for key in ("example", "theta", "depth", "seed", "noise") if key in config]
    picked = {key: config[key] for key in keys}
    spec = {config["example"]: {**lists, **rest}}
    return spec, lambda job: {key: job.get(key) for key in keys} == picked


def collect(args: argparse.Namespace) -> int:
    """Read every job result, build the family's tables, then replace ``--tables-dir`` whole.

    The directory may hold only what this command writes (the family's tables and
    ``inputs-*.json``); anything else is refused before a file is written.
    """
    from iterconv.families.registry import family
    from iterconv.io import ForeignEntryError, replace_dir
    from iterconv.pipeline.tables import STAMP_PATTERN, check_stamp, write_stamp

    out, stamp = args.tables_dir, args.stamp
    check_stamp(stamp, out)
    results = {}
    for path in args.results:
        try:
            results[path.parent.name] = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise UserError(f"missing job result {path}") from err
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(f"{path} is corrupt ({err}): delete it and run the job again") from err
    tables = family(args.family).collect(results)
    owned = [*(f"{name}.csv" for name in tables), STAMP_PATTERN]
    try:
        with replace_dir(out, owned) as tmp:
            for name, frame in tables.items():
                frame.to_csv(tmp / f"{name}.csv", index=False)
            if stamp is not None:
                write_stamp(tmp, stamp, args.results)
    except ForeignEntryError as err:
        raise UserError(str(err)) from err
    print(f"{args.family}: {len(results)} jobs -> {', '.join(sorted(tables))} in {out}")
    return 0


def load_family_tables(tables_dir: str | Path) -> dict:
    """A family's tables as written by ``family-collect``: ``{name: DataFrame}``."""
    import pandas as pd

    tables_dir = Path(tables_dir)
    if not tables_dir.is_dir():
        raise UserError(f"family tables not found: {tables_dir} (run family-collect first)")
    tables = {}
    for path in sorted(tables_dir.glob("*.csv")):
        try:
            tables[path.stem] = pd.read_csv(path)
        except pd.errors.EmptyDataError:  # a table with no rows and no columns
            tables[path.stem] = pd.DataFrame()
    return tables
