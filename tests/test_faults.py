"""Faults: training killed (SIGKILL) or stopped (SIGTERM) at random points, corrupt checkpoints
and datasets, two Snakemake invocations on one results directory. See docs/reliability.md."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_pipeline import iterconv_env, set_preset, workflow_copy
from test_train import CPU, quiet, synthetic, tiny_config

from iterconv.cli import COMMAND_MODULES, UserError, main
from iterconv.data.prepared import load_prepared
from iterconv.data.store import write_prepared
from iterconv.io import sha256
from iterconv.train.checkpoint import load_run_model
from iterconv.train.config import RunConfig
from iterconv.train.loop import (
    EXIT_INTERRUPTED,
    Interrupted,
    loss_fn,
    stop_on_sigterm,
    train_run,
)
from iterconv.train.progress import parse_epoch_line

CONFIG = dict(
    dataset="tiny",
    variant="icr",
    init="recurrent",
    coupling=0.5,
    width=4,
    stages=2,
    blocks=2,
    epochs=16,
    lr=0.05,
    milestones=[5],
    lr_factor=5,
    batch_size=16,
    seed=3,
)
TIMING = {"train_seconds", "session_seconds", "sha256"}  # sha256 covers history.csv's seconds


def write_tiny_dataset(path: Path) -> Path:
    """A prepared 8x8 four-class dataset (the synthetic() images of test_train) on disk."""
    data = synthetic(n_train=192, n_val=64, augment="crop_flip")
    write_prepared(
        path,
        train={"x": data.train_x.numpy(), "y": data.train_y.numpy()},
        val={"x": data.val_x.numpy(), "y": data.val_y.numpy()},
        name="tiny",
        source="synthetic",
        num_classes=4,
        multilabel=False,
        augment="crop_flip",
        params={},
    )
    return path


def train_argv(data: Path, out: Path) -> list[str]:
    return [
        "train",
        "--config-json",
        json.dumps(CONFIG),
        "--data",
        str(data),
        "--out",
        str(out),
        "--threads",
        "1",
        "--device",
        "cpu",
    ]


def _train_child(argv: list[str], log: str) -> None:
    """``python -m iterconv train ...`` in a process forked from a server that has imported
    torch already (a fresh interpreter costs ~4 s of imports per restart here)."""
    sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    sys.exit(main(argv))


def start_child(ctx, argv: list[str], log: Path):
    proc = ctx.Process(target=_train_child, args=(argv, str(log)))
    proc.start()
    return proc


def wait_for_line(log: Path, text: str, alive, timeout: float = 60) -> bool:
    """Wait until ``text`` is in ``log`` (True) or the process has ended (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and text in log.read_text():
            return True
        if not alive():
            return False
        time.sleep(0.01)
    raise TimeoutError(f"{text!r} not in {log}")


def epoch_seconds_of_session(log: Path, alive, timeout: float = 120) -> float | None:
    """Seconds of the first epoch this session completes (from its log line), or None when
    the process ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists():
            epochs = filter(None, map(parse_epoch_line, log.read_text().splitlines()))
            if first := next(epochs, None):
                return first.seconds
        if not alive():
            return None
        time.sleep(0.005)
    raise TimeoutError(f"no epoch completed in {log}")


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    # every subcommand module (main() builds the whole parser), so a child starts in ~0.1 s
    ctx.set_forkserver_preload(["iterconv.train.loop", *COMMAND_MODULES, "test_faults"])
    return ctx


@pytest.fixture(scope="module")
def reference(tmp_path_factory, forkserver):
    """An uninterrupted run in a child process (same thread setting as the killed ones)."""
    root = tmp_path_factory.mktemp("faults")
    data = write_tiny_dataset(root / "data")
    out = root / "straight"
    proc = start_child(forkserver, train_argv(data, out), root / "straight.log")
    proc.join(120)
    assert proc.exitcode == 0, (root / "straight.log").read_text()[-2000:]
    return data, out


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise-equal weights, optimizer state, history and metrics (timing fields excepted)."""
    for name in ("last.pt", "best.pt"):
        ca = torch.load(a / name, weights_only=False)
        cb = torch.load(b / name, weights_only=False)
        for key, value in ca["model"].items():
            assert torch.equal(value, cb["model"][key]), f"{name} {key}"
        assert ca["config"] == cb["config"]
        if ca["optimizer"] is not None:
            for pid, st in ca["optimizer"]["state"].items():
                for k, v in st.items():
                    assert torch.equal(v, cb["optimizer"]["state"][pid][k]), f"{name} {pid} {k}"
        sa, sb = ca["state"], cb["state"]
        if sa["history"] is not None:  # compared as JSON: NaN fields (alpha_residual) match

            def strip(history):
                return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in history])

            assert strip(sa["history"]) == strip(sb["history"])
        if sa["best_model"] is not None:
            for key, value in sa["best_model"].items():
                assert torch.equal(value, sb["best_model"][key]), f"{name} best {key}"
        assert (sa["epoch"], sa["best_epoch"], sa["best_error"]) == (
            sb["epoch"],
            sb["best_epoch"],
            sb["best_error"],
        )
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if k not in TIMING} == {
        k: v for k, v in mb.items() if k not in TIMING
    }
    ha = [line.rsplit(",", 1)[0] for line in (a / "history.csv").read_text().splitlines()]
    hb = [line.rsplit(",", 1)[0] for line in (b / "history.csv").read_text().splitlines()]
    assert ha == hb  # every column but seconds (the last)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bitwise_identical(tmp_path, reference, forkserver):
    data, straight = reference
    rng = random.Random(20240607)
    out, kills, sessions = tmp_path / "killed", [], 0
    while not (out / "metrics.json").exists():
        sessions += 1
        assert sessions < 60, "training does not progress between kills"
        log = tmp_path / f"session{sessions}.log"
        proc = start_child(forkserver, train_argv(data, out), log)
        seconds = epoch_seconds_of_session(log, proc.is_alive) if len(kills) < 12 else None
        if seconds is not None:
            # one epoch completes, then the kill lands at a random point of the next one
            # (batches, evaluation or checkpoint write): progress of one epoch per session,
            # whatever the machine's speed, so 12 kills land before the 16 epochs are done
            time.sleep(rng.uniform(0.05, 0.95) * seconds)
            if proc.is_alive():
                done = last_epoch(out)
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
                if proc.exitcode == -signal.SIGKILL and not (out / "metrics.json").exists():
                    kills.append(done)
        proc.join(120)
        assert proc.exitcode in (0, -signal.SIGKILL), log.read_text()[-2000:]
    assert len(kills) >= 10, kills  # each one landed after training had started, before its end
    assert len(set(kills)) >= 3, kills  # at different epochs
    assert "warning" not in "".join(p.read_text() for p in tmp_path.glob("session*.log"))
    assert_same_run(straight, out)


