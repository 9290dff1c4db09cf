# Helpers of the workflow: grid expansion (shared with the tests) and input functions.
import json
import shlex

from iterconv.pipeline.grid import (
    ParamsError,
    datasets_used,
    expand_runs,
    flag_stale_runs,
)
from iterconv.pipeline import targets
from iterconv.pipeline.targets import dataset_command, figure_names

try:
    RUNS = expand_runs(config)
except ParamsError as err:
    raise WorkflowError(f"invalid params.yaml: {err}")
DATASETS = datasets_used(config)
FIGURES = figure_names(RUNS)
# Runs whose results were trained with another configuration get a flag newer than their
# outputs: retrained even without Snakemake's metadata (fresh clone + dvc pull).
flag_stale_runs(RUNS, "results/runs")


wildcard_constraints:
    run="[A-Za-z0-9_.-]+",
    dataset="[A-Za-z0-9_]+",


def run_config_json(wildcards):
    return json.dumps(RUNS[wildcards.run].config.to_dict(), sort_keys=True)


def run_dataset(wildcards):
    return f"results/data/{RUNS[wildcards.run].config.dataset}/manifest.json"


def train_inputs(wildcards):
    inputs = {"data": run_dataset(wildcards)}
    flag = f"results/runs/{wildcards.run}/config-changed.flag"
    if os.path.exists(flag):  # see flag_stale_runs
        inputs["changed"] = flag
    return inputs


def prepare_command(wildcards):
    return shlex.join(dataset_command(wildcards.dataset, config))


def all_outputs():
    return [
        *expand("figures/{fig}.png", fig=FIGURES),
        "results/tables/runs.csv",
        "results/metrics.json",
        "results/claims.md",
    ]


def figure_inputs(wildcards):
    tables = rules.collect_tables.output
    inputs = {
        "runs": tables.runs,
        "stages": tables.stages,
        "curves": tables.curves,
        "history": tables.history,
    }
    if wildcards.fig == "fig1":
        inputs["toy"] = rules.run_toy.output[0]
    return inputs


def figure_caption(wildcards):
    return targets.figure_caption(wildcards.fig, RUNS)
