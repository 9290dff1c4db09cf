"""Indices and error as functions of coupling and initialisation (figs 3, 4, S1-S5, 10)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import (
    COUPLING_AXIS_LABEL,
    INDEX_NAMES,
    mean_ci95,
    placeholder,
    style_ax,
    width_color,
    width_palette,
)
from iterconv.results import coupling_order, with_setting


def _new_ax(ax: Axes | None) -> Axes:
    return Figure(figsize=(4, 3)).subplots() if ax is None else ax


def plot_by_setting(
    runs: pd.DataFrame,
    y: str,
    ax: Axes | None = None,
    hue: str = "width",
    palette: dict | None = None,
    ylabel: str | None = None,
    percent: bool = False,
    title: str | None = None,
) -> Axes:
    """Mean of ``y`` per coupling setting (x) and ``hue`` group, 95% CI across seeds.

    Args:
        runs: one row per run with ``coupling``, ``init``, ``y`` and ``hue`` columns.
        y: column to plot (an index, 0..1, or ``val_error``, 0..1).
        hue: grouping column; ``width`` uses the project's width colours.
    """
    ax = _new_ax(ax)
    df = runs.dropna(subset=[y]) if y in runs else runs.iloc[0:0]
    if df.empty:
        return placeholder(ax, f"no {INDEX_NAMES.get(y, y)} values")
    df = with_setting(df)
    if hue == "width":
        df["width"] = df["width"].astype(int)
        palette = width_palette(df["width"])
    order = coupling_order(df["setting"])
    n_hue = df[hue].nunique()
    sns.pointplot(
        df,
        x="setting",
        y=y,
        hue=hue,
        order=order,
        palette=palette,
        errorbar=mean_ci95,
        dodge=0.15 * (n_hue > 1) * min(n_hue, 4) / 2,
        markersize=5,
        linewidth=1.3,
        capsize=0.1,
        err_kws={"linewidth": 1.1},
        ax=ax,
    )
    style_ax(ax, title, COUPLING_AXIS_LABEL, ylabel or INDEX_NAMES.get(y, y), percent)
    ax.tick_params(axis="x", labelsize="small", rotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return ax


def plot_error_vs_index(runs: pd.DataFrame, index: str, ax: Axes | None = None) -> Axes:
    """Validation error against an index: one dot per run, and per width (= same raw parameter
    count) a line through the means of its coupling settings, in coupling order."""
    ax = _new_ax(ax)
    df = runs.dropna(subset=[index, "val_error"]) if index in runs else runs.iloc[0:0]
    if df.empty:
        return placeholder(ax, f"no runs with a {INDEX_NAMES.get(index, index)}")
    df = with_setting(df)
    for width, group in df.groupby("width"):
        color = width_color(width)
        ax.scatter(group[index], group["val_error"], s=12, color=color, alpha=0.35, linewidths=0)
        means = group.groupby("setting")[[index, "val_error"]].mean()
        means = means.loc[coupling_order(means.index)]
        ax.plot(
            means[index],
            means["val_error"],
            "-o",
            color=color,
            markersize=4,
            linewidth=1.2,
            label=str(int(width)),
        )
    return style_ax(ax, None, INDEX_NAMES.get(index, index), "Error rate", percent=True)
