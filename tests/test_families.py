"""The experiment-family framework: validation of the `families` sections, the family CLI
(run, collect, figure, claims) and its failure modes. Each family's science is tested in its
own file (test_implicit.py, test_van.py, test_shortcut.py)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import yaml
from params_helpers import ROOT, with_preset

from iterconv.cli import main
from iterconv.families.cli import check_job_config
from iterconv.families.config import schema
from iterconv.families.registry import FAMILY_MODULES, Family, family, family_figures
from iterconv.pipeline.grid import ParamsError
from iterconv.pipeline.units import expand_families
from iterconv.pipeline.validate import SCHEMA, validate_params


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
        ({"van": []}, "presets.micro.families.van: [] is not allowed; must be a mapping"),
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


# --- typed configurations -------------------------------------------------------------------


def test_every_family_is_a_family_with_a_frozen_configuration():
    for name in FAMILY_MODULES:
        fam = family(name)
        assert isinstance(fam, Family) and name == fam.NAME
        assert dataclasses.is_dataclass(fam.CONFIG)
        assert fam.CONFIG.__dataclass_params__.frozen


def schema_sections() -> dict:
    """The families' sections of params.schema.yaml."""
    presets = yaml.safe_load(SCHEMA.read_text())["properties"]["presets"]
    return presets["additionalProperties"]["properties"]["families"]["properties"]


@pytest.mark.parametrize("name", list(FAMILY_MODULES))
def test_the_schema_describes_each_family_as_its_configuration_class(name):
    section = schema_sections()[name]
    expected = schema(family(name).CONFIG)
    fields = {f.name for f in dataclasses.fields(family(name).CONFIG)}
    assert set(section["properties"]) == fields
    dump = yaml.safe_dump(expected, sort_keys=False, width=100)
    assert {k: v for k, v in section.items() if k != "description"} == expected, (
        f"params.schema.yaml's families.{name} is not the schema of its configuration class; "
        f"it should read (besides its description):\n{dump}"
    )


def keys_of(section: dict, path: tuple = ()) -> dict[tuple, bool]:
    """Every key of a family's schema section, nested keys too: {path: whether it is a
    section of keys itself}."""
    out = {}
    for key, sub in section["properties"].items():
        out[(*path, key)] = "properties" in sub
        if "properties" in sub:
            out |= keys_of(sub, (*path, key))
    return out


KEYS = [(name, path) for name, section in schema_sections().items() for path in keys_of(section)]


