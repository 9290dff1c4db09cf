"""Figures of the ``shortcut`` family (Liu et al. 2019, shortcut connections in a
two-layer ResNet): Table 1 as a plot, Figure 5's paths."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import log_axes, placeholder, style_ax

# Okabe-Ito colours, one per method.
METHOD_COLORS = {"ssw": "#0072B2", "plain": "#D55E00", "cnn": "#009E73"}
METHOD_LABELS = {"ssw": "ResNet w/ SSW", "plain": "ResNet w/o SSW", "cnn": "CNN (Du et al.)"}
# Line style and marker face per initialisation ball (None: the line colour).
BALL_STYLES: dict[str, tuple[str, str | None]] = {
    "theory": ("-o", None),
    "calibrated": (":s", "white"),
}
PATH_TITLES = {"ssw": "GD with step-size warm-up", "plain": "GD without warm-up"}
ERROR_LABELS = {
    "w_err": r"$\|w_t - w^*\|$",
    "a_err": r"$\|a_t - a^*\|$",
    "a_bar_err": r"$\|a_t - \bar a\|$",
}


def plot_success(
    success: pd.DataFrame,
    paper: Mapping[str, Mapping[int, float]] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Success rate against k per method and ball (solid: theory ball, dotted with open
    markers: calibrated ball; 95% interval bars from ``ci_low`` and ``ci_high``);
    ``paper``: {method: {k: rate}} drawn as faint dashed lines."""
    if ax is None:
        fig = Figure(figsize=(5, 3.4), layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    if success.empty:
        placeholder(ax, "no Table 1 jobs in this preset")
        return fig
    balls = [b for b in BALL_STYLES if b in set(success["ball"])] if "ball" in success else [""]
    for method in [m for m in METHOD_COLORS if m in set(success["method"])]:
        color = METHOD_COLORS[method]
        for ball in balls:
            df = success[success["method"] == method]
            df = (df[df["ball"] == ball] if ball else df).sort_values("k")
            if df.empty:
                continue
            yerr = [df["success_rate"] - df["ci_low"], df["ci_high"] - df["success_rate"]]
            fmt, face = BALL_STYLES.get(ball, ("-o", color))
            ax.errorbar(
                df["k"],
                df["success_rate"],
                yerr=yerr,
                fmt=fmt,
                color=color,
                markerfacecolor=face,
                markersize=4,
                capsize=2,
                linewidth=1.4,
                label=METHOD_LABELS[method] + (f", {ball} ball" if ball else ""),
            )
        if paper and method in paper:
            ks = sorted(paper[method])
            ax.plot(ks, [paper[method][k] for k in ks], "--", color=color, alpha=0.45)
    ax.plot([], [], "--", color="#777777", alpha=0.6, label="paper (Table 1)")
    style_ax(ax, None, "number of patches k", "success rate", percent=True)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small", frameon=False, loc="lower right")
    return fig


def plot_paths(paths: pd.DataFrame) -> Figure:
    """Figure 5: one row per warm-up setting; columns: distances to the optima (log y),
    the angle phi_t to v*, and a_t' a*, against the iteration."""
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False)
    for row, method in zip(axes, PATH_TITLES, strict=True):
        df = paths[paths["method"] == method].sort_values("step") if len(paths) else paths
        if df.empty:
            for ax in row:
                placeholder(ax, f"no path for '{method}'")
            continue
        err_ax, phi_ax, dot_ax = row
        for column, label in ERROR_LABELS.items():
            err_ax.plot(df["step"], df[column].clip(lower=1e-12), label=label, linewidth=1.3)
        log_axes(err_ax, y=True)
        err_ax.legend(fontsize="small", frameon=False)
        phi_ax.plot(df["step"], df["phi"], color="#CC79A7", linewidth=1.3)
        phi_ax.axhline(math.pi, color="#999999", linestyle=":", linewidth=1)
        dot_ax.plot(df["step"], df["a_dot"], color="#E69F00", linewidth=1.3)
        dot_ax.axhline(0, color="#999999", linestyle=":", linewidth=1)
        style_ax(err_ax, PATH_TITLES[method], "iteration t", "distance")
        style_ax(phi_ax, None, "iteration t", r"angle $\phi_t$ to $v^*$")
        style_ax(dot_ax, None, "iteration t", r"$a_t^\top a^*$")
    return fig
