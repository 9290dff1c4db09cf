"""Every command given a wrong path, an unparsable run or configuration, or an output it cannot
write fails with one line on stderr and status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_pipeline import ROOT, iterconv_env

from iterconv.cli import main

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
    "epc-missing-run": (["epc", "--run", "{t}/runs/nope", "--out", "{t}/e.json"], "no checkpoint"),
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
    cmd = [sys.executable, "-m", "iterconv", "epc", "--run", "results/runs/x-y-z", "--out", "o"]
    result = subprocess.run(
        cmd, cwd=tmp_path, env=iterconv_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and ROOT.exists()
