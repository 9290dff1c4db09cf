"""Pipeline commands: ``check-params``, ``runs``, ``collect``, ``plan``."""

from __future__ import annotations

import argparse
from pathlib import Path

from iterconv.errors import UserError
from iterconv.pipeline.plan import add_arguments as add_plan_arguments

PARAMS_HELP = "the parameters file (default: params.yaml)"
PRESET_HELP = "preset to use (default: the one chosen in preset.yaml beside the parameters file)"


def add_params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("params", type=Path, nargs="?", default=Path("params.yaml"), help=PARAMS_HELP)
    p.add_argument("--preset", help=PRESET_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-params",
        help="validate params.yaml (schema and grid)",
        description="Check params.yaml as the workflow does before any job starts (YAML "
        "syntax, the schema, every grid value, the families' settings) and count the chosen "
        "preset's runs and family jobs. An invalid file is one line naming the key and what "
        "is allowed (status 2).",
    )
    add_params_arguments(p)
    p.set_defaults(handler=check_params)

    p = sub.add_parser(
        "runs",
        help="list the run directories (content addresses) of a preset",
        description="Print the run directory (results/runs/<run id>-<hash>) of every training "
        "run of a preset, one a line.",
    )
    add_params_arguments(p)
    p.set_defaults(handler=list_runs)

    p = sub.add_parser(
        "collect",
        help="collect runs' outputs into a preset's tables",
        description="Read the runs' metrics.json and index files, check them all, then write "
        "the preset's tables (runs.csv, stages.csv, curves.csv, history.csv) and its aggregated "
        "metrics. A failure leaves the previous tables in place. The workflow's collect_tables "
        "step runs it.",
    )
    p.add_argument("--metrics", nargs="+", help="runs' metrics.json files (runs/<run>/...)")
    p.add_argument("--indices", nargs="+", help="runs' index JSON files, each named <run>.json")
    p.add_argument(
        "--runs",
        nargs="+",
        metavar="RUN",
        help="instead of --metrics/--indices: run directory names, read from --runs-dir and "
        "--indices-dir",
    )
    p.add_argument("--runs-dir", type=Path, help="with --runs: holds <run>/metrics.json")
    p.add_argument("--indices-dir", type=Path, help="with --runs: holds <run>.json")
    p.add_argument(
        "--tables-dir",
        type=Path,
        required=True,
        help="directory replaced whole; refused if it holds anything collect does not write",
    )
    p.add_argument("--summary", type=Path, required=True, help="aggregated metrics JSON")
    p.add_argument(
        "--stamp",
        type=Path,
        help="also write this inputs-*.json file, directly inside --tables-dir, listing the inputs",
    )
    p.set_defaults(handler=collect)

    p = sub.add_parser(
        "plan",
        help="size a preset: jobs, epochs, FLOPs, device-hours",
        description="Estimate what building a preset costs before starting it: jobs, epochs, "
        "FLOPs and device-hours per sweep, from measured throughput (docs/performance.md).",
    )
    add_params_arguments(p)
    add_plan_arguments(p)
    p.set_defaults(handler=plan_preset)


def load_params(path: Path, preset: str | None = None) -> dict:
    """params.yaml, validated, with the preset of ``--preset`` or of preset.yaml beside it."""
    from iterconv.pipeline.params import read_params
    from iterconv.pipeline.validate import validate_params

    try:
        params = read_params(path, preset)
        validate_params(params)
    except ValueError as err:  # ParamsError included
        raise UserError(f"invalid {path}: {err}" if path.exists() else str(err)) from err
    return params


def check_params(args: argparse.Namespace) -> int:
    from iterconv.pipeline.grid import expand_runs
    from iterconv.pipeline.units import expand_families

    params = load_params(args.params, args.preset)
    families = "".join(
        f", {len(jobs)} {name} jobs" for name, jobs in expand_families(params).items()
    )
    runs = len(expand_runs(params))
    print(f"{args.params}: preset {params['preset']!r}, {runs} runs{families}, valid")
    return 0


def list_runs(args: argparse.Namespace) -> int:
    from iterconv.pipeline.grid import expand_runs

    for run in expand_runs(load_params(args.params, args.preset)).values():
        print(f"results/runs/{run.address}")
    return 0


def collect_inputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(metrics files, index files): given as paths, or as run names and two directories."""
    by_path = (args.metrics, args.indices)
    by_run = (args.runs, args.runs_dir, args.indices_dir)
    if any(x is not None for x in by_path) == any(x is not None for x in by_run):
        raise UserError("give either --metrics and --indices, or --runs, --runs-dir, --indices-dir")
    if any(x is not None for x in by_path):
        if None in by_path:
            raise UserError("--metrics and --indices go together")
        return list(args.metrics), list(args.indices)
    if None in by_run:
        raise UserError("--runs, --runs-dir and --indices-dir go together")
    if bad := [r for r in args.runs if r in ("", ".", "..") or "/" in r]:
        raise UserError(f"--runs takes run directory names, got {bad[0]!r}")
    metrics = [str(args.runs_dir / r / "metrics.json") for r in args.runs]
    return metrics, [str(args.indices_dir / f"{r}.json") for r in args.runs]


def collect(args: argparse.Namespace) -> int:
    from iterconv.pipeline.tables import collect as collect_tables

    metrics, indices = collect_inputs(args)
    missing = [p for p in [*metrics, *indices] if not Path(p).exists()]
    if missing:
        raise UserError(
            f"missing inputs: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
            "(train and analyse those runs first)"
        )
    runs = collect_tables(metrics, indices, args.tables_dir, args.summary, stamp=args.stamp)
    print(f"collected {len(runs)} runs into {args.tables_dir}")
    return 0


def plan_preset(args: argparse.Namespace) -> int:
    from iterconv.pipeline.plan import plan

    plan(load_params(args.params, args.preset), args)
    return 0
