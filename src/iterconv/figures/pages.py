"""Stand-alone HTML pages of a build's claims report and tables, for the Snakemake report
(``snakemake --report``), which shows an HTML result inline but only offers other files for
download."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from iterconv.io import write_text
from iterconv.results import TABLES

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; line-height: 1.45; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
.scroll { max-height: 32em; overflow: auto; border: 1px solid #ddd; }
.scroll td, .scroll th { white-space: nowrap; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""
# Tables shown in full; the others (one row per step or epoch) are summarised and drawn by the
# figures (fig 2, 5, 6).
SHOWN_IN_FULL = ("runs", "stages")


def page(title: str, body: str) -> str:
    """A complete HTML document with the house style."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def claims_page(markdown: str) -> str:
    """The claims report (``iterconv claims --out``, markdown) as an HTML page."""
    from markdown_it import MarkdownIt

    return page("Claims", MarkdownIt("commonmark").enable("table").render(markdown))


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0)


def tables_page(tables_dir: Path) -> str:
    """The collected tables (``runs.csv`` ... in ``tables_dir``) as an HTML page: runs and stages
    in full, the long tables by their size and columns."""
    parts = [
        "<h1>Tables</h1>",
        f"<p>Collected in <code>{html.escape(str(tables_dir))}</code> "
        "(columns: docs/pipeline.md).</p>",
    ]
    for name in TABLES:
        path = tables_dir / f"{name}.csv"
        if not path.is_file() or path.stat().st_size == 0:
            parts.append(f"<h2>{name}.csv</h2><p>empty or not written</p>")
            continue
        df = pd.read_csv(path)
        parts.append(f"<h2>{name}.csv</h2><p>{len(df)} rows, {len(df.columns)} columns.</p>")
        if name in SHOWN_IN_FULL:
            parts.append(f'<div class="scroll">{_table_html(df)}</div>')
        else:
            columns = ", ".join(f"<code>{html.escape(str(c))}</code>" for c in df.columns)
            parts.append(f"<p>Columns: {columns}. First rows:</p>{_table_html(df.head(5))}")
    return page("Tables", "\n".join(parts))


def write_pages(claims_md: Path, tables_dir: Path, claims_out: Path, tables_out: Path) -> None:
    """Write the claims and tables pages (each atomically)."""
    write_text(claims_out, claims_page(claims_md.read_text()))
    write_text(tables_out, tables_page(tables_dir))
