"""``iterconv collect``: aggregates JSON only (no torch, no checkpoint), refuses bad inputs and
foreign directories before writing, replaces the tables directory whole."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_train import CPU, quiet, synthetic, tiny_config

from iterconv.analysis.epc import effective_parameter_count
from iterconv.analysis.indices import read_indices
from iterconv.cli import main
from iterconv.data.store import write_prepared
from iterconv.train.checkpoint import load_run_model
from iterconv.train.loop import train_run

RUNS = {"tiny-a": dict(coupling=0.0, seed=1), "tiny-b": dict(coupling=0.5, seed=2)}
TABLES = ["curves.csv", "history.csv", "runs.csv", "stages.csv"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny trained runs and their indices files, made by the real commands (seconds)."""
    root = tmp_path_factory.mktemp("grid")
    data = synthetic(n_train=64, n_val=32)
    write_prepared(
        root / "data",
        train={"x": data.train_x.numpy(), "y": data.train_y.numpy()},
        val={"x": data.val_x.numpy(), "y": data.val_y.numpy()},
        name="synthetic",
        source="synthetic",
        num_classes=4,
        multilabel=False,
        augment="none",
        params={},
    )
    for name, kw in RUNS.items():
        run = root / "runs" / name
        train_run(tiny_config(epochs=1, **kw), data, run, CPU, log=quiet)
        out = root / "indices" / f"{name}.json"
        argv = ["indices", "--run", str(run), "--data", str(root / "data"), "--out", str(out)]
        assert main([*argv, "--extra", "2", "--device", "cpu"]) == 0
    return root


@pytest.fixture
def grid(trained, tmp_path):
    """A copy of the runs' JSON and CSV inputs only (no checkpoint) and a collect command."""
    for name in RUNS:
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        for f in ("metrics.json", "history.csv"):
            shutil.copy(trained / "runs" / name / f, run / f)
        (tmp_path / "analysis").mkdir(exist_ok=True)
        shutil.copy(trained / "indices" / f"{name}.json", tmp_path / "analysis" / f"{name}.json")
    metrics = [str(tmp_path / "runs" / n / "metrics.json") for n in RUNS]
    indices = [str(tmp_path / "analysis" / f"{n}.json") for n in RUNS]
    argv = ["collect", "--metrics", *metrics, "--indices", *indices]
    argv += ["--tables-dir", str(tmp_path / "tables"), "--summary", str(tmp_path / "summary.json")]
    return tmp_path, argv


def outputs(root: Path) -> dict[str, bytes | None]:
    """The tables directory's entries and the summary, byte for byte (directories as None)."""
    paths = [*(root / "tables").glob("*"), root / "summary.json"]
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in paths
        if p.exists()
    }


def test_tables_take_epc_and_indices_from_the_json(grid, trained, capsys):
    root, argv = grid
    assert main(argv) == 0
    assert sorted(p.name for p in (root / "tables").iterdir()) == TABLES
    runs = pd.read_csv(root / "tables" / "runs.csv").set_index("run_id")
    stages = pd.read_csv(root / "tables" / "stages.csv")
    for name in RUNS:
        model, _ = load_run_model(trained / "runs" / name / "best.pt")
        epc = effective_parameter_count(model)
        indices = read_indices(root / "analysis" / f"{name}.json")
        assert runs.loc[name, "epc"] == pytest.approx(epc["epc"], rel=1e-12)
        assert runs.loc[name, "parameters"] == epc["raw"]
        assert runs.loc[name, "recurrent_parameters"] == epc["recurrent"]
        assert runs.loc[name, "chance_error"] == pytest.approx(indices["chance_error"])
        dev = stages[stages["run_id"] == name]["deviation"].tolist()
        assert dev == pytest.approx([s["mean_abs_deviation"] for s in epc["stages"]])
    assert runs.loc["tiny-b", "coupling"] == 0.5 and "coupling" in stages
    curves = pd.read_csv(root / "tables" / "curves.csv")
    assert len(curves) == 2 * 2 * (2 + 2 + 2)  # runs x stages x (readout B + dropout B + J)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["best_val_error"] <= summary["val_error"]
    groups = [k for k in summary if "/" in k]
    assert groups == ["synthetic/standard"]  # one group per dataset and block type
    group = summary["synthetic/standard"]
    assert group == {k: summary[k] for k in ("runs", "val_error", "CI", "DI")}
    assert "collected 2 runs" in capsys.readouterr().out