@pytest.mark.slow
def test_sigterm_saves_exits_75_and_resumes_identically(tmp_path, reference, forkserver):
    """A real ``python -m iterconv train`` process stopped by SIGTERM (a SLURM preemption)."""
    data, straight = reference
    out, log = tmp_path / "stopped", tmp_path / "stopped.log"
    cmd = [sys.executable, "-m", "iterconv", *train_argv(data, out)]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stderr=fh, env=iterconv_env())
        assert wait_for_line(log, "epoch 2/", lambda: proc.poll() is None)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == EXIT_INTERRUPTED == 75
    text = log.read_text()
    assert "Traceback" not in text
    assert "iterconv train: stopped by SIGTERM" in text.splitlines()[-1]
    assert not (out / "metrics.json").exists() and not (out / "best.pt").exists()
    done = torch.load(out / "last.pt", weights_only=False)["state"]["epoch"]
    assert 2 <= done < CONFIG["epochs"]
    proc = start_child(forkserver, train_argv(data, out), tmp_path / "resumed.log")
    proc.join(120)
    assert proc.exitcode == 0
    assert f"resuming after epoch {done} of" in (tmp_path / "resumed.log").read_text()
    assert_same_run(straight, out)


def test_sigterm_flag_abandons_the_epoch_and_writes_nothing(tmp_path, one_thread):
    cfg = tiny_config(epochs=3)
    train_run(cfg, synthetic(), tmp_path / "ref", CPU, log=quiet)

    def log(message):  # SIGTERM arrives while epoch 2 is about to start
        if message.startswith("epoch 1/"):
            os.kill(os.getpid(), signal.SIGTERM)

    with stop_on_sigterm() as stop:
        assert not stop()
        with pytest.raises(Interrupted, match=r"epoch 2 of 3; last\.pt holds 1 completed"):
            train_run(cfg, synthetic(), tmp_path / "run", CPU, log=log, stop=stop)
        assert stop()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]
    assert last_epoch(tmp_path / "run") == 1
    # mid-epoch: the partial epoch is abandoned, nothing is written
    with pytest.raises(Interrupted):
        train_run(cfg, synthetic(), tmp_path / "run", CPU, log=quiet, stop=lambda: True)
    assert last_epoch(tmp_path / "run") == 1
    train_run(cfg, synthetic(), tmp_path / "run", CPU, log=quiet)
    a, _ = load_run_model(tmp_path / "ref" / "best.pt")
    b, _ = load_run_model(tmp_path / "run" / "best.pt")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


