"""Incremental rebuilds that can be trusted, on real builds of the micro preset: content
addresses, dry runs without side effects, per-preset aggregates, clones and failures."""

from __future__ import annotations

import copy
import hashlib
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import planned_jobs, set_preset, sh, snakemake, workflow_copy

pytestmark = pytest.mark.slow

WORK_JOBS = ("prepare_dataset", "train_run", "compute_indices", "run_family_job")


def checksums(root: Path, under: str = "") -> dict[str, str]:
    """sha256 of every file below ``root / under``, outside Snakemake's metadata."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / under).rglob("*"))
        if p.is_file() and ".snakemake" not in p.relative_to(root).parts
    }


def edit(work: Path, change) -> str:
    """Apply ``change(params)`` to work/params.yaml; returns the previous text (to revert)."""
    path = work / "params.yaml"
    text = path.read_text()
    params = yaml.safe_load(text)
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return text


def dry_run(work: Path) -> dict[str, int]:
    result = snakemake(work, "-n")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return planned_jobs(result)


def build(work: Path, *args: str) -> None:
    result = snakemake(work, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def run_dirs(work: Path) -> set[str]:
    return {p.name for p in (work / "results" / "runs").iterdir()}


def table_runs(work: Path, preset: str = "micro") -> set[str]:
    lines = (work / "results" / preset / "tables" / "runs.csv").read_text().splitlines()[1:]
    return {line.split(",")[0] for line in lines}


def two_presets(params: dict) -> None:
    """micro's implicit sweep gets its own recipe (same values, so the same addresses), and a
    second preset micro_b shares micro's standard runs and shortcut jobs."""
    params["recipes"]["micro_b"] = dict(params["recipes"]["micro"])
    micro = params["presets"]["micro"]
    micro["sweeps"][1]["recipe"] = "micro_b"
    sweep = copy.deepcopy(micro["sweeps"][0])
    sweep.update(name="micro_b")
    sweep["grid"]["variant"] = ["standard"]
    params["presets"]["micro_b"] = {
        "sweeps": [sweep],
        "families": {"shortcut": micro["families"]["shortcut"]},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A finished build of the micro preset (with the second preset micro_b defined)."""
    work = workflow_copy(tmp_path_factory.mktemp("built"))
    set_preset(work, "micro")
    edit(work, two_presets)
    build(work)
    return work


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    """A private copy of the finished build (metadata and file times included)."""
    copy_ = tmp_path / "work"
    shutil.copytree(built, copy_, symlinks=True)
    return copy_


def test_build_layout(work):
    assert len(run_dirs(work)) == 5
    assert table_runs(work) == run_dirs(work)  # rows are named by address
    figures = {p.name for p in (work / "figures" / "micro").glob("*.png")}
    assert {"fig1.png", "fig2.png", "fig3.png"} <= figures
    assert (work / "results" / "micro" / "claims.md").read_text().strip()
    assert (work / "results" / "micro" / "metrics.json").exists()
    assert list((work / "results" / "micro" / "tables").glob("inputs-*.json"))


def test_dry_run_and_lint_write_nothing(work, tmp_path):
    (tmp_path / "fresh").mkdir()
    for root in (work, workflow_copy(tmp_path / "fresh")):
        before = checksums(root)
        assert snakemake(root, "-n").returncode == 0
        assert snakemake(root, "--lint").returncode in (0, 1)  # 1: lint advice, still no writes
        assert checksums(root) == before
    assert not (tmp_path / "fresh" / "wf" / "results").exists()


def test_edit_then_revert_reruns_exactly_the_affected_work(work):
    original_tables = checksums(work, "results/micro/tables")
    old_runs = run_dirs(work)

    # a dry run after an edit, then the edit reverted byte for byte: nothing to do
    text = edit(work, lambda p: p["recipes"]["micro"].update(epochs=3))
    assert dry_run(work)["train_run"] == 4
    (work / "params.yaml").write_text(text)
    assert "Nothing to be done" in sh(work, sys.executable, "-m", "snakemake", "-n")

    # the edit built: exactly the four runs of recipe micro train, at new addresses
    implicit = next(r for r in old_runs if "-implicit-" in r)
    implicit_mtime = (work / "results" / "runs" / implicit / "best.pt").stat().st_mtime_ns
    edit(work, lambda p: p["recipes"]["micro"].update(lr=0.04))
    plan = dry_run(work)
    assert plan["train_run"] == 4 and plan["compute_indices"] == 4, plan
    assert not {"prepare_dataset", "run_family_job"} & set(plan), plan
    assert {"collect_tables", "check_claims", "plot_figure"} <= set(plan), plan
    build(work)
    new_runs = run_dirs(work) - old_runs
    assert len(new_runs) == 4 and old_runs <= run_dirs(work)  # old results kept
    assert table_runs(work) == new_runs | {implicit}
    assert (work / "results" / "runs" / implicit / "best.pt").stat().st_mtime_ns == implicit_mtime

    # reverted: no training or analysis, and the tables hold the old results again
    (work / "params.yaml").write_text(text)
    assert not set(WORK_JOBS) & set(dry_run(work))
    build(work)
    assert table_runs(work) == old_runs
    assert checksums(work, "results/micro/tables") == original_tables
    assert "Nothing to be done" in sh(work, sys.executable, "-m", "snakemake", "-n")


def test_presets_keep_their_own_aggregates(work):
    micro = {**checksums(work, "results/micro"), **checksums(work, "figures/micro")}
    micro = {k: v for k, v in micro.items() if "/logs/" not in k}
    set_preset(work, "micro_b")
    plan = dry_run(work)
    assert not set(WORK_JOBS) & set(plan), plan  # runs and jobs shared with micro
    build(work)
    assert table_runs(work, "micro_b") < table_runs(work, "micro")
    set_preset(work, "micro")
    assert "Nothing to be done" in sh(work, sys.executable, "-m", "snakemake", "-n")
    after = {**checksums(work, "results/micro"), **checksums(work, "figures/micro")}
    assert {k: v for k, v in after.items() if "/logs/" not in k} == micro


def test_corrupt_result_fails_in_one_line_and_keeps_the_aggregates(work):
    keep = {
        **checksums(work, "results/micro/tables"),
        **checksums(work, "results/data"),
        "metrics": hashlib.sha256((work / "results/micro/metrics.json").read_bytes()).hexdigest(),
    }
    keep = {k: v for k, v in keep.items() if "inputs-" not in k}  # the stamp: Snakemake's
    index = next((work / "results" / "indices").rglob("*.json"))
    index.write_text(index.read_text()[:100])
    result = snakemake(work, "--forcerun", "collect_tables")
    assert result.returncode != 0
    log = (work / "results" / "micro" / "logs" / "collect_tables.log").read_text().strip()
    assert len(log.splitlines()) == 1 and index.name in log, log
    after = {
        **checksums(work, "results/micro/tables"),
        **checksums(work, "results/data"),
        "metrics": hashlib.sha256((work / "results/micro/metrics.json").read_bytes()).hexdigest(),
    }
    assert {k: v for k, v in after.items() if "inputs-" not in k} == keep


def git_dvc_repo(work: Path) -> None:
    sh(work, "git", "init", "-q")
    sh(work, "dvc", "init", "-q")
    sh(work, "dvc", "config", "core.analytics", "false")
    sh(work, "git", "add", "-A")
    sh(work, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workflow")


def test_dvc_clone_and_preset_choice(work, tmp_path):
    git_dvc_repo(work)
    first = sh(work, "dvc", "repro")
    assert first.count("Nothing to be done") == 4
    assert "up to date" in sh(work, "dvc", "status")
    modified = [line for line in sh(work, "git", "status", "--porcelain").splitlines()]
    assert modified == ["?? dvc.lock"], modified

    # a fresh clone with the results pulled: nothing to do, without --touch
    sh(work, "dvc", "remote", "add", "-d", "store", str(tmp_path / "store"))
    sh(work, "dvc", "push", "-q")
    sh(work, "git", "add", "-A")
    sh(work, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "build")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(work), str(clone))
    sh(clone, "dvc", "pull", "-q")
    assert "Nothing to be done" in sh(clone, sys.executable, "-m", "snakemake", "-n")

    # each kind of edit schedules exactly its own jobs
    def expect(change, jobs: dict[str, int]) -> None:
        text = edit(clone, change)
        plan = dry_run(clone)
        assert {k: plan.get(k, 0) for k in WORK_JOBS} == {k: jobs.get(k, 0) for k in WORK_JOBS}
        (clone / "params.yaml").write_text(text)

    def width(p):
        p["presets"]["micro"]["sweeps"][0]["fixed"]["width"] = 5

    def trials(p):
        p["presets"]["micro"]["families"]["shortcut"]["trials"] = 50

    expect(width, {"train_run": 4, "compute_indices": 4})
    before = shortcut_jobs(clone)
    text = edit(clone, trials)
    changed = shortcut_jobs(clone) - before  # the Figure 5 path jobs do not use `trials`
    (clone / "params.yaml").write_text(text)
    assert 0 < len(changed) < len(before)
    expect(trials, {"run_family_job": len(changed)})
    expect(
        lambda p: p["datasets"]["micro_digits"].update(n_train=200),
        {"prepare_dataset": 1, "train_run": 5, "compute_indices": 5},
    )

    # choosing a preset through DVC changes only that value; a mistyped key writes nothing
    params, choice = (work / "params.yaml").read_bytes(), (work / "preset.yaml").read_text()
    sh(work, "dvc", "exp", "run", "-S", "preset.yaml:preset=micro_b")
    assert (work / "params.yaml").read_bytes() == params
    assert (work / "preset.yaml").read_text() == choice.replace("preset: micro", "preset: micro_b")
    assert (work / "results" / "micro_b" / "tables" / "runs.csv").exists()
    typo = run_cmd(work, "dvc", "exp", "run", "-S", "preset.yaml:presett=micro")
    assert typo.returncode != 0
    assert "presett" not in (work / "preset.yaml").read_text()


def shortcut_jobs(work: Path) -> set[str]:
    """Addresses of the shortcut family's jobs in work's params.yaml and preset.yaml."""
    from iterconv.pipeline.params import read_params
    from iterconv.pipeline.units import preset_units

    return set(preset_units(read_params(work / "params.yaml")).jobs["shortcut"])


def run_cmd(work: Path, *cmd: str):
    import subprocess

    from test_pipeline import iterconv_env

    return subprocess.run(cmd, cwd=work, env=iterconv_env(), capture_output=True, text=True)
