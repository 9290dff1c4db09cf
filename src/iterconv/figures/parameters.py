"""Effective parameter count and weight deviation (appendix figs 7 and 9)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.standard import stage_color
from iterconv.figures.style import (
    COUPLING_AXIS_LABEL,
    coupling_color,
    log_axes,
    mean_ci95,
    placeholder,
    style_ax,
)
from iterconv.results import coupling_order, with_setting


def _setting_palette(df: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    order = coupling_order(df["setting"])
    return order, {s: coupling_color(s, order) for s in order}


def plot_epc(runs: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Effective against raw parameter count (log-log), one dot per run, identity dashed."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = runs.dropna(subset=["epc", "parameters"])
    df = df[(df["epc"] > 0) & (df["parameters"] > 0)]
    if df.empty:
        return placeholder(ax, "no parameter counts")
    df = with_setting(df)
    order, palette = _setting_palette(df)
    sns.scatterplot(
        df, x="parameters", y="epc", hue="setting", hue_order=order, palette=palette, s=25, ax=ax
    )
    lo, hi = df[["epc", "parameters"]].min().min(), df[["epc", "parameters"]].max().max()
    ax.plot([lo, hi], [lo, hi], "--", color="black", linewidth=0.8)
    log_axes(ax, x=True, y=True)
    return style_ax(ax, None, "# raw parameters", "# effective parameters")


def plot_error_vs_count(runs: pd.DataFrame, count: str = "epc", ax: Axes | None = None) -> Axes:
    """Validation error against ``count`` (``parameters`` or ``epc``, log x) per setting."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = runs.dropna(subset=[count, "val_error"])
    df = df[df[count] > 0]
    if df.empty:
        return placeholder(ax, f"no {count} values")
    df = with_setting(df)
    order, palette = _setting_palette(df)
    sns.scatterplot(
        df, x=count, y="val_error", hue="setting", hue_order=order, palette=palette, s=25, ax=ax
    )
    log_axes(ax, x=True)
    xlabel = "# effective parameters" if count == "epc" else "# raw parameters"
    return style_ax(ax, None, xlabel, "Error rate", percent=True)


def plot_deviation(stages: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Mean normalised weight deviation per stage against the coupling setting (95% CI)."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = stages.dropna(subset=["deviation"]) if "deviation" in stages else stages.iloc[0:0]
    if df.empty:
        return placeholder(ax, "no weight deviations")
    df = with_setting(df).assign(stage=lambda d: d["stage"].astype(int))
    palette = {s: stage_color(s) for s in df["stage"].unique()}
    sns.pointplot(
        df,
        x="setting",
        y="deviation",
        hue="stage",
        palette=palette,
        order=coupling_order(df["setting"]),
        errorbar=mean_ci95,
        dodge=0.3,
        markersize=5,
        linewidth=1.2,
        ax=ax,
    )
    style_ax(ax, None, COUPLING_AXIS_LABEL, "Mean normalised deviation")
    ax.tick_params(axis="x", labelsize="small", rotation=30)
    return ax