@pytest.fixture
def one_thread():
    """In-process training on one thread (two threads on two shared cores crawl)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- corrupt checkpoints ---------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path, one_thread):
    run = tmp_path / "run0"
    train_run(tiny_config(epochs=2), synthetic(), run, CPU, log=quiet)
    return run


def flip_tensor_byte(path: Path) -> None:
    """Change one byte inside the stored weights (the zip stores tensors uncompressed)."""
    ckpt = torch.load(path, weights_only=False)
    _, tensor = next((k, v) for k, v in ckpt["model"].items() if v.numel() > 16)
    raw = bytes(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
    blob = bytearray(path.read_bytes())
    at = blob.index(raw) + 5
    blob[at] ^= 0x40
    path.write_bytes(bytes(blob))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [truncate, flip_tensor_byte], ids=["truncated", "bitflip"])
def test_corrupt_last_pt_is_reported_and_training_restarts(trained, damage):
    (trained / "metrics.json").unlink()
    damage(trained / "last.pt")
    messages = []
    train_run(tiny_config(epochs=2), synthetic(), trained, CPU, log=messages.append)
    assert any(m.startswith("warning: ignoring checkpoint") for m in messages), messages
    assert "training epochs 1..2 on cpu" in messages


def test_edited_checkpoint_without_valid_checksum_is_corrupt(trained):
    ckpt = torch.load(trained / "last.pt", weights_only=False)
    ckpt["state"]["best_error"] = 0.0  # any change to the content, not only to tensors
    torch.save(ckpt, trained / "last.pt")
    messages = []
    train_run(tiny_config(epochs=2), synthetic(), trained, CPU, log=messages.append)
    assert any("does not match its checksum" in m for m in messages), messages


@pytest.mark.parametrize("damage", [truncate, flip_tensor_byte], ids=["truncated", "bitflip"])
def test_corrupt_best_pt_stops_the_analysis_with_one_line(trained, damage, capsys, tmp_path):
    damage(trained / "best.pt")
    with pytest.raises(UserError, match=r"delete .*run0 and rerun"):
        load_run_model(trained / "best.pt")
    assert main(indices_argv(trained, tmp_path, tmp_path / "indices.json")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "best.pt" in err and "delete" in err
    assert not (tmp_path / "indices.json").exists()


def test_best_pt_swapped_for_another_checkpoint_fails_the_manifest(trained):
    (trained / "best.pt").write_bytes((trained / "last.pt").read_bytes())  # valid file, wrong one
    with pytest.raises(UserError, match=r"does not match its sha256 in metrics\.json"):
        load_run_model(trained / "best.pt")


def test_metrics_lists_checksums_usable_by_sha256sum(trained):
    listed = json.loads((trained / "metrics.json").read_text())["sha256"]
    assert set(listed) == {"best.pt", "history.csv"}
    from iterconv.io import sha256

    assert all(sha256(trained / name) == digest for name, digest in listed.items())


# --- corrupt datasets ------------------------------------------------------------------------


def flip_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def drop_manifest_files(path: Path) -> None:
    manifest = path.parent / "manifest.json"
    obj = json.loads(manifest.read_text())
    del obj["files"]
    manifest.write_text(json.dumps(obj))


@pytest.mark.parametrize(
    ("fname", "damage", "message"),
    [
        ("train.npz", flip_byte, "does not match its checksum"),
        ("val.npz", truncate, "does not match its checksum"),
        ("manifest.json", truncate, "manifest.json is corrupt"),
        ("train.npz", drop_manifest_files, "manifest.json is incomplete"),
    ],
    ids=["train-bitflip", "val-truncated", "manifest-truncated", "manifest-no-checksums"],
)
def test_corrupt_dataset_never_reaches_training(tmp_path, capsys, fname, damage, message):
    data = write_tiny_dataset(tmp_path / "data")
    damage(data / fname)
    out = tmp_path / "run"
    assert main(train_argv(data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "prepare it again" in err, err
    assert not (out / "last.pt").exists()


# --- bad runs and full disks: one line, status 2, the run directory unchanged -----------------


def snapshot(root: Path) -> dict[str, str]:
    """The sha256 of every file under ``root`` (directories as "dir"), by relative path."""
    return {
        str(p.relative_to(root)): sha256(p) if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def error_line(err: str, command: str) -> str:
    """The one line a failed command wrote: the last of stderr, the only one that is not
    progress (``iterconv train`` logs its epochs to stderr)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines[-1].startswith(f"iterconv {command}: error: "), err
    assert not any("error" in line.lower() for line in lines[:-1]), err
    return lines[-1]


