"""The figures the pipeline can draw: name -> builder, caption and data requirement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from iterconv.figures import compose, variants
from iterconv.models import TORCHVISION_VARIANTS
from iterconv.results import (
    RELATED_VARIANTS,
    VARIANT_NAMES,
    Tables,
    core_runs,
    dataset_name,
    digitclutter_dataset,
    main_dataset,
    ordinary_training,
    select,
    variant_runs,
)

# The report's groups, as the paper orders its figures.
GROUPS = ("main", "supplementary", "related", "beyond")


@dataclass(frozen=True)
class FigureSpec:
    """One figure.

    Attributes:
        name: file stem and CLI name (``fig3``, ``figS1``).
        build: tables -> figure (never saves).
        caption: 1-3 sentences; a format string over :func:`caption_context`'s keys.
        available: runs.csv -> whether the preset trained the runs the figure needs.
        requirement: what ``available`` checks, in words (shown when it is missing).
        group: where the report shows it, one of :data:`GROUPS`.
        related_family: for a figure of a related paper, the experiment family of that paper.
    """

    name: str
    build: Callable[[Tables], Figure]
    caption: str
    available: Callable[[pd.DataFrame], bool]
    requirement: str
    group: str = "main"
    related_family: str | None = None


# Columns that tell the settings of a grid apart (runs of one setting differ only by seed).
SETTING_COLUMNS = ("variant", "coupling", "init", "width", "bn_gamma", "kernel", "couple_from")


def interval_text(runs: pd.DataFrame, marks: str = "bars") -> str:
    """What the error ``marks`` (bars, bands) of ``runs`` show, from their number of seeds per
    setting: a bootstrap interval needs two seeds (:func:`iterconv.figures.style.mean_ci95`)."""
    keys = [c for c in SETTING_COLUMNS if c in runs]
    if runs.empty or not keys:
        return "no runs"
    counts = runs.groupby(keys, dropna=False).size()
    low, high = int(counts.min()), int(counts.max())
    if high < 2:
        return f"one seed per setting, so no {marks}"
    seeds = f"{low}-{high}" if low < high else str(high)
    return f"{marks}: 95% bootstrap CI of the mean across {seeds} seeds"


def block_types(runs: pd.DataFrame) -> str:
    """The block types of the variants figure, in its order (e.g. ``ResNet, plain, VAN``)."""
    present = set(variant_runs(runs, main_dataset(runs)).get("variant", []))
    names = ", ".join(name for v, name in VARIANT_NAMES.items() if v in present) or "none"
    tv = present & set(TORCHVISION_VARIANTS)
    return f"{names}; tv: torchvision's architectures" if tv else names


def caption_context(runs: pd.DataFrame) -> dict[str, str]:
    """Values the captions refer to: ``{dataset}``, ``{digits}``, ``{error_datasets}``,
    ``{n_runs}``, ``{width}``, ``{interval}``, ``{band}`` and ``{intervals}`` (what the error
    bars and bands of the main dataset's ordinary-training grid show), ``{instances}`` (fig 2's
    uncoupled runs) and ``{block_types}``."""
    ds = main_dataset(runs)
    grid = ordinary_training(select(runs, dataset=ds)) if ds else runs.iloc[0:0]
    std = core_runs(runs, ds)
    digits = digitclutter_dataset(runs, exclude=ds)
    name = dataset_name(ds) if ds else "no dataset"
    return {
        "dataset": name,
        "digits": dataset_name(digits) if digits else "no Digitclutter dataset",
        "error_datasets": f"{name} and {dataset_name(digits)}" if digits else name,
        "n_runs": str(len(runs)),
        "width": str(compose.preferred_width(std)) if len(std) else "-",
        "interval": interval_text(grid),
        "band": interval_text(grid, "bands"),
        "intervals": interval_text(grid, "bars and bands"),
        "instances": interval_text(select(std, init="nonrecurrent", coupling=0.0)),
        "block_types": block_types(runs),
    }


def _has(variant: str, **extra) -> Callable[[pd.DataFrame], bool]:
    def check(runs: pd.DataFrame) -> bool:
        if runs.empty:
            return False
        return len(select(core_runs(runs, main_dataset(runs), variant), **extra)) > 0

    return check


def _has_toy(_runs: pd.DataFrame) -> bool:
    return True  # the toy does not depend on runs.csv; its own file is checked when drawn


FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec(
            "fig1",
            compose.fig1,
            "Toy inverse problem (the paper's Fig 1 b-d; its panel a is a diagram): a read-out "
            "trajectories of the estimate across blocks for a feedforward net, the "
            "error-corrective algorithm, a ResNet and a recurrent ResNet, b with the 4th block "
            "dropped and c with the last block applied repeatedly (broken lines); black x: the "
            "true value.",
            _has_toy,
            "the toy trajectories (results/toy/trajectories.csv)",
        ),
        FigureSpec(
            "fig2",
            compose.fig2,
            "Standard non-recurrent ResNets on {dataset}. a Error after early read-out, block "
            "dropout and extra evaluations per stage ({width} channels; one instance "
            "emphasised; dashed: chance). b Indices per stage (small dots: runs) and means "
            "({instances}). c Error against Convergence and Divergence Index.",
            _has("standard", init="nonrecurrent", coupling=0.0),
            "standard non-recurrent (lambda = 0) runs",
        ),
        FigureSpec(
            "fig3",
            compose.fig3,
            "Gradient-coupled ResNets. a Convergence and Divergence Index on {dataset} by "
            "coupling and initialisation, per width (means; {interval}). b Error on "
            "{error_datasets}. c Error against the indices; lines join models with the "
            "same raw parameter count (width).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "fig4",
            compose.fig4,
            "Improperly convergent ResNets (ICR) on {dataset}: a Convergence and Divergence "
            "Index and b error by coupling and initialisation, per width (means; {interval}).",
            _has("icr"),
            "ICR runs",
        ),
        FigureSpec(
            "figS1",
            compose.figS1,
            "Recurrence Index on {dataset} by coupling and initialisation for a gradient-coupled "
            "and b improperly convergent ResNets (means; {interval}).",
            _has("standard"),
            "standard runs",
            group="supplementary",
        ),
        FigureSpec(
            "figS2",
            compose.figS2,
            "Properly convergent ResNets (PCR) on {dataset}: a indices of iterative convergence "
            "and b error by coupling and initialisation, per width (means; {interval}).",
            _has("pcr"),
            "PCR runs",
            group="supplementary",
        ),
        FigureSpec(
            "figS3",
            compose.figS3,
            "Error of gradient-coupled ResNets by coupling and initialisation on the datasets "
            "other than {dataset} (Digitclutter variants, CIFAR-100, CIFAR-10 with few "
            "samples, MNIST: those this preset trained).",
            lambda runs: len(compose.other_datasets(runs)) > 0,
            "standard runs on a dataset besides the main one",
            group="supplementary",
        ),
        FigureSpec(
            "fig9",
            compose.fig9,
            "Error of all standard ResNets on {dataset}, training variations included, against "
            "a their raw and b their effective parameter count, by coupling and initialisation.",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
            group="supplementary",
        ),
        FigureSpec(
            "figS4",
            compose.figS4,
            "Training variations on {dataset}: error by coupling with BN gamma initialised to "
            "0.1, a triangular coupling kernel, and coupling from block 5 on, each against "
            "ordinary training of the same widths (means; {interval}).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
            group="supplementary",
        ),
        FigureSpec(
            "figS5",
            compose.figS5,
            "Indices of iterative convergence on {dataset} by coupling for the training "
            "variations and ordinary training (means; {interval}).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
            group="supplementary",
        ),
        FigureSpec(
            "fig5",
            compose.fig5,
            "Mean training (left) and validation (right) error per epoch of standard ResNets "
            "with {width} channels on {dataset}, by coupling and initialisation (means; "
            "{band}).",
            _has("standard"),
            "standard runs",
            group="supplementary",
        ),
        FigureSpec(
            "fig6",
            compose.fig6,
            "Standard ResNets on {dataset}. a Indices measured against the unperturbed model's "
            "own predictions. b Cross-entropy and c distance to the stage's final "
            "representation along early read-out and extra evaluations (log scale). Means; "
            "{intervals}.",
            _has("standard"),
            "standard runs",
            group="supplementary",
        ),
        FigureSpec(
            "fig7",
            compose.fig7,
            "Standard ResNets on {dataset}: a effective against raw parameter count (dashed: "
            "equality); error against b raw and c effective parameter count; d mean normalised "
            "weight deviation per stage by coupling ({interval}).",
            _has("standard"),
            "standard runs",
            group="supplementary",
        ),
        FigureSpec(
            "fig10",
            compose.figS5,
            "Appendix fig 10 (= S5 Fig): indices of iterative convergence on {dataset} by "
            "coupling for the training variations (means; {interval}).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
            group="supplementary",
        ),
        FigureSpec(
            "fig_variants",
            compose.fig_variants,
            "Indices of iterative convergence and error on {dataset} across the block types "
            "this preset trained ({block_types}), uncoupled training (dots: runs; means; "
            "{interval}).",
            lambda runs: (
                not select(
                    variant_runs(runs, main_dataset(runs)),
                    variant=[*RELATED_VARIANTS, *TORCHVISION_VARIANTS],
                ).empty
            ),
            "plain, VAN, implicit or torchvision runs",
            group="beyond",
        ),
        FigureSpec(
            "fig_van_depth",
            variants.fig_van_depth,
            "The CIFAR setting of the VAN paper (phasing out skip-connections, its fig 2): "
            "held-out accuracy of ResNets, plain networks, VANs and VANs with lambda = 0 of 4 "
            "stages x n blocks against depth (mean, bars: min to max over seeds), and training "
            "(dashed) and held-out (solid) error of plain and VAN networks with VAN's mean alpha "
            "residual (gold).",
            lambda runs: not variants.van_depth_runs(runs).empty,
            "4-stage runs (sweeps van_cifar10, van_cifar100)",
            group="related",
            related_family="van",
        ),
    )
}


def figure_names(runs: pd.DataFrame) -> list[str]:
    """Names of the figures whose runs the preset has trained, in registry order."""
    return [name for name, spec in FIGURES.items() if spec.available(runs)]


def build_figure(name: str, tables: Tables) -> Figure:
    """The figure ``name``, or a labelled placeholder saying which runs are missing."""
    spec = FIGURES[name]
    if not spec.available(tables.runs):
        ds = main_dataset(tables.runs) or "any dataset"
        return compose.message_figure(
            name, f"{name} needs {spec.requirement}:\nnone on {ds} in this preset"
        )
    return spec.build(tables)


def caption(name: str, runs: pd.DataFrame) -> str:
    """The filled caption of figure ``name``."""
    return FIGURES[name].caption.format(**caption_context(runs))
