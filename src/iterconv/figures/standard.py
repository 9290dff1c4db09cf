"""Perturbation curves and per-stage indices of standard ResNets (fig 2)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import (
    INDEX_NAMES,
    integer_ticks,
    mean_ci95,
    placeholder,
    style_ax,
    width_palette,
)

# Stage colours (distinct from the width colours, which fig 2 also uses).
STAGE_COLORS = ("#0072B2", "#D55E00", "#555555", "#F0E442", "#000000")

PERTURBATIONS = {
    "readout": ("Early read-out", "# evaluated blocks"),
    "dropout": ("Block dropout", "Dropped block"),
    "extra": ("Extra evaluations", "# additional evaluations"),
}


def stage_color(stage: int) -> str:
    return STAGE_COLORS[(int(stage) - 1) % len(STAGE_COLORS)]


def plot_curves(
    curves: pd.DataFrame,
    perturbation: str,
    ax: Axes | None = None,
    highlight: str | None = None,
    y: str = "error",
    chance: float | None = None,
) -> Axes:
    """Error (or ``y``) after each perturbation step, one thin line per run and stage, stages
    coloured, the run ``highlight`` drawn thick.

    Args:
        curves: tidy rows of ``curves.csv`` (``run_id``, ``stage``, ``perturbation``, ``step``).
        chance: chance error, drawn as a dashed line.
    """
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = curves[curves["perturbation"] == perturbation].dropna(subset=[y])
    title, xlabel = PERTURBATIONS.get(perturbation, (perturbation, "step"))
    if df.empty:
        return placeholder(ax, f"no {perturbation} curves")
    for (run, stage), g in df.sort_values("step").groupby(["run_id", "stage"]):
        strong = run == highlight
        ax.plot(
            g["step"],
            g[y],
            color=stage_color(stage),
            alpha=0.9 if strong else 0.25,
            linewidth=2.0 if strong else 0.8,
            zorder=3 if strong else 2,
            label=f"Stage {int(stage)}" if strong else None,
        )
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=0.8, label="chance")
    integer_ticks(ax.xaxis)
    return style_ax(ax, title, xlabel, "Error rate" if y == "error" else y, percent=y == "error")


def plot_stage_indices(
    stages: pd.DataFrame, runs: pd.DataFrame, index: str, ax: Axes | None = None
) -> Axes:
    """An index per stage and for the network (mean over stages): small translucent dots per
    run, large dots with 95% CI for the mean across instances, coloured by width."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    per_stage = stages[["run_id", "stage", "width", index]].assign(
        where=lambda d: "Stage " + d["stage"].astype(int).astype(str)
    )
    network = runs[["run_id", "width", index]].assign(where="Mean")
    df = pd.concat([per_stage, network], ignore_index=True).dropna(subset=[index])
    if df.empty:
        return placeholder(ax, f"no {INDEX_NAMES.get(index, index)} values")
    df["width"] = df["width"].astype(int)
    order = sorted(df["where"].unique(), key=lambda w: (w == "Mean", w))
    palette = width_palette(df["width"])
    sns.stripplot(
        df,
        x="where",
        y=index,
        hue="width",
        order=order,
        palette=palette,
        dodge=True,
        alpha=0.35,
        size=3,
        jitter=0.1,
        legend=False,
        ax=ax,
    )
    sns.pointplot(
        df,
        x="where",
        y=index,
        hue="width",
        order=order,
        palette=palette,
        errorbar=mean_ci95,
        dodge=0.8 - 0.8 / df["width"].nunique(),
        linestyle="none",
        markersize=6,
        ax=ax,
    )
    return style_ax(ax, INDEX_NAMES.get(index, index), "", INDEX_NAMES.get(index, index))


def plot_error_scatter(runs: pd.DataFrame, index: str, ax: Axes | None = None) -> Axes:
    """Validation error of each run against one index, coloured by width."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = runs.dropna(subset=[index, "val_error"])
    if df.empty:
        return placeholder(ax, f"no runs with a {INDEX_NAMES.get(index, index)}")
    df = df.assign(width=df["width"].astype(int))
    sns.scatterplot(
        df, x=index, y="val_error", hue="width", palette=width_palette(df["width"]), s=25, ax=ax
    )
    return style_ax(ax, None, INDEX_NAMES.get(index, index), "Error rate", percent=True)