def run_argv(data: Path, out: Path, **changes) -> list[str]:
    """``train_argv`` of a two-epoch run, with configuration changes."""
    argv = train_argv(data, out)
    argv[argv.index("--config-json") + 1] = json.dumps({**CONFIG, "epochs": 2, **changes})
    return argv


@pytest.fixture
def finished(tmp_path, one_thread):
    """A prepared dataset and a complete two-epoch run on it, made by ``iterconv train``."""
    data = write_tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(run_argv(data, out)) == 0
    return data, out


@pytest.fixture
def half_done(tmp_path, one_thread):
    """A three-epoch run stopped after its first epoch (``last.pt`` only), as a preemption
    leaves it."""
    data = write_tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    cfg = RunConfig.from_dict({**CONFIG, "epochs": 3})
    done = []
    with pytest.raises(Interrupted):
        log = lambda msg: done.append(msg.startswith("epoch 1/"))  # noqa: E731
        train_run(cfg, load_prepared(data), out, CPU, log=log, stop=lambda: any(done))
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"] and last_epoch(out) == 1
    return data, out


def test_diverging_run_stops_at_the_first_nonfinite_loss_and_keeps_the_run(finished, capsys):
    data, out = finished
    capsys.readouterr()
    before = snapshot(out)
    # another configuration in the same directory: training restarts, and diverges in epoch 1
    assert main(run_argv(data, out, lr=1e6)) == 2
    line = error_line(capsys.readouterr().err, "train")
    assert re.search(r"diverged at epoch 1 of 2, step \d+ of 12 \(lr 1e\+06\)", line), line
    assert "training loss is not finite" in line and "lower lr" in line, line
    assert "check the configuration" in line
    assert snapshot(out) == before


def test_nonfinite_loss_in_a_resumed_epoch_names_epoch_and_step(half_done, capsys, monkeypatch):
    data, out = half_done
    before = snapshot(out)
    calls = []

    def nan_at_third_step(logits, y, multilabel):
        calls.append(None)
        loss = loss_fn(logits, y, multilabel)
        return loss * math.nan if len(calls) == 3 else loss

    monkeypatch.setattr("iterconv.train.loop.loss_fn", nan_at_third_step)
    assert main(run_argv(data, out, epochs=3)) == 2
    err = capsys.readouterr().err
    assert "resuming after epoch 1 of 3" in err
    line = error_line(err, "train")
    assert "diverged at epoch 2 of 3, step 3 of 12 (lr 0.05)" in line, line
    assert "nothing of this epoch was saved" in line and "lower lr" in line
    assert snapshot(out) == before  # last.pt still holds epoch 1


