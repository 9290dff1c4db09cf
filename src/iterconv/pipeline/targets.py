"""What the workflow builds for a preset: dataset preparation commands and figure names."""

from __future__ import annotations

from typing import Any

from iterconv.pipeline.address import resolved_dataset_spec
from iterconv.pipeline.grid import Run


def dataset_command(name: str, spec: dict[str, Any], out: str, params: dict[str, Any]) -> list[str]:
    """Arguments of ``python -m iterconv`` that prepare dataset ``name`` (``spec``) into ``out``."""
    spec = resolved_dataset_spec(spec)
    if spec["source"] == "digitclutter":
        args = ["digitclutter", "--out", out, "--name", name]
        for key in ("n_digits", "n_train", "n_val", "seed"):
            args += [f"--{key.replace('_', '-')}", str(spec[key])]
        return args
    args = ["prepare", "--dataset", spec["source"], "--out", out, "--name", name]
    args += ["--archives", str(params.get("archives", "data/archives"))]
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


# The report's categories (Snakemake sorts them by name, hence the numbers).
REPORT_CATEGORIES = {
    "claims": "1. Claims",
    "tables": "2. Tables",
    "main": "3. Main figures",
    "supplementary": "4. Supplementary and appendix figures",
    "related": "5. Related papers",
    "beyond": "6. Beyond the paper",
}


def _figure_group(name: str, family: str | None) -> tuple[str, str | None]:
    """(group, family of its paper) of figure ``name``; ``family``: the experiment family that
    draws it, for a family's figure."""
    if family is not None:
        return "related", family
    from iterconv.figures.registry import FIGURES

    return FIGURES[name].group, FIGURES[name].related_family


def report_category(name: str, family: str | None = None) -> str:
    """The report's category of figure ``name``: grouped as the paper is."""
    return REPORT_CATEGORIES[_figure_group(name, family)[0]]


def report_subcategory(name: str, family: str | None = None) -> str | None:
    """The report's subcategory of figure ``name``: a related paper's title, else none."""
    family = _figure_group(name, family)[1]
    if family is None:
        return None
    from iterconv.families.registry import family as family_module

    return family_module(family).TITLE
