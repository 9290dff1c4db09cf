"""``iterconv claims``: check the paper's claims on the tables (markdown + JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("claims", help="check the paper's claims on runs.csv / stages.csv")
    p.add_argument("--runs", default="results/demo/tables/runs.csv", help="runs table")
    p.add_argument("--stages", default="results/demo/tables/stages.csv", help="stages table")
    p.add_argument("--out", default="results/demo/claims.md", help="markdown report")
    p.add_argument("--out-json", default="results/demo/claims.json", help="JSON records")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap and permutations")
    p.add_argument(
        "--margin",
        type=float,
        default=0.005,
        help="error difference (fraction) that counts as no benefit",
    )
    p.add_argument(
        "--family",
        nargs="*",
        default=[],
        metavar="NAME=DIR",
        help="experiment families' tables directories (family-collect), by family name",
    )
    p.set_defaults(handler=run)


# Columns a table must have (name -> numeric?) to be read as runs.csv / stages.csv; what
# tells the two apart is "val_error" (runs only) and "stage" (stages only).
RUNS_COLUMNS = {
    "run_id": False,
    "dataset": False,
    "variant": False,
    "width": True,
    "coupling": True,
    "init": False,
    "seed": True,
    "val_error": True,
}
STAGES_COLUMNS = {"run_id": False, "stage": True, "CI": True, "RI": True, "DI": True}
REBUILD = "rebuild the tables (iterconv collect, or snakemake's collect_tables)"


def read_table(path: str | Path, columns: dict[str, bool], kind: str):
    """``path`` read as the ``kind`` table (``runs.csv``/``stages.csv`` of ``iterconv collect``):
    a one-line :class:`~iterconv.cli.UserError` when it is empty, truncated (a row with fewer or
    more fields than the header, or a last line cut short), lacks a column or holds text where
    numbers belong."""
    import csv
    import io

    import pandas as pd

    from iterconv.cli import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{kind} table {path} is not a file: pass the {kind}.csv of iterconv collect"
        )
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not a CSV table (not text): pass the {kind}.csv") from err
    if not text.strip():
        raise UserError(f"{path} is empty: {REBUILD}")
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            raise UserError(
                f"{path} is truncated or malformed (row {number} has {len(row)} fields, the "
                f"header {len(header)}): {REBUILD}"
            )
    if not text.endswith("\n"):
        raise UserError(f"{path} is truncated (its last line is incomplete): {REBUILD}")
    if missing := [c for c in columns if c not in header]:
        other = "stages" if kind == "runs" else "runs"
        hint = f" (is it the {other} table?)" if _looks_like(header, other) else ""
        raise UserError(
            f"{path} lacks columns {', '.join(missing)}{hint}: pass the {kind}.csv of "
            "iterconv collect"
        )
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(f"{path} cannot be read as a CSV table ({err}): {REBUILD}") from err
    for name, numeric in columns.items():
        if numeric and len(table) and not pd.api.types.is_numeric_dtype(table[name]):
            values = table[name].dropna()
            bad = values[pd.to_numeric(values, errors="coerce").isna()]
            example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise UserError(
                f"{path}: column {name} holds text where numbers belong{example}, is it really "
                f"the {kind} table? {REBUILD}"
            )
    return table


def _looks_like(header: list[str], kind: str) -> bool:
    return ("stage" if kind == "stages" else "val_error") in header


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from iterconv.cli import UserError
    from iterconv.io import write_json, write_text
    from iterconv.report.catalogue import check_claims
    from iterconv.report.render import to_json, to_markdown

    if not Path(args.runs).is_file():
        raise UserError(f"{args.runs} not found")
    runs = read_table(args.runs, RUNS_COLUMNS, "runs")
    if Path(args.stages).exists():
        stages = read_table(args.stages, STAGES_COLUMNS, "stages")
    else:  # optional: the per-stage claims then report "not enough data"
        stages = pd.DataFrame()
    dataset, results = check_claims(runs, stages, seed=args.seed, margin=args.margin)
    families = family_claims(args.family, args.seed)
    records = to_json(results) + [r for _, claims in families.values() for r in to_json(claims)]
    write_json(args.out_json, records)
    write_text(args.out, to_markdown(results, runs, dataset, families))
    return 0


def family_claims(items: list[str], seed: int) -> dict:
    """``{family title: (summary markdown, claims)}`` from ``NAME=DIR`` items (tables written
    by family-collect); a family's optional ``summary(tables)`` gives the markdown."""
    import numpy as np

    from iterconv.cli import UserError
    from iterconv.families import FAMILY_MODULES
    from iterconv.families.cli import load_family_tables
    from iterconv.families.registry import family

    out = {}
    for item in items:
        name, sep, tables_dir = item.partition("=")
        if not sep or name not in FAMILY_MODULES:
            raise UserError(f"--family expects NAME=DIR with NAME in {list(FAMILY_MODULES)}")
        module, tables = family(name), load_family_tables(tables_dir)
        summary = module.summary(tables) if hasattr(module, "summary") else ""
        out[module.TITLE] = (summary, module.claims(tables, np.random.default_rng(seed)))
    return out