def test_nonfinite_validation_loss_stops_before_anything_is_written(finished, capsys, monkeypatch):
    data, out = finished
    capsys.readouterr()
    before = snapshot(out)
    monkeypatch.setattr("iterconv.train.loop.evaluate", lambda *args: (math.inf, 0.5))
    assert main(run_argv(data, out, seed=4)) == 2
    line = error_line(capsys.readouterr().err, "train")
    assert "diverged at epoch 1 of 2 (lr 0.05): the validation loss is not finite (inf)" in line
    assert "lower lr" in line
    assert snapshot(out) == before


# What torch's zip writer raises when the disk or the quota is full (not an OSError).
DISK_FULL = (
    "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
    "data/3: file write failed"
)


def fill_the_disk(monkeypatch) -> None:
    """Make every ``torch.save`` write half a file and fail as on a full disk."""

    def save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError(DISK_FULL)

    monkeypatch.setattr(torch, "save", save)


def test_full_disk_while_last_pt_is_written_keeps_the_previous_one(half_done, capsys, monkeypatch):
    data, out = half_done
    before = snapshot(out)
    fill_the_disk(monkeypatch)
    assert main(run_argv(data, out, epochs=3)) == 2
    line = error_line(capsys.readouterr().err, "train")
    assert f"writing checkpoint {out / 'last.pt'} failed" in line, line
    assert "PytorchStreamWriter failed writing file" in line and "disk or the quota full" in line
    assert "previous last.pt, if any, is intact" in line
    assert snapshot(out) == before  # last.pt of epoch 1, and no temporary file left
    monkeypatch.undo()  # space again: the same command resumes after epoch 1
    assert main(run_argv(data, out, epochs=3)) == 0
    assert "resuming after epoch 1 of 3" in capsys.readouterr().err


def test_full_disk_while_best_pt_is_written_keeps_the_finished_run(finished, capsys, monkeypatch):
    data, out = finished
    capsys.readouterr()
    before = snapshot(out)
    fill_the_disk(monkeypatch)
    assert main(run_argv(data, out)) == 2  # resumes after the last epoch, then writes best.pt
    line = error_line(capsys.readouterr().err, "train")
    assert f"writing checkpoint {out / 'best.pt'} failed" in line and "disk" in line, line
    assert snapshot(out) == before
    monkeypatch.undo()
    load_run_model(out / "best.pt")  # still verifies against metrics.json


# --- checkpoints changed in place, a run analysed on another dataset --------------------------


def indices_argv(run: Path, data: Path, out: Path) -> list[str]:
    argv = ["indices", "--run", str(run), "--data", str(data), "--out", str(out)]
    return [*argv, "--extra", "2", "--device", "cpu"]


@pytest.fixture
def analysed(finished, tmp_path, capsys):
    """A finished run, its dataset and the indices file (EPC included) computed from it."""
    data, run = finished
    out = tmp_path / "analysis"
    assert main(indices_argv(run, data, out / "indices.json")) == 0
    capsys.readouterr()
    return data, run, out


def resave_in_the_legacy_format(run: Path) -> None:
    """Same content, other bytes: the embedded checksum still matches, the file's does not."""
    ckpt = torch.load(run / "best.pt", weights_only=False)
    torch.save(ckpt, run / "best.pt", _use_new_zipfile_serialization=False)


def swap_and_truncate_metrics(run: Path) -> None:
    """Another valid checkpoint in best.pt's place, and a metrics.json that no longer parses."""
    (run / "best.pt").write_bytes((run / "last.pt").read_bytes())
    truncate(run / "metrics.json")


