"""The toy inverse problem of fig 1: read-out trajectories across blocks."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import placeholder, style_ax

METHOD_TITLES = {
    "feedforward": "Feedforward network",
    "algorithm": "Error-corrective algorithm",
    "resnet": "ResNet",
    "recurrent": "Recurrent ResNet",
}
POINT_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _trajectory(df: pd.DataFrame, point, perturbation: str) -> pd.DataFrame:
    sel = (df["point"] == point) & (df["perturbation"] == perturbation)
    return df[sel].sort_values("step")


def plot_trajectories(
    toy: pd.DataFrame, method: str, perturbation: str = "none", ax: Axes | None = None
) -> Axes:
    """Estimates (z1, z2) across blocks for each test point of one method.

    ``perturbation="none"``: the unperturbed trajectory; ``"drop4"``: the trajectory with the
    4th block dropped (solid) over the unperturbed one (faint); ``"extra"``: the last block
    applied repeatedly (broken line) after the unperturbed trajectory. True targets: black x.
    """
    ax = Figure(figsize=(3, 3)).subplots() if ax is None else ax
    df = toy[toy["method"] == method] if "method" in toy else toy.iloc[0:0]
    if df.empty or perturbation not in set(df["perturbation"]):
        return placeholder(ax, f"no '{perturbation}' trajectories\nfor {method}")
    for i, point in enumerate(sorted(df["point"].unique())):
        color = POINT_COLORS[i % len(POINT_COLORS)]
        base = _trajectory(df, point, "none")
        if perturbation == "none":
            ax.plot(base["z1"], base["z2"], "-o", color=color, markersize=3, linewidth=1.2)
        else:
            ax.plot(base["z1"], base["z2"], "-", color=color, alpha=0.3, linewidth=1)
            pert = _trajectory(df, point, perturbation)
            style = "-o" if perturbation == "drop4" else "--o"
            ax.plot(pert["z1"], pert["z2"], style, color=color, markersize=2.5, linewidth=1.2)
        if {"true_z1", "true_z2"} <= set(df.columns) and not base.empty:
            ax.plot(
                base["true_z1"].iloc[0],
                base["true_z2"].iloc[0],
                "x",
                color="black",
                markersize=8,
                markeredgewidth=2,
                zorder=5,
            )
    style_ax(ax, METHOD_TITLES.get(method, method), r"$\hat z_1$", r"$\hat z_2$")
    ax.grid(alpha=0.3, linewidth=0.6)
    return ax
