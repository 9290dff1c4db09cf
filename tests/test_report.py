"""``snakemake --report`` of a micro build: the claims, the tables and every figure with its
caption, grouped as the paper is."""

from __future__ import annotations

import base64
import json
import re
from html import escape as html_escape
from pathlib import Path

import pytest
from test_pipeline import set_preset, snakemake, workflow_copy

from iterconv.pipeline.targets import REPORT_CATEGORIES

pytestmark = pytest.mark.slow

DATA_URI = re.compile(r"data:text/html;[^,]*base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """A micro build and its report: (the build, the report's HTML)."""
    work = workflow_copy(tmp_path_factory.mktemp("report"))
    set_preset(work, "micro")
    for args in ((), ("--report", "report.html")):
        result = snakemake(work, *args)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, (work / "report.html").read_text()


def embedded_pages(html: str) -> list[str]:
    """The HTML results the report embeds (as base64 data URIs)."""
    return [base64.b64decode(m).decode() for m in DATA_URI.findall(html)]


def test_report_embeds_the_claims_and_the_tables(report):
    work, html = report
    pages = embedded_pages(html)
    claims = [p for p in pages if "<title>Claims</title>" in p]
    tables = [p for p in pages if "<title>Tables</title>" in p]
    assert len(claims) == 1 and len(tables) == 1
    first = json.loads((work / "results/micro/claims.json").read_text())[0]
    assert first["id"] in claims[0] and html_escape(first["claim"]) in claims[0]
    assert "<h2>runs.csv</h2><p>5 rows" in tables[0]  # the micro preset's five runs


def test_report_groups_every_figure_with_its_caption(report):
    work, html = report
    for category in REPORT_CATEGORIES.values():
        assert category in html, category
    figures = sorted(p.stem for p in (work / "figures/micro").glob("*.png"))
    assert "fig1" in figures and "implicit_function" in figures
    for name in figures:
        assert f"{name}.png" in html, name
        caption = (work / f"figures/micro/{name}.caption.txt").read_text().split()
        assert " ".join(caption[:4]) in html, name  # the caption's first words
