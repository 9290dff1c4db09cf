"""The figures the pipeline can draw: name -> builder, caption and data requirement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from iterconv.figures import compose, variants
from iterconv.results import (
    RELATED_VARIANTS,
    Tables,
    core_runs,
    dataset_name,
    digitclutter_dataset,
    main_dataset,
    select,
    variant_runs,
)


@dataclass(frozen=True)
class FigureSpec:
    """One figure.

    Attributes:
        name: file stem and CLI name (``fig3``, ``figS1``).
        build: tables -> figure (never saves).
        caption: 1-3 sentences; a format string over :func:`caption_context`'s keys.
        available: runs.csv -> whether the preset trained the runs the figure needs.
        requirement: what ``available`` checks, in words (shown when it is missing).
    """

    name: str
    build: Callable[[Tables], Figure]
    caption: str
    available: Callable[[pd.DataFrame], bool]
    requirement: str


def caption_context(runs: pd.DataFrame) -> dict[str, str]:
    """Values the captions refer to: ``{dataset}``, ``{digits}``, ``{error_datasets}``,
    ``{n_runs}``, ``{width}``."""
    ds = main_dataset(runs)
    std = core_runs(runs, ds)
    digits = digitclutter_dataset(runs, exclude=ds)
    name = dataset_name(ds) if ds else "no dataset"
    return {
        "dataset": name,
        "digits": dataset_name(digits) if digits else "no Digitclutter dataset",
        "error_datasets": f"{name} and {dataset_name(digits)}" if digits else name,
        "n_runs": str(len(runs)),
        "width": str(compose.preferred_width(std)) if len(std) else "-",
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
            "Toy inverse problem: read-out trajectories of the estimate across blocks for a "
            "feedforward net, the error-corrective algorithm, a ResNet and a recurrent ResNet "
            "(b), with the 4th block dropped (c) and the last block applied repeatedly (d, "
            "broken lines); black x: the true value.",
            _has_toy,
            "the toy trajectories (results/toy/trajectories.csv)",
        ),
        FigureSpec(
            "fig2",
            compose.fig2,
            "Standard non-recurrent ResNets on {dataset}. a Error after early read-out, block "
            "dropout and extra evaluations per stage ({width} channels; one instance "
            "emphasised; dashed: chance). b Indices per stage (small dots) and means with 95% "
            "CI across instances. c Error against Convergence and Divergence Index.",
            _has("standard", init="nonrecurrent", coupling=0.0),
            "standard non-recurrent (lambda = 0) runs",
        ),
        FigureSpec(
            "fig3",
            compose.fig3,
            "Gradient-coupled ResNets. a Convergence and Divergence Index on {dataset} by "
            "coupling and initialisation, per width (means, 95% CI across seeds). b Error on "
            "{error_datasets}. c Error against the indices; lines join models with the "
            "same raw parameter count (width).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "fig4",
            compose.fig4,
            "Improperly convergent ResNets (ICR) on {dataset}: a Convergence and Divergence "
            "Index and b error by coupling and initialisation, per width (95% CI across seeds).",
            _has("icr"),
            "ICR runs",
        ),
        FigureSpec(
            "figS1",
            compose.figS1,
            "Recurrence Index on {dataset} by coupling and initialisation for a gradient-coupled "
            "and b improperly convergent ResNets (95% CI across seeds).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "figS2",
            compose.figS2,
            "Properly convergent ResNets (PCR) on {dataset}: a indices of iterative convergence "
            "and b error by coupling and initialisation, per width (95% CI across seeds).",
            _has("pcr"),
            "PCR runs",
        ),
        FigureSpec(
            "figS3",
            compose.figS3,
            "Error of gradient-coupled ResNets by coupling and initialisation on the datasets "
            "other than {dataset} (Digitclutter variants, CIFAR-100, CIFAR-10 with few "
            "samples, MNIST: those this preset trained).",
            lambda runs: len(compose.other_datasets(runs)) > 0,
            "standard runs on a dataset besides the main one",
        ),
        FigureSpec(
            "fig9",
            compose.fig9,
            "Error of all standard ResNets on {dataset}, training variations included, against "
            "a their raw and b their effective parameter count, by coupling and initialisation.",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
        ),
        FigureSpec(
            "figS4",
            compose.figS4,
            "Training variations on {dataset}: error by coupling with BN gamma initialised to "
            "0.1, a triangular coupling kernel, and coupling from block 5 on, each against "
            "ordinary training of the same widths (95% CI across seeds).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
        ),
        FigureSpec(
            "figS5",
            compose.figS5,
            "Indices of iterative convergence on {dataset} by coupling for the training "
            "variations and ordinary training (95% CI across seeds).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
        ),
        FigureSpec(
            "fig5",
            compose.fig5,
            "Mean training (left) and validation (right) error per epoch of standard ResNets "
            "with {width} channels on {dataset}, by coupling and initialisation (95% CI).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "fig6",
            compose.fig6,
            "Standard ResNets on {dataset}. a Indices measured against the unperturbed model's "
            "own predictions. b Cross-entropy and c distance to the stage's final "
            "representation along early read-out and extra evaluations (log scale).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "fig7",
            compose.fig7,
            "Standard ResNets on {dataset}: a effective against raw parameter count (dashed: "
            "equality); error against b raw and c effective parameter count; d mean normalised "
            "weight deviation per stage by coupling (95% CI).",
            _has("standard"),
            "standard runs",
        ),
        FigureSpec(
            "fig10",
            compose.figS5,
            "Appendix fig 10 (= S5 Fig): indices of iterative convergence on {dataset} by "
            "coupling for the training variations (95% CI across seeds).",
            lambda runs: not compose.variation_runs(runs).empty,
            "training-variation runs",
        ),
        FigureSpec(
            "fig_variants",
            compose.fig_variants,
            "Indices of iterative convergence and error on {dataset} across the block types of "
            "the related papers (ResNet, ICR, PCR, plain, VAN, implicit), uncoupled training "
            "(dots: runs; bars: 95% CI across seeds).",
            lambda runs: (
                not select(
                    variant_runs(runs, main_dataset(runs)),
                    variant=list(RELATED_VARIANTS),
                ).empty
            ),
            "plain, VAN or implicit runs",
        ),
        FigureSpec(
            "fig_van_depth",
            variants.fig_van_depth,
            "Seed 003's CIFAR setting (its fig 2): held-out accuracy of ResNets, plain "
            "networks, VANs and VANs with lambda = 0 of 4 stages x n blocks against depth "
            "(mean, bars: min to max over seeds), and training (dashed) and held-out (solid) "
            "error of plain and VAN networks with VAN's mean alpha residual (gold).",
            lambda runs: not variants.van_depth_runs(runs).empty,
            "4-stage runs (sweeps van_cifar10, van_cifar100)",
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
