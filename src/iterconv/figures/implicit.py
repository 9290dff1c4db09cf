"""Figures of the ``implicit`` family (implicit residual networks, Reshniak & Webster 2019):
Example 1 (function approximation) and Example 2 (two spirals). Every builder takes the
family's tables (``{name: DataFrame}``, as collected by
:func:`iterconv.families.implicit.collect`) and draws what is there."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from iterconv.figures.style import (
    COUPLING_COLORS,
    integer_ticks,
    log_axes,
    placeholder,
    shared_legend,
    style_ax,
)

Tables = dict[str, pd.DataFrame]

# The family's tables (built by families.implicit.collect).
TABLES = (
    "fn_runs",
    "fn_curves",
    "fn_fits",
    "fn_trajectories",
    "sp_runs",
    "sp_curves",
    "sp_robustness",
    "sp_regions",
    "sp_data",
)
# Training noise levels of Example 2, light to dark.
NOISE_COLORS = ("#999999", "#E69F00", "#D55E00", "#CC79A7", "#0072B2", "#009E73")


def _table(tables: Tables, name: str, *columns: str) -> pd.DataFrame:
    """``tables[name]``, or an empty frame when missing or lacking ``columns``."""
    df = tables.get(name)
    if df is None or df.empty or not set(columns) <= set(df.columns):
        return pd.DataFrame(columns=list(columns))
    return df


def theta_label(theta: float) -> str:
    return "explicit (θ = 0)" if theta == 0 else f"θ = {theta:g}"


def theta_colors(thetas) -> dict[float, str]:
    """Grey for the explicit ResNet, darker blues for larger theta."""
    order = sorted({float(t) for t in thetas})
    return {t: COUPLING_COLORS[min(i, len(COUPLING_COLORS) - 1)] for i, t in enumerate(order)}


def _first_seed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["seed"] == df["seed"].min()] if len(df) else df


def plot_losses(tables: Tables, depth: int | None, ax: Axes | None = None) -> Axes:
    """Training (solid) and validation (dashed) MSE over epochs per theta, mean over seeds."""
    ax = Figure().subplots() if ax is None else ax
    df = _table(tables, "fn_curves", "theta", "depth", "epoch", "train_loss", "val_loss")
    df = df[df["depth"] == depth]
    if df.empty:
        return placeholder(ax, "no Example 1 runs at this depth")
    colors = theta_colors(df["theta"])
    for theta, g in df.groupby("theta"):
        mean = g.groupby("epoch")[["train_loss", "val_loss"]].mean()
        ax.plot(mean.index, mean["train_loss"], color=colors[theta], label=theta_label(theta))
        ax.plot(mean.index, mean["val_loss"], "--", color=colors[theta])
    log_axes(ax, y=True)
    integer_ticks(ax.xaxis)
    return style_ax(ax, f"{depth} layers (solid: train, dashed: val.)", "epoch", "MSE")


def plot_iterations(tables: Tables, ax: Axes | None = None) -> Axes:
    """Mean forward (fixed-point) and backward (adjoint) iterations per layer against theta."""
    ax = Figure().subplots() if ax is None else ax
    df = _table(tables, "fn_runs", "theta", "depth", "fwd_iters", "bwd_iters")
    df = df[df["theta"] > 0]
    if df.empty:
        return placeholder(ax, "no implicit Example 1 runs")
    for i, (depth, g) in enumerate(df.groupby("depth")):
        mean = g.groupby("theta")[["fwd_iters", "bwd_iters"]].mean()
        color = NOISE_COLORS[(i + 4) % len(NOISE_COLORS)]
        ax.plot(mean.index, mean["fwd_iters"], "-o", color=color, label=f"{depth} layers, forward")
        ax.plot(
            mean.index, mean["bwd_iters"], "--s", color=color, label=f"{depth} layers, backward"
        )
    ax.legend(fontsize="small", frameon=False)
    return style_ax(ax, "Solver iterations per layer", "θ", "mean iterations")


def plot_gradients(tables: Tables, depth: int | None, ax: Axes | None = None) -> Axes:
    """Mean gradient magnitude of the layer weights over epochs per theta."""
    ax = Figure().subplots() if ax is None else ax
    df = _table(tables, "fn_curves", "theta", "depth", "epoch", "grad_norm")
    df = df[df["depth"] == depth]
    if df.empty:
        return placeholder(ax, "no Example 1 runs at this depth")
    colors = theta_colors(df["theta"])
    for theta, g in df.groupby("theta"):
        mean = g.groupby("epoch")["grad_norm"].mean()
        ax.plot(mean.index, mean.values, color=colors[theta], label=theta_label(theta))
    log_axes(ax, y=True)
    integer_ticks(ax.xaxis)
    return style_ax(ax, f"Gradient magnitude, {depth} layers", "epoch", "mean |dL/dW|")


def plot_fits(tables: Tables, depth: int | None, ax: Axes | None = None) -> Axes:
    """Target function (black) and the fitted functions of the first seed per theta."""
    ax = Figure().subplots() if ax is None else ax
    df = _first_seed(_table(tables, "fn_fits", "theta", "depth", "seed", "x", "y", "y_true"))
    df = df[df["depth"] == depth]
    if df.empty:
        return placeholder(ax, "no Example 1 fits at this depth")
    colors = theta_colors(df["theta"])
    first = df[df["theta"] == df["theta"].min()]
    ax.plot(first["x"], first["y_true"], color="black", linewidth=2, label="target")
    for theta, g in df.groupby("theta"):
        ax.plot(g["x"], g["y"], color=colors[theta], label=theta_label(theta))
    return style_ax(ax, f"Outputs, {depth} layers", "x", "y")


def plot_amplification(tables: Tables, ax: Axes | None = None) -> Axes:
    """Mean largest layer amplification factor (spectral radius of dz_{l+1}/dz_l) per theta;
    above the dotted line at 1 the trained layers are unstable steps."""
    ax = Figure().subplots() if ax is None else ax
    df = _table(tables, "fn_runs", "theta", "depth", "amplification")
    if df.empty:
        return placeholder(ax, "no Example 1 runs")
    for i, (depth, g) in enumerate(df.groupby("depth")):
        mean = g.groupby("theta")["amplification"].agg(["mean", "min", "max"])
        color = NOISE_COLORS[(i + 4) % len(NOISE_COLORS)]
        ax.plot(mean.index, mean["mean"], "-o", color=color, label=f"{depth} layers")
        ax.fill_between(mean.index, mean["min"], mean["max"], color=color, alpha=0.2)
    ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
    ax.legend(fontsize="small", frameon=False)
    return style_ax(ax, "Stability of the trained layers", "θ", "layer amplification")


def _depths(tables: Tables) -> list[int]:
    df = _table(tables, "fn_runs", "depth")
    return sorted(int(d) for d in df["depth"].unique())


def function_figure(tables: Tables) -> Figure:
    """Example 1: losses at both depths, solver iterations, gradients, fits, stability."""
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, 3)
    depths = _depths(tables) or [None]
    shallow, deep = depths[0], depths[-1]
    plot_losses(tables, shallow, axes[0, 0])
    plot_losses(tables, deep, axes[0, 1])
    plot_iterations(tables, axes[0, 2])
    plot_fits(tables, shallow, axes[1, 0])
    plot_gradients(tables, deep, axes[1, 1])
    plot_amplification(tables, axes[1, 2])
    shared_legend(fig, [axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]], "model")
    return fig


def trajectories_figure(tables: Tables) -> Figure:
    """Example 1 with the fewest layers: hidden-state paths (z_1, z_2) of 11 inputs per theta,
    coloured by the input (the family's inputs are evenly spaced in [-1, 1], ``start`` counts
    them), with a colour bar as the key."""
    df = _first_seed(_table(tables, "fn_trajectories", "theta", "depth", "seed", "start", "layer"))
    depths = _depths(tables)
    df = df[df["depth"] == depths[0]] if depths else df
    thetas = sorted(df["theta"].unique()) or [None]
    fig = Figure(figsize=(2.8 * len(thetas) + 0.8, 3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(thetas)))
    if df.empty:
        placeholder(axes[0], "no Example 1 trajectories")
        return fig
    inputs = ScalarMappable(Normalize(-1.0, 1.0), colormaps["coolwarm"])
    last = max(df["start"].max(), 1)
    for ax, theta in zip(axes, thetas, strict=True):
        for start, g in df[df["theta"] == theta].groupby("start"):
            g = g.sort_values("layer")
            color = inputs.to_rgba(-1.0 + 2.0 * start / last)
            ax.plot(g["z0"], g["z1"], "-o", color=color, markersize=2.5, linewidth=1)
        style_ax(ax, theta_label(theta), "$z_1$", "$z_2$")
        ax.grid(alpha=0.3, linewidth=0.6)
    fig.colorbar(inputs, ax=list(axes), label="input x", shrink=0.9)
    return fig


def plot_regions(tables: Tables, theta: float, noise: float, ax: Axes) -> Axes:
    """Class-1 probability of the first seed's network over the plane, with the data."""
    reg = _first_seed(_table(tables, "sp_regions", "theta", "noise", "seed", "x", "y", "p1"))
    reg = reg[(reg["theta"] == theta) & (reg["noise"] == noise)]
    if reg.empty:
        return placeholder(ax, "no run")
    n = round(np.sqrt(len(reg)))
    grid = reg.sort_values(["y", "x"])
    ax.contourf(
        grid["x"].to_numpy().reshape(n, n),
        grid["y"].to_numpy().reshape(n, n),
        grid["p1"].to_numpy().reshape(n, n),
        levels=np.linspace(0, 1, 11),
        cmap="RdBu_r",
        alpha=0.6,
    )
    data = _table(tables, "sp_data", "x", "y", "label", "split")
    for split, marker in (("train", "o"), ("val", "x")):
        d = data[data["split"] == split]
        ax.scatter(d["x"], d["y"], c=d["label"], cmap="RdBu_r", vmin=0, vmax=1, s=8, marker=marker)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return style_ax(ax, f"{theta_label(theta)}, σ = {noise:g}")


