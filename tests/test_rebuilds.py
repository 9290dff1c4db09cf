"""Incremental rebuilds that can be trusted, on real builds of the micro preset: content
addresses, dry runs without side effects, per-preset aggregates, clones and failures."""

from __future__ import annotations

import copy
import hashlib
import shutil
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DvcRepo:
    path: Path
    repro: str  # the output of the first `dvc repro`
    status: str  # `dvc status` and `git status --porcelain` right after it
    porcelain: list[str]


@pytest.fixture(scope="module")
def dvc_repo(built: Path, tmp_path_factory) -> DvcRepo:
    """The finished build as a git + DVC repository after its first ``dvc repro``."""
    work = tmp_path_factory.mktemp("dvc") / "work"
    shutil.copytree(built, work, symlinks=True)
    git_dvc_repo(work)
    repro = sh(work, "dvc", "repro")
    porcelain = sh(work, "git", "status", "--porcelain").splitlines()
    return DvcRepo(work, repro, sh(work, "dvc", "status"), porcelain)


@pytest.fixture(scope="module")
def clone(dvc_repo: DvcRepo, tmp_path_factory) -> Path:
    """A git clone of the DVC repository with its results pushed to a remote and pulled back."""
    work = dvc_repo.path
    root = tmp_path_factory.mktemp("clone")
    sh(work, "dvc", "remote", "add", "-d", "store", str(root / "store"))
    sh(work, "dvc", "push", "-q")
    sh(work, "git", "add", "-A")
    sh(work, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "build")
    sh(root, "git", "clone", "-q", str(work), str(root / "clone"))
    sh(root / "clone", "dvc", "pull", "-q")
    return root / "clone"


def test_dvc_repro_after_a_snakemake_build_has_nothing_to_do(dvc_repo):
    assert dvc_repo.repro.count("Nothing to be done") == 4
    assert "up to date" in dvc_repo.status
    assert dvc_repo.porcelain == ["?? dvc.lock"], dvc_repo.porcelain


def test_pulled_clone_has_nothing_to_do_without_touch(clone):
    assert "Nothing to be done" in sh(clone, sys.executable, "-m", "snakemake", "-n")


def planned_work(work: Path, change) -> dict[str, int]:
    """The work jobs that ``change(params)`` schedules in ``work`` (params.yaml restored)."""
    text = edit(work, change)
    try:
        plan = dry_run(work)
    finally:
        (work / "params.yaml").write_text(text)
    return {k: plan[k] for k in WORK_JOBS if plan.get(k)}


def test_width_edit_schedules_the_sweeps_runs(clone):
    def width(p):
        p["presets"]["micro"]["sweeps"][0]["fixed"]["width"] = 5

    assert planned_work(clone, width) == {"train_run": 4, "compute_indices": 4}


def test_trials_edit_schedules_only_the_jobs_that_use_trials(clone):
    def trials(p):
        p["presets"]["micro"]["families"]["shortcut"]["trials"] = 50

    before = shortcut_jobs(clone)
    text = edit(clone, trials)
    changed = shortcut_jobs(clone) - before  # the Figure 5 path jobs do not use `trials`
    (clone / "params.yaml").write_text(text)
    assert 0 < len(changed) < len(before)
    assert planned_work(clone, trials) == {"run_family_job": len(changed)}


def test_dataset_edit_schedules_the_dataset_and_its_runs(clone):
    def n_train(p):
        p["datasets"]["micro_digits"].update(n_train=200)

    plan = planned_work(clone, n_train)
    assert plan == {"prepare_dataset": 1, "train_run": 5, "compute_indices": 5}


def test_dvc_chooses_the_preset_and_refuses_a_mistyped_key(dvc_repo, tmp_path):
    work = tmp_path / "work"  # a private copy: the experiment builds micro_b
    shutil.copytree(dvc_repo.path, work, symlinks=True)
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
