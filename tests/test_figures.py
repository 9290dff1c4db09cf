"""Every registered figure renders from synthetic tables via the CLI (PNG + PDF + caption)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fake_tables import fake_tables, write_fake_tables
from matplotlib.figure import Figure
from PIL import Image

from iterconv import stats
from iterconv.cli import main
from iterconv.figures import implicit
from iterconv.figures.registry import (
    FIGURES,
    build_figure,
    caption,
    figure_names,
    interval_text,
)
from iterconv.figures.style import integer_ticks, log_axes, mean_ci95
from iterconv.pipeline.targets import REPORT_CATEGORIES, report_category, report_subcategory
from iterconv.results import coupling_label, coupling_order, load_tables

PAPER_ORDER = ["0 (non-rec.)", "0 (rec.)", "0.5 (rec.)", "0.9 (rec.)", "1 (rec.)"]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    write_fake_tables(root / "tables", root / "toy")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_fake_tables(root / "tables", root / "toy", preset="demo")
    return root


def _render(root, name, out_dir):
    out = out_dir / f"{name}.png"
    rc = main(
        [
            "figure",
            name,
            "--tables-dir",
            str(root / "tables"),
            "--toy-dir",
            str(root / "toy"),
            "--out",
            str(out),
            "--dpi",
            "30",
        ]
    )
    assert rc == 0
    return out


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_renders(full, tmp_path, name):
    out = _render(full, name, tmp_path)
    for path in (out, out.with_suffix(".pdf"), out.with_suffix(".caption.txt")):
        assert path.stat().st_size > 0, path
    with Image.open(out) as img:
        img.verify()
    caption = out.with_suffix(".caption.txt").read_text()
    assert "{" not in caption and len(caption) > 40
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_full_preset_lists_every_figure(full):
    assert figure_names(load_tables(full / "tables").runs) == list(FIGURES)


def test_demo_preset_figures(demo, tmp_path, capsys):
    expected = ["fig1", "fig2", "fig3", "fig4", "figS1", "figS2", "fig5", "fig6", "fig7"]
    assert main(["figure", "--list", "--tables-dir", str(demo / "tables")]) == 0
    assert capsys.readouterr().out.split() == expected
    for name in ("fig3", "fig2"):  # CIFAR-10 figures fall back to the demo dataset
        _render(demo, name, tmp_path)
        assert "Digitclutter demo" in (tmp_path / f"{name}.caption.txt").read_text()


def test_missing_data_gives_labelled_placeholder(demo, tmp_path):
    tables = load_tables(demo / "tables")
    fig = build_figure("figS4", tables)  # the demo trains no training variations
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("training-variation runs" in t for t in texts)
    out = _render(demo, "figS3", tmp_path)
    assert out.stat().st_size > 0


def test_coupling_label_order():
    labels = [
        coupling_label(c, i)
        for c, i in [
            (1.0, "recurrent"),
            (0.0, "recurrent"),
            (0.9, "recurrent"),
            (0.0, "nonrecurrent"),
            (0.5, "recurrent"),
        ]
    ]
    assert coupling_order(labels) == PAPER_ORDER


def test_unknown_figure_is_a_user_error(full, capsys):
    assert main(["figure", "nope", "--tables-dir", str(full / "tables")]) == 2
    assert "unknown figure" in capsys.readouterr().err


def _labelled_y_ticks(ax) -> set[str]:
    """Texts of the y tick labels (major and minor) inside the axis' range."""
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    return {
        label.get_text()
        for label in ax.yaxis.get_ticklabels(which="both")
        if label.get_text() and lo * 0.999 <= label.get_position()[1] <= hi * 1.001
    }


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.3, 0.9), (2.0, 40.0), (2400, 4400), (1e-3, 1e2), (3.1, 3.6)]
)
def test_log_axis_has_two_labelled_ticks(lo, hi):
    ax = Figure().subplots()
    ax.plot([1, 2], [lo, hi])
    log_axes(ax, y=True)
    ax.set_ylim(lo, hi)  # no margins: the range itself decides
    assert len(_labelled_y_ticks(ax)) >= 2


