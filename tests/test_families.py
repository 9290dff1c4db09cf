"""The experiment-family framework: validation of the `families` sections, the family CLI
(run, collect, figure, claims) and its failure modes. Each family's science is tested in its
own file (test_implicit.py, test_van.py, test_shortcut.py)."""

from __future__ import annotations

import json
import re

import pytest
from params_helpers import with_preset

from iterconv.cli import main
from iterconv.families.registry import FAMILY_MODULES, expand_families, family, family_figures
from iterconv.pipeline.grid import ParamsError
from iterconv.pipeline.validate import validate_params


def test_every_preset_expands_its_families():
    for preset in ("micro", "demo", "paper"):
        jobs = expand_families(with_preset(preset))
        assert set(jobs) == set(FAMILY_MODULES), preset
        for name, by_id in jobs.items():
            assert by_id and all(j.family == name for j in by_id.values())
            for job_id, job in by_id.items():
                assert job.job_id == job_id and json.loads(json.dumps(job.config)) == job.config


def test_figure_names_are_unique_and_prefixed():
    figures = family_figures()
    for fig, (name, caption) in figures.items():  # the figure command relies on the prefix
        assert fig.startswith(f"{name}_") and caption.strip()
    assert not set(figures) & {"fig1", "fig2", "fig_variants"}


def families_of(preset: str, **families) -> dict:
    params = with_preset(preset)
    params["presets"][preset]["families"] = families
    return params


@pytest.mark.parametrize(
    "families, key",
    [
        ({"resnet": {}}, "presets.micro.families.resnet: unknown family"),
        ({"van": []}, "presets.micro.families.van: must be a mapping"),
        ({"van": {"datasets": ["nope"]}}, "dataset 'nope' is not one of"),
        ({"van": {"datasets": ["van_micro_digits"], "depth": [1]}}, "presets.micro.families.van"),
    ],
)
def test_invalid_family_sections_name_the_key(families, key):
    with pytest.raises(ParamsError, match=re.escape(key)):
        expand_families(families_of("micro", **families))
    # the whole validation (the schema may speak first) names the section too
    with pytest.raises(ValueError, match=r"presets\.micro\.families"):
        validate_params(families_of("micro", **families))


@pytest.fixture(scope="module")
def van_tables(tmp_path_factory):
    """Two finished van jobs of the micro spec, collected into tables (seconds)."""
    tmp = tmp_path_factory.mktemp("families")
    spec = with_preset("micro")["datasets"]["van_micro_digits"]
    data = tmp / "data"
    assert main(["digitclutter", "--out", str(data), "--n-digits", "1", "--n-train", "64",
                 "--n-val", "32", "--seed", str(spec["seed"]), "--workers", "1"]) == 0  # fmt: skip
    jobs = family("van").expand(
        {"datasets": ["van_micro_digits"], "depths": [1, 3], "seeds": [0], "epochs": 1}
    )
    results = []
    for job_id, config in jobs.items():
        out = tmp / "jobs" / job_id
        argv = ["family-run", "van", "--config-json", json.dumps(config), "--out", str(out)]
        assert main([*argv, "--data", f"van_micro_digits={data}"]) == 0
        results.append(str(out / "result.json"))
    tables = tmp / "tables"
    assert main(["family-collect", "van", "--results", *results, "--tables-dir", str(tables)]) == 0
    return tmp, results, tables


def test_collect_writes_tables_and_replaces_them_whole(van_tables):
    tmp, results, tables = van_tables
    names = sorted(p.name for p in tables.glob("*.csv"))
    assert names == ["epochs.csv", "final.csv"]
    assert all((tables / n).stat().st_size > 0 for n in names)
    final = (tables / "final.csv").read_bytes()
    (tables / "final.csv").write_text("x\n1\n")  # the command's own outputs are rewritten
    (tables / "inputs-old.json").write_text("{}\n")  # an earlier stamp: must disappear
    stamp = tables / "inputs-new.json"
    argv = ["family-collect", "van", "--results", *results, "--tables-dir", str(tables)]
    assert main([*argv, "--stamp", str(stamp)]) == 0
    assert sorted(p.name for p in tables.iterdir()) == [*names, "inputs-new.json"]
    assert (tables / "final.csv").read_bytes() == final
    assert json.loads(stamp.read_text()) == {"inputs": sorted(results)}
    assert not list(tmp.glob(".tables.*"))  # no temporary directory left behind
    stamp.unlink()