def swap_and_unlist(run: Path) -> None:
    """Another valid checkpoint in best.pt's place, and its checksum gone from metrics.json."""
    (run / "best.pt").write_bytes((run / "last.pt").read_bytes())
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["sha256"]["best.pt"]
    (run / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: flip_tensor_byte(run / "best.pt"), "does not match its sha256"),
        (resave_in_the_legacy_format, "does not match its sha256 in metrics.json"),
        (swap_and_truncate_metrics, "metrics.json is unreadable"),
        (swap_and_unlist, "lists no sha256 for best.pt"),
    ],
    ids=["bitflip", "resaved", "metrics-truncated", "metrics-unlisted"],
)
def test_checkpoint_changed_in_place_is_refused_before_analysis(analysed, capsys, damage, message):
    """Changed bytes, unchanged file times (nothing that a file-time check would notice)."""
    data, run, out = analysed
    times = {name: (run / name).stat() for name in ("best.pt", "metrics.json")}
    damage(run)
    for name, st in times.items():
        os.utime(run / name, ns=(st.st_atime_ns, st.st_mtime_ns))
    before, outputs = snapshot(run), snapshot(out)
    assert main(indices_argv(run, data, out / "indices.json")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("iterconv indices: error: "), err
    assert message in err and f"delete {run} and rerun" in err, err
    assert snapshot(run) == before and snapshot(out) == outputs


def write_other_dataset(path: Path, name: str, channels: int = 1) -> Path:
    x = torch.randint(0, 256, (32, channels, 8, 8), dtype=torch.uint8).numpy()
    y = (torch.arange(32) % 4).numpy()
    write_prepared(
        path,
        train={"x": x, "y": y},
        val={"x": x[:16], "y": y[:16]},
        name=name,
        source="synthetic",
        num_classes=4,
        multilabel=False,
        augment="none",
        params={},
    )
    return path


@pytest.mark.parametrize(
    ("name", "channels", "message"),
    [
        ("digits3", 1, "trained on dataset 'tiny', but --data {data} holds 'digits3'"),
        (
            "tiny",
            3,
            "trained on 1 channel(s) of 8x8 pixels, 4 classes, but --data {data} holds 3 "
            "channel(s) of 8x8 pixels, 4 classes",
        ),
    ],
    ids=["other-name", "other-shape"],
)
def test_indices_refuses_a_dataset_other_than_the_runs(
    analysed, tmp_path, capsys, name, channels, message
):
    _, run, out = analysed
    other = write_other_dataset(tmp_path / "other", name, channels)
    before, outputs = snapshot(run), snapshot(out)
    assert main(indices_argv(run, other, out / "indices.json")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("iterconv indices: error: "), err
    assert f"run {run}" in err and message.format(data=other) in err, err
    assert snapshot(run) == before and snapshot(out) == outputs


# --- two Snakemake invocations on one results directory --------------------------------------


@pytest.mark.slow
def test_second_snakemake_invocation_is_refused_by_the_lock(tmp_path):
    work = workflow_copy(tmp_path)
    set_preset(work, "micro")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "train_all"]
    first = subprocess.Popen(
        cmd, cwd=work, env=iterconv_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    locks = work / ".snakemake" / "locks"
    end = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())):
        assert first.poll() is None and time.monotonic() < end, "first run never took the lock"
        time.sleep(0.1)
    second = subprocess.run(
        cmd, cwd=work, env=iterconv_env(), capture_output=True, text=True, timeout=300
    )
    still_running = first.poll() is None
    out, _ = first.communicate(timeout=600)
    assert still_running, "the first run ended before the second started: no overlap tested"
    assert second.returncode != 0
    assert "LockException" in second.stderr and "cannot be locked" in second.stderr
    assert first.returncode == 0, out.decode()[-3000:]
    assert not locks.exists() or not any(locks.iterdir())  # released
    again = subprocess.run(
        [*cmd, "-n"], cwd=work, env=iterconv_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def last_epoch(out: Path) -> int:
    path = out / "last.pt"
    return torch.load(path, weights_only=False)["state"]["epoch"] if path.exists() else 0