def test_runs_may_be_given_by_name_and_directories(grid):
    root, argv = grid
    stamp = root / "tables" / "inputs-a.json"
    assert main([*argv, "--stamp", str(stamp)]) == 0
    by_path = outputs(root)
    shutil.rmtree(root / "tables")
    (root / "summary.json").unlink()
    argv = ["collect", "--runs", *RUNS, "--runs-dir", str(root / "runs")]
    argv += ["--indices-dir", str(root / "analysis"), "--tables-dir", str(root / "tables")]
    assert main([*argv, "--summary", str(root / "summary.json"), "--stamp", str(stamp)]) == 0
    assert outputs(root) == by_path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runs", "tiny-a"], "--runs, --runs-dir and --indices-dir go together"),
        (["--metrics", "m.json"], "--metrics and --indices go together"),
        (["--runs", "a/b", "--runs-dir", "r", "--indices-dir", "i"], "run directory names"),
        ([], "give either"),
    ],
)
def test_inputs_are_given_one_way(tmp_path, capsys, argv, message):
    outs = ["--tables-dir", str(tmp_path / "t"), "--summary", str(tmp_path / "s.json")]
    assert main(["collect", *argv, *outs]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not any(tmp_path.iterdir())


def test_collect_never_imports_torch(grid):
    root, argv = grid
    code = (
        "import sys; from iterconv.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (root / "tables" / "runs.csv").is_file()


def test_the_stamp_lists_the_inputs_and_a_rerun_replaces_it(grid):
    root, argv = grid
    old = root / "tables" / "inputs-old.json"
    assert main([*argv, "--stamp", str(old)]) == 0
    stamp = root / "tables" / "inputs-new.json"
    assert main([*argv, "--stamp", str(stamp)]) == 0
    names = sorted(p.name for p in (root / "tables").iterdir())
    assert names == sorted([*TABLES, "inputs-new.json"])
    given = [a for a in argv[1 : argv.index("--tables-dir")] if not a.startswith("--")]
    assert json.loads(stamp.read_text()) == {"inputs": sorted(given)}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_epc(path: Path) -> None:  # an index file written before EPC was part of it
    obj = json.loads(path.read_text())
    del obj["epc"]
    path.write_text(json.dumps(obj))


def garble(path: Path) -> None:
    path.write_bytes(b"\x00\xff" + path.read_bytes()[2:])


@pytest.mark.parametrize(
    "file, damage, message",
    [
        ("analysis/tiny-b.json", truncate, "is truncated or corrupt"),
        ("analysis/tiny-a.json", drop_epc, "no key 'epc'"),
        ("runs/tiny-a/metrics.json", garble, "is truncated or corrupt"),
        ("runs/tiny-b/history.csv", truncate, "does not match its sha256"),
    ],
    ids=["indices-truncated", "indices-without-epc", "metrics-corrupt", "history-truncated"],
)
def test_a_bad_input_fails_with_one_line_and_writes_nothing(grid, capsys, file, damage, message):
    root, argv = grid
    assert main(argv) == 0
    before = outputs(root)
    damage(root / file)
    capsys.readouterr()
    assert main([*argv, "--stamp", str(root / "tables" / "inputs-x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("iterconv collect: error: "), err
    assert str(root / file) in err and message in err and "delete" in err, err
    assert outputs(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["analysis", "runs", "summary.json", "tables"]


def test_an_index_file_of_the_previous_schema_is_refused(grid, capsys):
    root, argv = grid
    path = root / "analysis" / "tiny-a.json"
    obj = json.loads(path.read_text())
    path.write_text(json.dumps({**obj, "schema": "iterconv.indices/1"}))
    assert main(argv) == 2
    assert "rerun its analysis job" in capsys.readouterr().err
    assert not (root / "tables").exists() and not (root / "summary.json").exists()


@pytest.mark.parametrize("foreign", ["README.md", "sub"], ids=["file", "directory"])
def test_a_tables_dir_with_foreign_entries_is_refused_untouched(grid, capsys, foreign):
    root, argv = grid
    assert main(argv) == 0
    tables = root / "tables"
    (tables / foreign).mkdir() if foreign == "sub" else (tables / foreign).write_text("mine\n")
    before = outputs(root)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(foreign) in err and str(tables) in err, err
    assert outputs(root) == before and (tables / foreign).exists()


def test_a_tables_dir_that_is_a_file_is_refused(grid, capsys):
    root, argv = grid
    target = root / "docs"
    target.write_text("not a directory\n")
    argv = [*argv[: argv.index("--tables-dir")], "--tables-dir", str(target), *argv[-2:]]
    assert main(argv) == 2
    assert "not a directory" in capsys.readouterr().err
    assert target.read_text() == "not a directory\n" and not (root / "summary.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stamp", "{t}/inputs-x.json"], "directly inside --tables-dir"),
        (["--stamp", "{t}/tables/sub/inputs-x.json"], "directly inside --tables-dir"),
        (["--stamp", "{t}/tables/stamp.json"], "must match inputs-*.json"),
    ],
)
def test_bad_output_paths_are_refused(grid, capsys, extra, message):
    root, argv = grid
    assert main([*argv, *[a.replace("{t}", str(root)) for a in extra]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (root / "tables").exists() and not (root / "summary.json").exists()


def test_a_summary_inside_the_tables_dir_is_refused(grid, capsys):
    root, argv = grid
    argv = [*argv[:-1], str(root / "tables" / "summary.json")]
    assert main(argv) == 2
    assert "--summary" in capsys.readouterr().err and not (root / "tables").exists()


def test_a_run_without_its_index_file_is_named(grid, capsys):
    _root, argv = grid
    i = argv.index("--indices")
    argv = [*argv[: i + 1], *argv[i + 2 :]]  # tiny-a's index file left out
    assert main(argv) == 2
    assert "no indices file tiny-a.json" in capsys.readouterr().err


def test_nan_indices_come_through_as_empty_cells(grid):
    root, argv = grid
    path = root / "analysis" / "tiny-a.json"
    obj = json.loads(path.read_text())
    obj["network"]["CI"] = None
    obj["stages"][0]["CI"] = None
    path.write_text(json.dumps(obj))
    assert main(argv) == 0
    runs = pd.read_csv(root / "tables" / "runs.csv").set_index("run_id")
    stages = pd.read_csv(root / "tables" / "stages.csv")
    assert math.isnan(runs.loc["tiny-a", "CI"]) and not math.isnan(runs.loc["tiny-b", "CI"])
    assert math.isnan(stages.query("run_id == 'tiny-a' and stage == 1")["CI"].iloc[0])
