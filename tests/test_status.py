"""``iterconv status``: the micro preset's grid read from fake run directories in every state."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from params_helpers import ROOT, with_preset

from iterconv.cli import main
from iterconv.pipeline.status import grid_status, parse_log, render, snakemake_started
from iterconv.pipeline.units import Units, preset_units
from iterconv.train import progress
from iterconv.train.loop import HISTORY_COLUMNS

PARAMS = ROOT / "params.yaml"
DIVERGED = (
    "iterconv train: error: training diverged at epoch 2 of 2, step 3 of 12 (lr 0.1): the "
    "training loss is not finite (nan or inf); nothing of this epoch was saved: lower lr or "
    "check the configuration"
)
HOUR = 3600.0


@pytest.fixture(scope="module")
def units() -> Units:
    return preset_units(with_preset("micro"))


# --- files in the formats iterconv.train.loop writes ------------------------------------------


def epoch_line(epoch: int, epochs: int, val_error: float, seconds: float) -> str:
    """An epoch line as train_run logs it."""
    return progress.epoch_line(
        progress.EpochProgress(epoch, epochs, 0.1, 2.0, 0.5, 2.0, val_error, seconds)
    )


def write_log(run_dir: Path, lines: list[str], age: float = 0.0) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    log.write_text("".join(line + "\n" for line in lines))
    when = time.time() - age
    os.utime(log, (when, when))


def write_done(run_dir: Path, epochs: int) -> None:
    """A finished run: log, history.csv, best.pt, metrics.json."""
    lines = [f"training epochs 1..{epochs} on cpu"]
    lines += [epoch_line(e, epochs, 0.8 - 0.1 * e, 1.5) for e in range(1, epochs + 1)]
    write_log(run_dir, lines)
    row = {c: 0.5 for c in HISTORY_COLUMNS}
    history = [",".join(HISTORY_COLUMNS)]
    history += [",".join(repr({**row, "epoch": e}[c]) for c in HISTORY_COLUMNS) for e in (1, 2)]
    (run_dir / "history.csv").write_text("\n".join(history) + "\n")
    (run_dir / "best.pt").write_bytes(b"checkpoint")
    (run_dir / "last.pt").write_bytes(b"checkpoint")
    metrics = {"best_epoch": epochs, "best_val_error": 0.6, "epochs": epochs}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def build_partly(results: Path, units: Units) -> dict[str, str]:
    """One run done, one failed, one running, one stopped, one pending: {state: address}."""
    addresses = list(units.runs)
    chosen = dict(zip(("done", "failed", "running", "stopped"), addresses, strict=False))
    chosen["pending"] = addresses[4]
    epochs = units.runs[chosen["running"]].config.epochs
    write_done(results / "runs" / chosen["done"], epochs)
    failed = results / "runs" / chosen["failed"]
    write_log(failed, ["training epochs 1..2 on cpu", epoch_line(1, 2, 0.9, 2.0), DIVERGED])
    (failed / "last.pt").write_bytes(b"checkpoint")
    running = results / "runs" / chosen["running"]
    write_log(running, ["training epochs 1..2 on cpu", epoch_line(1, epochs, 0.825, 30.0)])
    (running / "last.pt").write_bytes(b"checkpoint")
    stopped = results / "runs" / chosen["stopped"]
    write_log(stopped, ["training epochs 1..2 on cpu", epoch_line(1, 2, 0.9, 2.0)], age=HOUR)
    (stopped / "last.pt").write_bytes(b"checkpoint")
    os.utime(stopped / "last.pt", (time.time() - HOUR,) * 2)
    dataset = next(iter(units.datasets))
    (results / "data" / dataset).mkdir(parents=True)
    (results / "data" / dataset / "manifest.json").write_text("{}\n")
    index = results / "indices" / units.analysis / f"{chosen['done']}.json"
    index.parent.mkdir(parents=True)
    index.write_text("{}\n")
    family, jobs = next(iter(units.jobs.items()))
    job = results / "jobs" / family / next(iter(jobs)) / "result.json"
    job.parent.mkdir(parents=True)
    job.write_text("{}\n")
    return chosen


def build_complete(results: Path, units: Units) -> None:
    for address, run in units.runs.items():
        write_done(results / "runs" / address, run.config.epochs)
        index = results / "indices" / units.analysis / f"{address}.json"
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text("{}\n")
    for address in units.datasets:
        (results / "data" / address).mkdir(parents=True)
        (results / "data" / address / "manifest.json").write_text("{}\n")
    for family, jobs in units.jobs.items():
        for address in jobs:
            (results / "jobs" / family / address).mkdir(parents=True)
            (results / "jobs" / family / address / "result.json").write_text("{}\n")


def by_sweep(status) -> dict[str, dict[str, int]]:
    states = ("done", "running", "failed", "stopped", "pending")
    return {sweep: {s: status.count(s, sweep) for s in states} for sweep in status.sweeps}


# --- states ------------------------------------------------------------------------------------


def test_nothing_built(tmp_path: Path, units: Units) -> None:
    st = grid_status(units, tmp_path / "results")
    assert [r.state for r in st.runs] == ["pending"] * 5
    assert by_sweep(st) == {
        "micro": {"done": 0, "running": 0, "failed": 0, "stopped": 0, "pending": 4},
        "micro_variants": {"done": 0, "running": 0, "failed": 0, "stopped": 0, "pending": 1},
    }
    assert st.datasets == (0, 2) and st.analyses == (0, 5)
    assert st.families == {"implicit": (0, 6), "shortcut": (0, 14), "van": (0, 16)}


def test_partly_built(tmp_path: Path, units: Units) -> None:
    results = tmp_path / "results"
    chosen = build_partly(results, units)
    st = grid_status(units, results)
    states = {r.address: r for r in st.runs}
    assert {state: states[address].state for state, address in chosen.items()} == {
        s: s for s in chosen
    }
    assert by_sweep(st) == {
        "micro": {"done": 1, "running": 1, "failed": 1, "stopped": 1, "pending": 0},
        "micro_variants": {"done": 0, "running": 0, "failed": 0, "stopped": 0, "pending": 1},
    }
    assert states[chosen["failed"]].last_line == DIVERGED
    running = states[chosen["running"]].progress
    assert (running.epoch, running.epochs, running.val_error) == (1, 2, 0.825)
    assert running.mean_seconds == 30.0 and 0 < running.eta <= 30.0
    assert states[chosen["stopped"]].progress.epoch == 1
    assert st.datasets == (1, 2) and st.analyses == (1, 5)
    assert sum(done for done, _ in st.families.values()) == 1

    text = render(st, time.time())
    assert "total: 1/5 runs done, 1 running, 1 failed, 1 stopped, 1 pending" in text
    assert DIVERGED in text
    row = next(line for line in text.splitlines() if chosen["running"] in line)
    assert row.split()[1:3] == ["1/2", "82.5%"]


def test_complete(tmp_path: Path, units: Units) -> None:
    results = tmp_path / "results"
    build_complete(results, units)
    st = grid_status(units, results)
    assert [r.state for r in st.runs] == ["done"] * 5
    assert st.datasets == (2, 2) and st.analyses == (5, 5)
    assert all(done == total for done, total in st.families.values())


def test_unreadable_metrics_is_failed(tmp_path: Path, units: Units) -> None:
    address = next(iter(units.runs))
    (tmp_path / "runs" / address).mkdir(parents=True)
    (tmp_path / "runs" / address / "metrics.json").write_text("")
    assert grid_status(units, tmp_path).runs[0].state == "failed"


def test_snakemake_marker_means_running(tmp_path: Path, units: Units) -> None:
    """A stale log, or no file yet, counts as running while Snakemake holds the job."""
    results = tmp_path / "results"
    stale, queued = list(units.runs)[:2]
    write_log(results / "runs" / stale, [epoch_line(1, 2, 0.9, 2.0)], age=HOUR)
    meta = tmp_path / ".snakemake"
    (meta / "incomplete").mkdir(parents=True)
    for address in (stale, queued):
        key = f"results/runs/{address}/metrics.json"
        (meta / "incomplete" / base64.urlsafe_b64encode(key.encode()).decode()).write_text("{}")
    assert [r.state for r in grid_status(units, results).runs[:2]] == ["stopped", "pending"]
    (meta / "locks").mkdir()
    (meta / "locks" / "0.output.lock").write_text(f"results/runs/{stale}/metrics.json\n")
    assert len(snakemake_started(tmp_path)) == 2
    assert [r.state for r in grid_status(units, results).runs[:2]] == ["running", "running"]


def test_log_parsing() -> None:
    traceback = ["Traceback (most recent call last):", '  File "x.py"', "RuntimeError: boom"]
    retried = [epoch_line(1, 3, 0.9, 2.0), DIVERGED, "resuming after epoch 1 of 3"]
    log = parse_log(["training epochs 1..3 on cuda", epoch_line(1, 3, 0.9, 2.0), *traceback])
    assert log.failed and log.last_line == "RuntimeError: boom" and log.epoch == 1
    assert not parse_log(retried).failed
    assert parse_log([*retried, epoch_line(2, 3, 0.7, 4.0)]).seconds == [2.0, 4.0]
    interrupted = "iterconv train: stopped by SIGTERM during epoch 2 of 3; last.pt holds 1"
    assert not parse_log([epoch_line(1, 3, 0.9, 2.0), interrupted]).failed


# --- command line ------------------------------------------------------------------------------


def test_cli_prints_the_totals(tmp_path: Path, units: Units, capsys) -> None:
    results = tmp_path / "results"
    build_partly(results, units)
    args = ["status", str(PARAMS), "--preset", "micro", "--results", str(results)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "preset micro: 5 runs in 2 sweeps" in out
    assert "total: 1/5 runs done, 1 running, 1 failed, 1 stopped, 1 pending; 1/5 analyses" in out


def test_cli_invalid_preset(tmp_path: Path, capsys) -> None:
    args = ["status", str(PARAMS), "--preset", "nosuch", "--results", str(tmp_path)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("iterconv status: error:") and captured.err.count("\n") == 1


def test_watch_stops_on_interrupt(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    args = ["status", str(PARAMS), "--preset", "micro", "--results", str(tmp_path), "--watch", "5"]
    assert main(args) == 0
    assert "total: 0/5 runs done" in capsys.readouterr().out
