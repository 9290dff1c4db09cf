"""``iterconv family-run`` and ``iterconv family-collect``: one family job; a family's tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterconv.errors import ParamsError, UserError
from iterconv.families import FAMILY_MODULES
from iterconv.train.device import check_device_spec

if TYPE_CHECKING:
    from iterconv.families.registry import Family


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("family-run", help="run one job of an experiment family")
    p.add_argument("family", choices=list(FAMILY_MODULES))
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--config", type=Path, help="the job's configuration: a JSON file holding an object"
    )
    given.add_argument("--config-json", metavar="JSON", help="the same as an inline JSON object")
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

    where = f"configuration file {args.config}" if args.config else "--config-json"
    try:
        config = json.loads(args.config.read_text() if args.config else args.config_json)
    except OSError as err:
        raise UserError(f"cannot read {where}: {err.strerror}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{where} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise UserError(f"{where} must hold a JSON object")
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
    config = check_job_config(args.family, module, config, where)
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


def check_job_config(
    name: str, family: Family, config: Mapping[str, Any], where: str = "--config-json"
) -> dict[str, Any]:
    """``config`` checked as one job of family ``name`` (the family's typed job configuration)
    and normalised; a UserError naming the key and what is allowed otherwise."""
    if not config:
        raise UserError(
            f"{where} is empty: pass one {name} job's configuration (a JSON object "
            "as the workflow writes it; `iterconv family-run --help`)"
        )
    try:
        return family.parse_job(config, where)
    except ParamsError as err:
        raise UserError(f"not a valid {name} job: {err}") from err


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