@pytest.mark.parametrize("steps", [[1, 2, 3], [1, 1]])  # [1, 1]: a curve of one step
def test_integer_axis_has_no_fractional_ticks(steps):
    ax = Figure().subplots()
    ax.plot(steps, [0.1, 0.2, 0.3][: len(steps)], "o")
    integer_ticks(ax.xaxis)
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_error_bars_are_the_claims_bootstrap():
    values = [0.1, 0.4, 0.35, 0.2]
    assert mean_ci95(values) == stats.bootstrap_mean_ci(values, np.random.default_rng(0))
    assert all(math.isnan(v) for v in mean_ci95([0.3]))  # one seed: no bar


def test_captions_say_what_the_interval_is_from():
    three = fake_tables(seeds=3)["runs"]
    one = fake_tables(seeds=1)["runs"]
    assert "across 3 seeds" in caption("fig3", three)
    assert "one seed per setting" in caption("fig3", one)
    assert "bootstrap" not in caption("fig3", one)
    assert interval_text(three.iloc[0:0]) == "no runs"


def test_variants_caption_names_the_block_types_drawn():
    runs = fake_tables()["runs"]
    text = caption("fig_variants", runs)
    assert "ResNet" in text and "VAN" in text
    without_van = runs[runs["variant"] != "van"]
    assert "VAN" not in caption("fig_variants", without_van)


def test_fig1_panels_start_at_a(full):
    fig = build_figure("fig1", load_tables(full / "tables", full / "toy"))
    letters = [t.get_text().split()[0] for ax in fig.axes for t in ax.texts if t.get_text()]
    assert letters == ["a", "b", "c"]


def test_implicit_trajectories_have_a_colour_key():
    rows = [
        {"theta": theta, "depth": 2, "seed": 0, "start": i, "layer": k, "z0": i + k, "z1": k}
        for theta in (0.0, 1.0)
        for i in range(11)
        for k in range(3)
    ]
    tables = {
        "fn_trajectories": pd.DataFrame(rows),
        "fn_runs": pd.DataFrame({"depth": [2]}),
    }
    fig = implicit.trajectories_figure(tables)
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "input x"]
    assert len(colorbars) == 1


def test_report_pages_render_claims_and_tables(full, tmp_path):
    claims = tmp_path / "claims.md"
    claims.write_text("# Claims\n\n| id | verdict |\n|---|---|\n| ri_near_one | supported |\n")
    out = tmp_path / "pages"
    args = ["--claims", str(claims), "--tables-dir", str(full / "tables")]
    args += ["--claims-out", str(out / "claims.html"), "--tables-out", str(out / "tables.html")]
    assert main(["report-pages", *args]) == 0
    page = (out / "claims.html").read_text()
    assert "<h1>Claims</h1>" in page and "<td>supported</td>" in page
    tables = (out / "tables.html").read_text()
    runs = load_tables(full / "tables").runs
    assert f"<h2>runs.csv</h2><p>{len(runs)} rows" in tables
    assert tables.count("<tr>") > len(runs)  # the runs in full, and more
    assert all(f"<h2>{name}.csv</h2>" in tables for name in ("stages", "curves", "history"))


def test_report_pages_need_the_claims(full, tmp_path, capsys):
    args = ["--claims", str(tmp_path / "none.md"), "--tables-dir", str(full / "tables")]
    args += ["--claims-out", str(tmp_path / "c.html"), "--tables-out", str(tmp_path / "t.html")]
    assert main(["report-pages", *args]) == 2
    assert "iterconv claims" in capsys.readouterr().err


def test_report_groups_the_figures_as_the_paper():
    assert report_category("fig3") == REPORT_CATEGORIES["main"]
    assert report_category("figS2") == report_category("fig7") == REPORT_CATEGORIES["supplementary"]
    assert report_category("fig_variants") == REPORT_CATEGORIES["beyond"]
    assert report_category("implicit_function", "implicit") == REPORT_CATEGORIES["related"]
    assert report_category("fig_van_depth") == REPORT_CATEGORIES["related"]
    assert report_subcategory("fig_van_depth") == report_subcategory("van_depth", "van")
    assert report_subcategory("fig3") is None
    order = list(REPORT_CATEGORIES.values())
    assert order == sorted(order)  # Snakemake lists the categories by name