def snapshot(directory):
    return {p.name: (None if p.is_dir() else p.read_bytes()) for p in directory.iterdir()}


@pytest.mark.parametrize("foreign", ["notes.txt", "figures"], ids=["file", "directory"])
def test_collect_refuses_a_directory_holding_other_files(van_tables, tmp_path, capsys, foreign):
    _tmp, results, _tables = van_tables
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "final.csv").write_text("someone else's table\n")
    (docs / foreign).mkdir() if foreign == "figures" else (docs / foreign).write_text("mine\n")
    before = snapshot(docs)
    argv = ["family-collect", "van", "--results", *results, "--tables-dir", str(docs)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(foreign) in err and str(docs) in err, err
    assert snapshot(docs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]  # no temporary directory


@pytest.mark.parametrize(
    "stamp, message",
    [("{t}/inputs-x.json", "directly inside --tables-dir"), ("{d}/x.json", "inputs-*.json")],
)
def test_collect_refuses_a_misplaced_stamp(van_tables, tmp_path, capsys, stamp, message):
    _tmp, results, _tables = van_tables
    out = tmp_path / "tables"
    stamp = stamp.replace("{t}", str(tmp_path)).replace("{d}", str(out))
    argv = ["family-collect", "van", "--results", *results, "--tables-dir", str(out)]
    assert main([*argv, "--stamp", stamp]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_corrupt_result_keeps_the_old_tables(van_tables, capsys):
    tmp, results, tables = van_tables
    before = {p.name: p.read_bytes() for p in tables.glob("*.csv")}
    broken = tmp / "broken" / "result.json"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text('{"truncated": ')
    argv = ["family-collect", "van", "--results", *results, str(broken)]
    assert main([*argv, "--tables-dir", str(tables)]) == 2
    assert "is corrupt" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tables.glob("*.csv")} == before


def test_family_figure_and_claims_from_the_tables(van_tables):
    tmp, _results, tables = van_tables
    for fig in (f for f, (name, _c) in family_figures().items() if name == "van"):
        out = tmp / "figures" / f"{fig}.png"
        assert main(["figure", fig, "--tables-dir", str(tables), "--out", str(out)]) == 0
        assert out.stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
        assert out.with_suffix(".caption.txt").read_text().strip()
    runs = tmp / "runs.csv"
    runs.write_text("run_id,dataset,variant,width,coupling,init,seed,val_error\n")
    md, js = tmp / "claims.md", tmp / "claims.json"
    argv = ["claims", "--runs", str(runs), "--out", str(md), "--out-json", str(js)]
    assert main([*argv, "--family", f"van={tables}"]) == 0
    assert f"# {family('van').TITLE}" in md.read_text()
    ids = {r["id"] for r in json.loads(js.read_text())}
    assert {c.id for c in family("van").claims(_load(tables), _rng())} <= ids


def _load(tables):
    from iterconv.families.cli import load_family_tables

    return load_family_tables(tables)


def _rng():
    import numpy as np

    return np.random.default_rng(0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["family-run", "van", "--config-json", "{x", "--out", "{t}/j"], "not valid JSON"),
        (["family-run", "van", "--config-json", "[]", "--out", "{t}/j"], "JSON object"),
        (
            ["family-run", "van", "--config-json", "{}", "--out", "{t}/j", "--data", "x"],
            "NAME=DIR",
        ),
        (
            ["family-collect", "van", "--results", "{t}/no/result.json", "--tables-dir", "{t}/t"],
            "missing job result",
        ),
        (["figure", "van_depth", "--tables-dir", "{t}/none", "--out", "{t}/f.png"], "not found"),
        (["claims", "--runs", "{t}/r.csv", "--family", "resnet={t}"], "NAME=DIR"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "r.csv").write_text("run_id,dataset,variant,width,coupling,init,seed,val_error\n")
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_job_without_its_dataset_is_refused(tmp_path, capsys):
    spec = {"datasets": ["van_micro_digits"], "depths": [1], "seeds": [0], "archs": ["van"]}
    (config,) = family("van").expand(spec).values()
    argv = ["family-run", "van", "--config-json", json.dumps(config), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--data NAME=DIR" in capsys.readouterr().err
    assert not (tmp_path / "result.json").exists()
