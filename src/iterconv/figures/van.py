"""Figures of the ``van`` family (the VAN paper, phasing out skip-connections, section 4.1):
accuracy against depth (fig. 1) and training curves with the mean alpha residual (fig. 2,
right)."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import integer_ticks, placeholder, style_ax
from iterconv.results import dataset_name

# One colour per architecture (Okabe-Ito), in legend order; gold is kept for the alpha residual.
ARCH_STYLE: dict[str, tuple[str, str]] = {
    "plain": ("#000000", "Plain"),
    "resnet": ("#0072B2", "ResNet"),
    "van": ("#D55E00", "VAN"),
    "van_free": ("#009E73", "VAN (λ = 0)"),
}
ALPHA_COLOR = "#E69F00"


def _datasets(df: pd.DataFrame) -> list[str]:
    return sorted(df["dataset"].unique()) if len(df) else []


def _panel_per_dataset(names: list[str], width: float) -> tuple[Figure, list[Axes]]:
    """One row of panels, one per dataset (a placeholder panel when there is none)."""
    fig = Figure(figsize=(width * max(len(names), 1), 3.4), layout="constrained")
    axes = list(fig.subplots(1, max(len(names), 1), squeeze=False)[0])
    if not names:
        placeholder(axes[0], "No van runs in this preset.")
    return fig, axes


def depth_panel(final: pd.DataFrame, ax: Axes) -> Axes:
    """Held-out accuracy (mean over seeds, bars min..max) against depth, one line per arch.

    Args:
        final: the ``final`` table of one dataset (columns arch, depth, seed, val_acc).
    """
    for arch, (color, label) in ARCH_STYLE.items():
        g = final[final["arch"] == arch].groupby("depth")["val_acc"].agg(["mean", "min", "max"])
        if g.empty:
            continue
        ax.errorbar(
            g.index,
            g["mean"],
            yerr=[g["mean"] - g["min"], g["max"] - g["mean"]],
            color=color,
            label=label,
            marker="o",
            markersize=3,
            linewidth=1.2,
            capsize=2,
        )
    ax.legend(fontsize="small", frameon=False)
    integer_ticks(ax.xaxis)
    return style_ax(ax, xlabel="Hidden layers l", ylabel="Held-out accuracy", percent=True)


def depth_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """One panel per dataset: :func:`depth_panel`."""
    final = tables.get("final", pd.DataFrame())
    names = _datasets(final)
    fig, axes = _panel_per_dataset(names, 4.2)
    for ax, name in zip(axes, names, strict=False):
        depth_panel(final[final["dataset"] == name], ax)
        ax.set_title(dataset_name(name), fontsize="medium")
    return fig


def curves_panel(epochs: pd.DataFrame, depth: int, ax: Axes) -> Axes:
    """Training (dashed) and held-out (solid) error of plain and VAN per epoch, mean over
    seeds; VAN's mean alpha residual on a right axis.

    Args:
        epochs: the ``epochs`` table of one dataset.
        depth: hidden layers of the networks shown.
    """
    df = epochs[epochs["depth"] == depth]
    for arch in ("plain", "van"):
        g = df[df["arch"] == arch].groupby("epoch")[["train_acc", "val_acc"]].mean()
        if g.empty:
            continue
        color, label = ARCH_STYLE[arch]
        ax.plot(g.index, 1 - g["train_acc"], "--", color=color, label=f"{label} train")
        ax.plot(g.index, 1 - g["val_acc"], "-", color=color, label=f"{label} held-out")
    style_ax(ax, xlabel="Epoch", ylabel="Error", percent=True)
    integer_ticks(ax.xaxis)
    residual = df[df["arch"] == "van"].groupby("epoch")["alpha_residual"].mean()
    if not residual.empty:
        right = ax.twinx()
        right.plot(residual.index, residual, color=ALPHA_COLOR, linewidth=2.5, label="α residual")
        right.set_ylabel("Mean α residual", color=ALPHA_COLOR)
        right.set_ylim(0, 1.05)  # alpha residual lies in [0, 1]
        right.spines["top"].set_visible(False)
        handles = [h for a in (ax, right) for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles, [str(h.get_label()) for h in handles], fontsize="small", frameon=False)
    elif ax.lines:
        ax.legend(fontsize="small", frameon=False)
    return ax


def curves_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """One panel per dataset at the deepest depth with both plain and VAN runs (else the
    deepest depth run)."""
    epochs = tables.get("epochs", pd.DataFrame())
    names = _datasets(epochs)
    fig, axes = _panel_per_dataset(names, 4.6)
    for ax, name in zip(axes, names, strict=False):
        df = epochs[epochs["dataset"] == name]
        both = set(df.loc[df["arch"] == "plain", "depth"]) & set(
            df.loc[df["arch"] == "van", "depth"]
        )
        if not both and not df["arch"].isin(["plain", "van"]).any():
            placeholder(ax, f"{dataset_name(name)}: no plain or VAN runs.")
            continue
        depth = int(max(both or df.loc[df["arch"].isin(["plain", "van"]), "depth"]))
        curves_panel(df, depth, ax)
        ax.set_title(f"{dataset_name(name)}, l = {depth}", fontsize="medium")
    return fig
