"""What the SLURM profile submits, from a dry run (no cluster needed, only the executor plugin):
one GPU, a long runtime and enough memory per training job; index and family jobs grouped;
the cheap aggregation steps local. tests/test_slurm.py runs the profile on a real SLURM."""

from __future__ import annotations

import importlib.util
import re

import pytest
from test_pipeline import ROOT, set_preset, snakemake, workflow_copy

SNAKEFILE = (ROOT / "Snakefile").read_text()

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="needs pip install -e '.[cluster]'",
)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> list[dict]:
    """Every job of the micro preset's dry run through the SLURM profile: rule, local or not,
    group and resources."""
    work = workflow_copy(tmp_path_factory.mktemp("profile"))
    set_preset(work, "micro")
    # --quiet host: print every job (the profiles print only summaries)
    result = snakemake(work, "-n", "--profile", "workflow/profiles/slurm", "--quiet", "host")
    assert result.returncode == 0, result.stderr[-2000:]
    local = set(re.search(r"^localrules:\n((?:    \w+,\n)+)", SNAKEFILE, re.M).group(1).split())
    parsed = []
    # a job's block ends at a blank line or at the next job's timestamp line
    for block in re.split(r"\n\s*\n|\n(?=\[\w{3} \w{3} )", result.stdout):
        head = re.search(r"^( *)rule (\w+):", block, re.M)
        if head is None:
            continue
        res = re.search(r"resources: (.*)", block)
        pairs = (kv.split("=", 1) for kv in res.group(1).split(", ")) if res else []
        rule = head.group(2)
        # jobs of a group job are printed indented under its header
        parsed.append({"rule": rule, "grouped": bool(head.group(1)), **dict(pairs)})
        parsed[-1]["local"] = f"{rule}," in local
    return parsed


def of(jobs, rule):
    found = [j for j in jobs if j["rule"] == rule]
    assert found, f"no {rule} job in the dry run"
    return found


def test_training_jobs_request_one_gpu_and_their_time(jobs):
    for job in of(jobs, "train_run"):
        assert not job["local"] and job["gpu"] == "1"
        assert int(job["runtime"]) >= 24 * 60 and int(job["mem_mb"]) >= 16000
        assert "gpu" in job["slurm_partition"]


def test_small_jobs_are_grouped_or_local(jobs):
    assert all(j["grouped"] and j["gpu"] == "1" for j in of(jobs, "compute_indices"))
    assert all(j["grouped"] and "gpu" not in j for j in of(jobs, "run_family_job"))
    for rule in ("collect_tables", "collect_family_tables", "check_claims", "plot_figure"):
        assert all(j["local"] for j in of(jobs, rule)), rule
    assert not any(j["local"] for j in of(jobs, "prepare_dataset"))  # heavy: a cluster job
