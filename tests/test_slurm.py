"""The cluster profile on a real SLURM: jobs go through sbatch; a job killed by scancel is retried
and its training resumes. Needs a running cluster (``.ci/slurm-setup.sh`` makes a single-node
one, partition ``debug``, no accounting) and ``pip install -e '.[cluster]'``; skipped otherwise.

The local profile is the repository's workflow/profiles/slurm/config.yaml with the site-specific
values replaced: partition ``debug``, no account, and ``gpu: 0`` for the rules that request a GPU
(there is none here). See docs/reliability.md."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_pipeline import ROOT, iterconv_env, set_preset, workflow_copy

from iterconv.pipeline.params import read_params
from iterconv.pipeline.units import preset_units


def slurm_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return False
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not slurm_up(), reason="no running SLURM cluster (.ci/slurm-setup.sh)"),
]

RUN_ID = "micro_digits-standard-2x2-w4-nonrec-c0-s0"


def run_address(work: Path) -> str:
    """The run's directory name under work's params.yaml (it changes with the settings)."""
    units = preset_units(read_params(work / "params.yaml", "micro"))
    return next(address for address, run in units.runs.items() if run.run_id == RUN_ID)


def local_profile(work: Path) -> Path:
    """The cluster profile, mapped onto the single-node test cluster."""
    cfg = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    cfg["default-resources"].update(slurm_partition="debug", runtime=30, mem_mb=1000)
    del cfg["default-resources"]["slurm_account"]
    cfg["slurm-no-account"] = True  # no accounting database on the test cluster
    cfg["slurm-init-seconds-before-status-checks"] = 2  # default 40 s: a long wait for seconds
    cfg["slurm-keep-successful-logs"] = True
    cfg["latency-wait"] = 5
    for rule in ("train_run", "compute_indices"):
        cfg["set-resources"][rule].update(slurm_partition="debug", gpu=0, mem_mb=2000)
        cfg["set-resources"][rule]["cpus_per_task"] = 1
    assert cfg["retries"] >= 1 and cfg["slurm-status-command"] == "squeue"
    path = work / "profiles" / "slurm-local"
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def squeue_states(job_ids) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_scancelled_training_job_is_resubmitted_and_resumes(tmp_path):
    work = workflow_copy(tmp_path)
    set_preset(work, "micro")
    params = work / "params.yaml"  # long enough to be cancelled mid-training
    params.write_text(re.sub(r"(micro: +\{epochs: )2,", r"\g<1>40,", params.read_text()))
    profile = local_profile(work)
    address = run_address(work)
    run = work / "results" / "runs" / address
    target = f"results/runs/{address}/metrics.json"
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(profile), target]
    log = tmp_path / "snakemake.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=iterconv_env(), stdout=fh, stderr=fh)
        try:
            end = time.monotonic() + 300
            while last_epoch(run) < 3:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < end, "training never started under SLURM"
                time.sleep(0.5)
            first = re.findall(r"submitted with SLURM jobid (\d+)", log.read_text())[-1]
            subprocess.run(["scancel", first], check=True)
            assert proc.wait(timeout=400) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    jobs = re.findall(r"submitted with SLURM jobid (\d+)", text)
    assert len(jobs) >= 3, text[-3000:]  # dataset, the cancelled attempt, the retry
    assert "Trying to restart job" in text  # the cancelled attempt was retried
    states = squeue_states(jobs)
    assert states[first] == "CANCELLED" and states[jobs[-1]] == "COMPLETED", states
    train_log = (run / "train.log").read_text()
    assert re.search(r"^resuming after epoch \d+ of 40$", train_log, re.M), train_log[:500]
    assert (run / "metrics.json").exists()


def last_epoch(run: Path) -> int:
    try:
        return torch.load(run / "last.pt", weights_only=False)["state"]["epoch"]
    except Exception:  # not there yet, or being replaced this instant
        return 0
