"""Every registered figure renders from synthetic tables via the CLI (PNG + PDF + caption)."""

from __future__ import annotations

import pytest
from fake_tables import write_fake_tables
from PIL import Image

from iterconv.cli import main
from iterconv.figures.registry import FIGURES, build_figure, figure_names
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