def plot_robustness(tables: Tables, theta: float, ax: Axes) -> Axes:
    """Validation accuracy against evaluation noise per training noise (mean, seed range)."""
    df = _table(tables, "sp_robustness", "theta", "noise", "eval_noise", "val_acc")
    df = df[df["theta"] == theta]
    if df.empty:
        return placeholder(ax, "no run")
    for i, (noise, g) in enumerate(df.groupby("noise")):
        agg = g.groupby("eval_noise")["val_acc"].agg(["mean", "min", "max"])
        color = NOISE_COLORS[i % len(NOISE_COLORS)]
        ax.plot(agg.index, agg["mean"], "-o", color=color, markersize=3, label=f"σ = {noise:g}")
        ax.fill_between(agg.index, agg["min"], agg["max"], color=color, alpha=0.2)
    return style_ax(ax, theta_label(theta), "input noise (eval.)", "val. accuracy", percent=True)


def spirals_figure(tables: Tables) -> Figure:
    """Example 2: decision regions per (theta, training noise); accuracy under input noise."""
    runs = _table(tables, "sp_runs", "theta", "noise")
    thetas = sorted(runs["theta"].unique()) or [0.0]
    noises = sorted(runs["noise"].unique()) or [0.0]
    fig = Figure(figsize=(2.4 * (len(noises) + 1.4), 2.5 * len(thetas)), layout="constrained")
    axes = fig.subplots(len(thetas), len(noises) + 1, squeeze=False)
    for row, theta in zip(axes, thetas, strict=True):
        for ax, noise in zip(row[:-1], noises, strict=True):
            plot_regions(tables, theta, noise, ax)
        plot_robustness(tables, theta, row[-1])
    shared_legend(fig, axes[:, -1], "training noise")
    return fig


FIGURES: dict[str, tuple[str, Callable[[Tables], Figure]]] = {
    "implicit_function": (
        "Example 1 of the implicit ResNets paper (Reshniak & Webster 2019): training (solid) "
        "and validation (dashed) loss with the fewest and most layers, solver iterations, "
        "fitted functions, gradient magnitudes and the layer amplification factor of trained "
        "explicit (θ = 0) and implicit networks.",
        function_figure,
    ),
    "implicit_trajectories": (
        "Example 1 of the implicit ResNets paper (Reshniak & Webster 2019) with the fewest "
        "layers: hidden-state trajectories of 11 evenly spaced inputs (colour: input x) "
        "through the trained networks, one panel per θ.",
        trajectories_figure,
    ),
    "implicit_spirals": (
        "Example 2 of the implicit ResNets paper (Reshniak & Webster 2019): decision regions "
        "of networks trained with perturbation streams of input-noise level σ (σ = 0: the "
        "original network), and validation accuracy under Gaussian input noise (band: range "
        "over seeds).",
        spirals_figure,
    ),
}
