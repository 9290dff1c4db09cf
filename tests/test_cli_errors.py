"""Every command given a wrong path, an unparsable run or configuration, or an output it cannot
write fails with one line on stderr and status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_tables import fake_tables
from test_pipeline import ROOT, iterconv_env

from iterconv.cli import main
from iterconv.io import sha256

CONFIG = json.dumps({"dataset": "x", "width": 4, "stages": 2, "blocks": 2, "epochs": 1})


@pytest.fixture
def places(tmp_path):
    """A regular file (nothing can be created below it) and a run directory without a model."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    (tmp_path / "runs" / "not-a-run").mkdir(parents=True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    return tmp_path


CASES = {
    # train
    "train-missing-data": (
        ["train", "--config-json", CONFIG, "--data", "{t}/nope", "--out", "{t}/run"],
        "prepared dataset not found",
    ),
    "train-incomplete-data": (
        ["train", "--config-json", CONFIG, "--data", "{t}/data", "--out", "{t}/run"],
        "incomplete",
    ),
    "train-config-missing": (
        ["train", "--config", "{t}/nope.json", "--data", "{t}/data", "--out", "{t}/run"],
        "configuration file not found",
    ),
    "train-config-not-json": (
        ["train", "--config-json", "{width: 4", "--data", "{t}/data", "--out", "{t}/run"],
        "not valid JSON",
    ),
    "train-config-unknown-key": (
        ["train", "--config-json", '{"widht": 4}', "--data", "{t}/data", "--out", "{t}/run"],
        "unknown run configuration keys",
    ),
    "train-out-unwritable": (
        ["train", "--config-json", CONFIG, "--data", "{t}/data", "--out", "{t}/file/run"],
        "cannot write to output directory",
    ),
    "train-bad-device": (
        [
            "train",
            "--config-json",
            CONFIG,
            "--data",
            "{t}/nope",
            "--out",
            "{t}/r",
            "--device",
            "gpu",
        ],
        "invalid --device 'gpu'",
    ),
    "train-negative-threads": (
        ["train", "--config-json", CONFIG, "--data", "{t}/d", "--out", "{t}/r", "--threads", "-1"],
        "--threads",
    ),
    # analyses: a run id that names no trained run, unwritable outputs
    "indices-unknown-run": (
        ["indices", "--run", "{t}/runs/not-a-run", "--data", "{t}/data", "--out", "{t}/i.json"],
        "no checkpoint",
    ),
    "toy-out-unwritable": (["toy", "--out", "{t}/file/toy"], ""),
    # data
    "digitclutter-out-unwritable": (
        ["digitclutter", "--out", "{t}/file/d", "--n-train", "8", "--n-val", "4"],
        "",
    ),
    "prepare-missing-archives": (
        ["prepare", "--dataset", "mnist", "--out", "{t}/m", "--archives", "{t}/nope"],
        "",
    ),
    # figures, report, pipeline
    "figure-missing-tables": (
        ["figure", "fig3", "--tables-dir", "{t}/nope", "--out", "{t}/f.png"],
        "",
    ),
    "figure-unknown-name": (["figure", "fig99", "--out", "{t}/f.png"], ""),
    "claims-missing-tables": (["claims", "--runs", "{t}/nope.csv", "--stages", "{t}/n.csv"], ""),
    "check-params-missing": (["check-params", "{t}/nope.yaml"], ""),
    "runs-missing-params": (["runs", "{t}/nope.yaml"], ""),
    "collect-missing-metrics": (
        [
            "collect",
            "--metrics",
            "{t}/nope/metrics.json",
            "--indices",
            "{t}/nope.json",
            "--tables-dir",
            "{t}/tables",
            "--summary",
            "{t}/summary.json",
        ],
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_and_status_2(case, places, capsys):
    argv, message = CASES[case]
    argv = [a.replace("{t}", str(places)) for a in argv]
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"iterconv {argv[0]}: error: ") and message in err, err


def test_no_traceback_from_a_real_process(tmp_path):
    """The same through ``python -m iterconv``: one line, status 2, nothing else."""
    cmd = [sys.executable, "-m", "iterconv", "indices", "--run", "results/runs/x-y-z"]
    cmd += ["--data", "results/data/d", "--out", "o", "--device", "cpu"]
    result = subprocess.run(
        cmd, cwd=tmp_path, env=iterconv_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and ROOT.exists()


# --- bad input on the command line: one line, status 2, nothing changed -----------------------


def snapshot(root: Path) -> dict[str, str]:
    """The sha256 of every file under ``root`` (directories as "dir"), by relative path."""
    return {
        str(p.relative_to(root)): sha256(p) if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def world(tmp_path):
    """Earlier outputs that a refused command must leave byte-identical: the tables and claims
    of a good ``claims`` run, a prepared dataset, and the paths of the cases below."""
    tables = fake_tables(preset="demo", seeds=2)
    for name in ("runs", "stages"):
        tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
    text = (tmp_path / "runs.csv").read_text()
    (tmp_path / "truncated.csv").write_text(text[: len(text) // 2])
    (tmp_path / "cut-at-a-line.csv").write_text(text[: text.index("\n", len(text) // 2)])
    (tmp_path / "empty.csv").write_text("")
    claims = ["claims", "--out", "{t}/claims.md", "--out-json", "{t}/claims.json"]
    argv = [*claims, "--runs", "{t}/runs.csv", "--stages", "{t}/stages.csv"]
    assert main([a.replace("{t}", str(tmp_path)) for a in argv]) == 0
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text('{"name": "mnist"}\n')
    (data / "train.npz").write_bytes(b"earlier output")
    (tmp_path / "list.json").write_text("[1, 2]\n")
    return tmp_path


def van_job() -> str:
    from iterconv.families.registry import family

    spec = {"datasets": ["van_micro_digits"], "depths": [1], "seeds": [0], "archs": ["van"]}
    (config,) = family("van").expand(spec).values()
    return json.dumps(config)


TRAIN = ["train", "--data", "{t}/data", "--out", "{t}/run"]
CLAIMS = ["claims", "--out", "{t}/claims.md", "--out-json", "{t}/claims.json"]
INDICES = ["indices", "--run", "{t}/run", "--data", "{t}/data", "--out", "{t}/i.json"]
ARCHIVES = ["--archives", "{t}/no-archives", "--out", "{t}/data"]
DOWNLOAD = ["download: true", "params.yaml", "--config download=true", "--download"]
REFUSED = {
    # devices that do not exist
    "train-device-gpu": ([*TRAIN, "--config-json", CONFIG, "--device", "gpu"], ["'gpu'"]),
    "train-device-cuda7": (
        [*TRAIN, "--config-json", CONFIG, "--device", "cuda:7"],
        ["--device cuda:7", "GPU"],
    ),
    "indices-device-gpu": ([*INDICES, "--device", "gpu"], ["invalid --device 'gpu'"]),
    "indices-device-cuda7": ([*INDICES, "--device", "cuda:7"], ["--device cuda:7", "GPU"]),
    "family-run-device-gpu": (
        ["family-run", "shortcut", "--config-json", "{}", "--out", "{t}/j", "--device", "gpu"],
        ["invalid --device 'gpu'"],
    ),
    "family-run-device-cuda7": (
        ["family-run", "van", "--config-json", "VAN", "--out", "{t}/j", "--device", "cuda:7"],
        ["--device cuda:7", "GPU"],
    ),
    # claims pointed at the wrong table
    "claims-runs-is-stages": (
        [*CLAIMS, "--runs", "{t}/stages.csv", "--stages", "{t}/stages.csv"],
        ["stages.csv lacks columns val_error", "is it the stages table?"],
    ),
    "claims-stages-is-runs": (
        [*CLAIMS, "--runs", "{t}/runs.csv", "--stages", "{t}/runs.csv"],
        ["runs.csv lacks columns stage", "is it the runs table?"],
    ),
    "claims-runs-truncated": (
        [*CLAIMS, "--runs", "{t}/truncated.csv", "--stages", "{t}/stages.csv"],
        ["truncated.csv is truncated", "rebuild the tables"],
    ),
    "claims-runs-cut-at-a-line": (
        [*CLAIMS, "--runs", "{t}/cut-at-a-line.csv", "--stages", "{t}/stages.csv"],
        ["is truncated (its last line is incomplete)"],
    ),
    "claims-runs-empty": ([*CLAIMS, "--runs", "{t}/empty.csv"], ["empty.csv is empty"]),
    "claims-stages-is-a-directory": (
        [*CLAIMS, "--runs", "{t}/runs.csv", "--stages", "{t}/data"],
        ["stages table", "is not a file"],
    ),
    # family jobs that are not an object, empty, or not a job of the family
    "family-run-empty": (
        ["family-run", "van", "--config-json", "{}", "--out", "{t}/j"],
        ["--config-json is empty", "van job"],
    ),
    "family-run-list": (
        ["family-run", "implicit", "--config-json", "[]", "--out", "{t}/j"],
        ["JSON object"],
    ),
    "family-run-missing-keys": (
        ["family-run", "van", "--config-json", '{"dataset": "mnist"}', "--out", "{t}/j"],
        ["not a valid van job", "missing keys ['arch', 'depth', 'seeds']"],
    ),
    "family-run-bad-value": (
        [
            "family-run",
            "shortcut",
            "--config-json",
            '{"kind": "table", "k": 16, "method": "ssw", "trials": 0}',
            "--out",
            "{t}/j",
        ],
        ["not a valid shortcut job", "trials", ">= 1"],
    ),
    "family-run-unknown-example": (
        [
            "family-run",
            "implicit",
            "--config-json",
            '{"example": "cubes", "theta": 0, "depth": 1, "seed": 0}',
            "--out",
            "{t}/j",
        ],
        ["not a valid implicit job", "unknown example"],
    ),
    # training configurations that are not a JSON object
    "train-config-list": ([*TRAIN, "--config-json", "[]"], ["must hold a JSON object", "list"]),
    "train-config-number": ([*TRAIN, "--config-json", "5"], ["must hold a JSON object", "int"]),
    "train-config-file-list": (
        [*TRAIN, "--config", "{t}/list.json"],
        ["list.json must hold a JSON object"],
    ),
    # options that are not numbers
    "digitclutter-n-digits-range": (
        ["digitclutter", "--out", "{t}/dc", "--n-digits", "2-x"],
        ["--n-digits", "'2-x'", "range (2-5)"],
    ),
    "digitclutter-n-digits-word": (
        ["digitclutter", "--out", "{t}/dc", "--n-digits", "three"],
        ["--n-digits", "'three'"],
    ),
    # a missing archive: what to set, in every way the preparation is started
    "prepare-mnist-no-archive": (
        ["prepare", "--dataset", "mnist", *ARCHIVES],
        ["train-images-idx3-ubyte.gz not found", *DOWNLOAD],
    ),
    "prepare-cifar10-no-archive": (
        ["prepare", "--dataset", "cifar10", *ARCHIVES],
        ["cifar-10-python.tar.gz not found", *DOWNLOAD],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_one_line_and_nothing_changed(case, world, capsys):
    argv, words = REFUSED[case]
    argv = [a.replace("{t}", str(world)).replace("VAN", van_job()) for a in argv]
    before = snapshot(world)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"iterconv {argv[0]}: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert snapshot(world) == before


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["digitclutter", "--out", "{t}/dc", "--n-train", "many"], ["--n-train", "'many'"]),
        (["claims", "--seed", "x", "--runs", "{t}/runs.csv"], ["--seed", "'x'"]),
        (["indices", "--run", "{t}/run", "--data", "{t}/data"], ["required", "--out"]),
    ],
    ids=["int-option", "another-int-option", "missing-option"],
)
def test_argument_errors_are_one_line_too(argv, words, world, capsys):
    argv = [a.replace("{t}", str(world)) for a in argv]
    before = snapshot(world)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"iterconv {argv[0]}: error: "), err
    assert all(word in err for word in words) and f"iterconv {argv[0]} --help" in err, err
    assert snapshot(world) == before
