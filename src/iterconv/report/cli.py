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


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from iterconv.cli import UserError
    from iterconv.io import write_json, write_text
    from iterconv.report.claims import check_claims, to_json, to_markdown

    if not Path(args.runs).is_file():
        raise UserError(f"{args.runs} not found")
    runs = pd.read_csv(args.runs)
    stages = pd.read_csv(args.stages) if Path(args.stages).is_file() else pd.DataFrame()
    needed = {"run_id", "dataset", "variant", "width", "coupling", "init", "seed", "val_error"}
    if missing := needed - set(runs.columns):
        raise UserError(f"{args.runs} lacks columns {', '.join(sorted(missing))}")
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
