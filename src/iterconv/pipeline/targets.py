"""What the workflow builds for a preset: dataset preparation commands and figure names."""

from __future__ import annotations

from typing import Any

from iterconv.pipeline.grid import Run


def dataset_command(name: str, params: dict[str, Any]) -> list[str]:
    """Arguments of ``python -m iterconv`` that prepare dataset ``name`` into results/data/."""
    spec = params["datasets"][name]
    out = f"results/data/{name}"
    if spec["source"] == "digitclutter":
        args = ["digitclutter", "--out", out, "--n-digits", str(spec.get("n_digits", 3))]
        for key in ("n_train", "n_val", "seed"):
            if key in spec:
                args += [f"--{key.replace('_', '-')}", str(spec[key])]
        return args
    args = [
        "prepare",
        "--dataset",
        spec["source"],
        "--out",
        out,
        "--archives",
        str(params.get("archives", "data/archives")),
    ]
    if "n_train" in spec:
        args += ["--n-train", str(spec["n_train"])]
    if params.get("download"):
        args.append("--download")
    return args


def run_table(runs: dict[str, Run]):
    """The runs' configurations as a data frame (the configuration columns of runs.csv)."""
    import pandas as pd

    return pd.DataFrame([{"run_id": rid, **run.config.to_dict()} for rid, run in runs.items()])


def figure_names(runs: dict[str, Run]) -> list[str]:
    """Figures the preset's runs can support; fig1 (the toy example) always."""
    from iterconv.figures.registry import FIGURES

    table = run_table(runs)
    return [name for name, spec in FIGURES.items() if name == "fig1" or spec.available(table)]


def figure_caption(name: str, runs: dict[str, Run]) -> str:
    """The caption of figure ``name`` for these runs (the report shows it)."""
    from iterconv.figures.registry import caption

    return caption(name, run_table(runs))
