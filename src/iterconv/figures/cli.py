"""``iterconv figure NAME``: draw one figure to PNG + PDF + caption (all written atomically);
``iterconv report-pages``: the claims report and the tables as HTML pages for the Snakemake
report."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

from iterconv.errors import UserError
from iterconv.io import atomic_path, write_text


def register(sub) -> None:
    p = sub.add_parser("figure", help="draw one figure of the paper from the tables")
    p.add_argument("name", nargs="?", help="figure name (see --list)")
    p.add_argument(
        "--tables-dir",
        default="results/demo/tables",
        help="runs/stages/curves/history; for a family's figure, its family-collect tables",
    )
    p.add_argument("--toy-dir", default="results/toy", help="holds trajectories.csv (fig1)")
    p.add_argument("--out", help="output PNG; the PDF and .caption.txt go beside it")
    p.add_argument("--dpi", type=int, default=200, help="PNG resolution")
    p.add_argument("--list", action="store_true", help="print the available figure names")
    p.set_defaults(handler=run)

    p = sub.add_parser(
        "report-pages",
        help="the claims report and the tables as HTML pages",
        description="Render the claims report (markdown) and the collected tables as two "
        "stand-alone HTML pages, which snakemake --report shows inline.",
    )
    p.add_argument("--claims", type=Path, required=True, help="claims report (claims.md)")
    p.add_argument("--tables-dir", type=Path, required=True, help="holds runs.csv, stages.csv ...")
    p.add_argument("--claims-out", type=Path, required=True, help="claims page (.html)")
    p.add_argument("--tables-out", type=Path, required=True, help="tables page (.html)")
    p.set_defaults(handler=run_pages)


def run(args: argparse.Namespace) -> int:
    from iterconv.families import FAMILY_MODULES
    from iterconv.figures.registry import FIGURES, build_figure, caption, figure_names
    from iterconv.results import load_tables

    if args.name and args.name.split("_")[0] in FAMILY_MODULES:  # a family's figure
        fig, text = family_figure(args.name, args.tables_dir)
        save_figure(fig, text, args.out or f"figures/{args.name}.png", args.dpi)
        return 0
    try:
        tables = load_tables(args.tables_dir, args.toy_dir)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    if args.list:
        print("\n".join(figure_names(tables.runs)))
        return 0
    if args.name not in FIGURES:
        from iterconv.families.registry import family_figures

        names = [*FIGURES, *family_figures()]
        raise UserError(f"unknown figure {args.name!r}; choose from {', '.join(names)}")
    fig = build_figure(args.name, tables)
    save_figure(
        fig, caption(args.name, tables.runs), args.out or f"figures/{args.name}.png", args.dpi
    )
    return 0


def run_pages(args: argparse.Namespace) -> int:
    from iterconv.figures.pages import write_pages

    if not args.claims.is_file():
        raise UserError(f"{args.claims} not found: run 'iterconv claims' first")
    write_pages(args.claims, args.tables_dir, args.claims_out, args.tables_out)
    return 0


def family_figure(name: str, tables_dir: str):
    """(figure, caption) of an experiment family's figure, from its family-collect tables."""
    from iterconv.families.cli import load_family_tables
    from iterconv.families.registry import family

    figures = family(name.split("_")[0]).FIGURES
    if name not in figures:
        raise UserError(f"unknown figure {name!r}; its family draws {', '.join(figures)}")
    text, build = figures[name]
    return build(load_family_tables(tables_dir)), text


def save_figure(fig, text: str, out: str, dpi: int) -> None:
    """PNG, PDF and caption of one figure, each written atomically."""

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must end in .png, got {out}")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    with atomic_path(out.with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, format="pdf")
    write_text(out.with_suffix(".caption.txt"), text + "\n")
