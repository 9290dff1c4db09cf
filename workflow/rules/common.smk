# Helpers of the workflow: the preset's units of work by address (iterconv.pipeline.units, shared
# with the tests and `iterconv gc`) and input functions. Parsing writes no file.
import shlex

from iterconv.families.registry import family_figures
from iterconv.io import write_json
from iterconv.pipeline import ParamsError
from iterconv.pipeline import targets
from iterconv.pipeline.address import (
    ANALYSIS_PATTERN,
    HASH_LENGTH,
    UNIT_PATTERN,
    stamp_name,
)
from iterconv.pipeline.targets import dataset_command, figure_names
from iterconv.pipeline.units import preset_units

try:
    UNITS = preset_units(config)
except ParamsError as err:
    raise WorkflowError(f"invalid params.yaml: {err}")
PRESET = UNITS.preset
DATASETS = UNITS.datasets  # {address: Dataset}
RUNS = UNITS.runs  # {address: Run}
FAMILY_JOBS = UNITS.jobs  # {family: {address: Job}}
ANALYSIS = UNITS.analysis
FIGURES = figure_names(RUNS)
FAMILY_FIGURES = {
    fig: fam for fig, (fam, _caption) in family_figures().items() if fam in FAMILY_JOBS
}
# Aggregates live per preset; their stamps change with their inputs' addresses and the code.
OUT = f"results/{PRESET}"
TABLES_STAMP = f"{OUT}/tables/{stamp_name([*RUNS, ANALYSIS])}"
FAMILY_STAMPS = {
    fam: f"{OUT}/families/{fam}/{stamp_name(jobs)}" for fam, jobs in FAMILY_JOBS.items()
}


wildcard_constraints:
    run=UNIT_PATTERN,
    dataset=f"[A-Za-z0-9_]+-[0-9a-f]{{{HASH_LENGTH}}}",
    analysis=ANALYSIS_PATTERN,
    family="[a-z]+",
    job=UNIT_PATTERN,
    fig="[A-Za-z0-9_]+",
    stamp=f"[0-9a-f]{{{HASH_LENGTH}}}",


# Each run's and family job's resolved configuration, the file its job reads, at the unit's
# address (which hashes the same values, so the file never changes); {path: configuration}.
RUN_CONFIGS = {
    f"results/runs/{address}/config.json": run.config.to_dict()
    for address, run in RUNS.items()
}
JOB_CONFIGS = {
    f"results/jobs/{family}/{address}/config.json": job.config
    for family, jobs in FAMILY_JOBS.items()
    for address, job in jobs.items()
}


def write_configs(configs, log):
    """Write a preset's configuration files (one local job for all: no job, log or console
    lines per unit); the log names how many."""
    for path, values in configs.items():
        write_json(path, dict(sorted(values.items())))
    with open(log, "w") as stream:
        print(f"wrote {len(configs)} configuration files", file=stream)


def speed_flags():
    speed = config.get("speed", {})
    flags = [f"--precision {speed.get('precision', 'fp32')}"]
    flags += ["--channels-last"] if speed.get("channels_last") else []
    return " ".join(flags + (["--compile"] if speed.get("compile") else []))


def dataset_manifest(address):
    return rules.prepare_dataset.output.manifest.format(dataset=address)


def ancient_all(paths):
    """Every input is a content address or a stamp named after its inputs' addresses, so its
    file time (reset by dvc pull or a copy) must never force a rerun: marked ancient."""
    return {key: ancient(path) for key, path in paths.items()}


def run_dataset(wildcards):
    return ancient(dataset_manifest(RUNS[wildcards.run].data))


def prepare_command(wildcards, output):
    ds = DATASETS[wildcards.dataset]
    out = os.path.dirname(output.manifest)
    return shlex.join(dataset_command(ds.name, ds.spec, out, config))


def family_job(wildcards):
    return FAMILY_JOBS[wildcards.family][wildcards.job]


def family_job_data(wildcards):
    job = family_job(wildcards)
    data = {ds.name: ds.address for ds in DATASETS.values() if ds.name in job.datasets}
    return ancient_all(
        {name: dataset_manifest(address) for name, address in data.items()}
    )


def family_data_args(wildcards):
    data = family_job_data(wildcards)
    return " ".join(f"{name}={os.path.dirname(path)}" for name, path in data.items())


def family_results(wildcards):
    jobs = FAMILY_JOBS[wildcards.family]
    return ancient(
        expand("results/jobs/{family}/{job}/result.json", job=jobs, **wildcards)
    )


def family_tables_dir(family):
    return f"{OUT}/families/{family}"


def family_claims_args(wildcards, input):
    return " ".join(f"{fam}={family_tables_dir(fam)}" for fam in FAMILY_JOBS)


def figure_path(fig, ext="png"):
    return f"figures/{PRESET}/{fig}.{ext}"


def all_outputs():
    # Every stamp is a target: a changed one is then missing, so its aggregate is rebuilt, and
    # the claims and figures that read it follow (their inputs are ancient).
    return [
        *(figure_path(fig) for fig in [*FIGURES, *FAMILY_FIGURES]),
        TABLES_STAMP,
        *FAMILY_STAMPS.values(),
        f"{OUT}/claims.md",
    ]


def figure_inputs(wildcards):
    if wildcards.fig in FAMILY_FIGURES:
        return ancient_all({"tables": FAMILY_STAMPS[FAMILY_FIGURES[wildcards.fig]]})
    inputs = {"tables": TABLES_STAMP}
    if wildcards.fig == "fig1":
        inputs["toy"] = rules.run_toy.output[0]
    return ancient_all(inputs)


def figure_tables(wildcards, input):
    return os.path.dirname(input.tables)


def figure_caption(wildcards):
    if wildcards.fig in FAMILY_FIGURES:
        return family_figures()[wildcards.fig][1]
    return targets.figure_caption(wildcards.fig, RUNS)