@pytest.mark.parametrize(
    "name, path", KEYS, ids=[f"{name}.{'.'.join(path)}" for name, path in KEYS]
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(name, path):
    """The schema (before Snakemake builds anything) and the family's own parsing agree."""
    params = with_preset("micro")
    spec = params["presets"]["micro"]["families"][name]
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "text" if keys_of(schema_sections()[name])[path] else {"a": 1}
    key = ".".join(path)
    with pytest.raises(ParamsError, match=re.escape(f"presets.micro.families.{name}.{key}: ")):
        validate_params(params)
    with pytest.raises(ParamsError, match=re.escape(f"families.{name}.{key}: ")):
        family(name).expand(spec)


def test_identical_configurations_share_an_address():
    """Defaults written out, or 1 written for 1.0, give the same jobs at the same addresses; a
    changed setting gives new addresses to its family's jobs only."""

    def addresses(params):
        return {
            name: sorted(job.address for job in jobs.values())
            for name, jobs in expand_families(params).items()
        }

    def defaults(cls):
        props = schema(cls)["properties"].items()
        return {key: prop["default"] for key, prop in props if "default" in prop}

    params = with_preset("demo")
    before = addresses(params)
    specs = params["presets"]["demo"]["families"]
    specs["van"] = {**defaults(family("van").CONFIG), **specs["van"]}
    specs["shortcut"] = {**specs["shortcut"], "a_norm": 1, "eta": 0.1}
    function = specs["implicit"]["function"]
    specs["implicit"]["function"] = {**defaults(family("implicit").FunctionSpec), **function}
    assert addresses(params) == before
    specs["van"]["lr"] = 0.02
    after = addresses(params)
    assert not set(after["van"]) & set(before["van"])
    assert {k: v for k, v in after.items() if k != "van"} == {
        k: v for k, v in before.items() if k != "van"
    }


@pytest.mark.parametrize("name", list(FAMILY_MODULES))
def test_family_run_accepts_every_job_of_every_preset(name):
    for preset in ("micro", "demo", "paper"):
        for job in expand_families(with_preset(preset))[name].values():
            assert check_job_config(name, family(name), job.config) == job.config


DROP = object()  # a key left out of the job


@pytest.mark.parametrize(
    "name, change, message",
    [
        (
            "van",
            {"depthz": 3},
            "--config-json.depthz: unknown key (did you mean 'depth'?); valid keys: alpha_init",
        ),
        ("van", {"arch": DROP}, "--config-json: missing keys ['arch']"),
        ("van", {"lr": "fast"}, "--config-json.lr: 'fast' is not allowed; must be a number > 0"),
        ("van", {"depth": 0}, "--config-json.depth: 0 is not allowed; must be an integer >= 1"),
        ("van", {"seeds": [0, True]}, "--config-json.seeds[1]: True is not allowed"),
        (
            "shortcut",
            {"kind": "tables"},
            "--config-json.kind: unknown kind 'tables'; must be one of table, path",
        ),
        ("shortcut", {"eta": 2.0}, "--config-json.eta: 2.0 makes GD on a diverge for k=9"),
        (
            "shortcut",
            {"tol": float("nan")},
            "--config-json.tol: nan is not allowed; must be finite",
        ),
        (
            "implicit",
            {"example": "spiral"},
            "--config-json.example: unknown example 'spiral'; must be one of function, spirals",
        ),
        ("implicit", {"noise": 0.1}, "--config-json.noise: unknown key"),  # a function job
    ],
)
def test_family_run_refuses_a_bad_job_naming_the_key(tmp_path, capsys, name, change, message):
    config = next(iter(expand_families(with_preset("micro"))[name].values())).config
    config = {k: v for k, v in {**config, **change}.items() if v is not DROP}
    out = tmp_path / "job"
    assert main(["family-run", name, "--config-json", json.dumps(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"not a valid {name} job: {message}" in err, err
    assert not out.exists()


def test_family_run_names_the_configuration_file(tmp_path, capsys):
    config = next(iter(expand_families(with_preset("micro"))["van"].values())).config
    path = tmp_path / "config.json"
    for text, message in (
        (json.dumps({**config, "lr": "fast"}), f"configuration file {path}.lr: 'fast'"),
        ("{", f"configuration file {path} is not valid JSON"),
        ("[]", f"configuration file {path} must hold a JSON object"),
    ):
        path.write_text(text)
        argv = ["family-run", "van", "--config", str(path), "--out", str(tmp_path / "job")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    missing = tmp_path / "absent.json"
    assert main(["family-run", "van", "--config", str(missing), "--out", str(tmp_path)]) == 2
    assert f"cannot read configuration file {missing}" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(FAMILY_MODULES))
def test_the_docs_table_lists_every_key(name):
    text = (ROOT / "docs" / f"{name}.md").read_text()
    table = re.search(r"^\| key \|.*?\n\n", text, re.M | re.S).group()
    rows = re.findall(r"^\| `(\w+)` \|", table, re.M)
    keys = keys_of(schema_sections()[name])  # sections of keys (implicit's examples): prose
    assert len(rows) == len(set(rows))
    assert set(rows) == {path[-1] for path, section in keys.items() if not section}


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
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps(config))  # as the workflow passes it
        argv = ["family-run", "van", "--config", str(out / "config.json"), "--out", str(out)]
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
