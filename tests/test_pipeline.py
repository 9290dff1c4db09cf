"""The workflow: params validation, grid expansion, and end-to-end builds through Snakemake."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from params_helpers import PARAMS, ROOT, with_preset

from iterconv.pipeline.grid import ParamsError, expand_runs, run_id
from iterconv.pipeline.validate import validate_params


def test_preset_sizes():
    assert len(expand_runs(with_preset("demo"))) == 12
    assert len(expand_runs(with_preset("micro"))) == 5
    paper = expand_runs(with_preset("paper"))
    assert len(paper) == 1209
    main = [r for r in paper.values() if r.sweep == "cifar10_main"]
    assert len(main) == 3 * 4 * 5 * 3  # variants x widths x couplings x seeds


def test_run_ids_are_derived_from_the_configuration():
    for name in ("demo", "paper"):
        for rid, run in expand_runs(with_preset(name)).items():
            assert rid == run_id(run.config)
    runs = expand_runs(with_preset("paper"))
    van = runs["cifar10-van-4x10-w64-nonrec-c0-free-s4"].config
    assert (van.multiplier_init, van.multiplier_step, van.epochs) == (0.0, 0.0, 165)
    cfg = runs["cifar10-icr-w32-rec-c0.9-s1"].config
    assert (cfg.variant, cfg.width, cfg.coupling, cfg.init, cfg.seed) == (
        "icr",
        32,
        0.9,
        "recurrent",
        1,
    )
    assert cfg.epochs == 400 and cfg.milestones == (200, 300)
    late = runs["cifar10-standard-w16-rec-c0.5-from5-g0.1-s0"].config
    assert late.couple_from == 5 and late.bn_gamma == 0.1
    mnist = next(r.config for r in runs.values() if r.config.dataset == "mnist")
    assert mnist.stages == 1 and mnist.lr == 0.025 and mnist.lr_factor == 2.5


def test_all_presets_validate():
    for name in PARAMS["presets"]:
        validate_params(with_preset(name))


def mutate(path: str, value):
    """params.yaml with the key at dotted ``path`` set to value (None deletes it)."""
    params = with_preset("demo")
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return params


SWEEP = "presets.demo.sweeps.0"
BAD = {
    "unknown top-level key": (mutate("colour", "red"), "colour"),
    "unknown preset": (mutate("preset", "full"), "preset"),
    "preset wrong type": (mutate("preset", 3), "preset"),
    "missing datasets": (mutate("datasets", None), "datasets"),
    "lambda above 1": (mutate(f"{SWEEP}.grid.coupling", [1.5]), "coupling"),
    "lambda below 0": (mutate(f"{SWEEP}.grid.coupling", [-0.1]), "coupling"),
    "lambda not a number": (mutate(f"{SWEEP}.grid.coupling", ["half"]), "coupling"),
    "mu zero": (mutate(f"{SWEEP}.fixed", {"mu": 0}), "mu"),
    "mu negative": (mutate(f"{SWEEP}.fixed", {"mu": -1}), "mu"),
    "width zero": (mutate(f"{SWEEP}.grid.width", [0]), "width"),
    "width negative": (mutate(f"{SWEEP}.grid.width", [-8]), "width"),
    "width not integer": (mutate(f"{SWEEP}.grid.width", [8.5]), "width"),
    "epochs zero": (mutate("recipes.demo.epochs", 0), "epochs"),
    "epochs negative": (mutate("recipes.demo.epochs", -3), "epochs"),
    "unknown variant": (mutate(f"{SWEEP}.grid.variant", ["dense"]), "variant"),
    "unknown dataset in sweep": (mutate(f"{SWEEP}.datasets", ["imagenet"]), "imagenet"),
    "unknown dataset source": (mutate("datasets.demo_digits.source", "svhn"), "source"),
    "unknown recipe": (mutate(f"{SWEEP}.recipe", "fast"), "recipe"),
    "empty sweep list": (mutate("presets.demo.sweeps", []), "sweeps"),
    "empty grid values": (mutate(f"{SWEEP}.grid.seed", []), "seed"),
    "unknown run setting in grid": (mutate(f"{SWEEP}.grid.depth", [3]), "depth"),
    "unknown run setting in recipe": (mutate("recipes.demo.optimizer", "adam"), "optimizer"),
    "unknown kernel": (mutate(f"{SWEEP}.fixed", {"kernel": "gauss"}), "kernel"),
    "unknown init": (mutate(f"{SWEEP}.fixed", {"init": "orthogonal"}), "init"),
    "couple_from beyond blocks": (
        mutate(f"{SWEEP}.fixed", {"couple_from": 4, "blocks": 4}),
        "couple_from",
    ),
    "coupling without recurrent init": (
        mutate(f"{SWEEP}.grid.coupling", [{"coupling": 0.5, "init": "nonrecurrent"}]),
        "init",
    ),
    "decreasing milestones": (mutate("recipes.demo.milestones", [4, 2]), "milestones"),
    "n_digits out of range": (mutate("datasets.demo_digits.n_digits", 11), "n_digits"),
    "n_digits bad range": (mutate("datasets.demo_digits.n_digits", "2to5"), "n_digits"),
    "momentum 1": (mutate("recipes.demo.momentum", 1.0), "momentum"),
    "negative weight decay": (mutate("recipes.demo.weight_decay", -1e-4), "weight_decay"),
    "duplicate run ids": (mutate(f"{SWEEP}.grid.lr", [0.1, 0.05]), "run id"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_params_are_rejected_naming_the_key(case):
    params, key = BAD[case]
    with pytest.raises((ParamsError, ValueError)) as err:
        validate_params(params)
    assert key in str(err.value)


def iterconv_env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def workflow_copy(tmp_path: Path) -> Path:
    """The workflow's files in a fresh directory (a stand-in for a clone of the project)."""
    work = tmp_path / "wf"
    work.mkdir()
    for name in ("Snakefile", "params.yaml", "preset.yaml", "dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    for name in ("workflow", "profiles", "src"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    return work


def set_preset(work: Path, name: str) -> None:
    path = work / "preset.yaml"
    path.write_text(re.sub(r"^preset: \w+", f"preset: {name}", path.read_text(), flags=re.M))


def sh(work: Path, *cmd: str) -> str:
    result = subprocess.run(
        cmd, cwd=work, env=iterconv_env(), capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout + result.stderr


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(
        cmd, cwd=work, env=iterconv_env(), capture_output=True, text=True, timeout=900
    )


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))
    return {k: int(v) for k, v in counts.items()}


def test_invalid_params_stop_snakemake_before_any_job(tmp_path):
    work = workflow_copy(tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["recipes"]["demo"]["lr"] = -1
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    result = snakemake(work, "-n")
    assert result.returncode != 0
    assert "lr" in result.stderr + result.stdout
    assert not (work / "results").exists()


@pytest.mark.slow  # plans 1,209 runs (13 s)
def test_paper_dry_run_job_count(tmp_path):
    result = snakemake(workflow_copy(tmp_path), "-n", "--config", "preset=paper")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert jobs["train_run"] == 1209 and jobs["compute_indices"] == 1209
    assert jobs["prepare_dataset"] == 12  # every dataset but the demo/micro ones
    assert jobs["run_toy"] == 1 and jobs["collect_tables"] == 1
