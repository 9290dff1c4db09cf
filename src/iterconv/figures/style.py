"""One look for every figure: width and coupling colours, axis style, placeholders."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

from iterconv.results import coupling_order, with_setting

# Okabe-Ito colours (colour-blind safe), one per first-stage width, used by every figure.
WIDTH_COLORS: dict[int, str] = {8: "#E69F00", 16: "#56B4E9", 32: "#009E73", 64: "#CC79A7"}
_EXTRA_COLORS = ("#0072B2", "#D55E00", "#F0E442", "#000000")

# Colours of the coupling settings (fig 5, fig 7): sequential, light = uncoupled.
COUPLING_COLORS = ("#999999", "#9ecae1", "#4292c6", "#08519c", "#08306b", "#041a3a")

# The paper's x axis of the coupling figures.
COUPLING_AXIS_LABEL = "Coupling parameter (Initialization)"
INDEX_NAMES = {
    "CI": "Convergence Index",
    "RI": "Recurrence Index",
    "DI": "Divergence Index",
    "CI_alt": "Convergence Index (vs own pred.)",
    "RI_alt": "Recurrence Index (vs own pred.)",
    "DI_alt": "Divergence Index (vs own pred.)",
}


def width_color(width: int) -> str:
    """Colour of a first-stage width; widths outside 8/16/32/64 get a stable extra colour."""
    width = int(width)
    if width in WIDTH_COLORS:
        return WIDTH_COLORS[width]
    return _EXTRA_COLORS[int(math.log2(max(width, 1))) % len(_EXTRA_COLORS)]


def width_palette(widths: Iterable) -> dict[int, str]:
    """Palette for seaborn's ``hue="width"``: {width: colour}."""
    return {int(w): width_color(w) for w in sorted({int(w) for w in widths})}


def coupling_color(label: str, order: list[str]) -> str:
    """Colour of one coupling setting within ``order`` (light grey for the uncoupled one)."""
    i = order.index(label) if label in order else 0
    return COUPLING_COLORS[min(i, len(COUPLING_COLORS) - 1)]


def _percent(y: float, _pos=None) -> str:
    """0.125 -> "12.5%", 0.12 -> "12%" (one decimal at most, trailing zeros dropped)."""
    return f"{100 * y:.1f}".rstrip("0").rstrip(".") + "%"


def style_ax(
    ax: Axes,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    percent: bool = False,
) -> Axes:
    """The house axis style: no top/right spines, light y grid, optional percent y ticks."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)
    if title is not None:
        ax.set_title(title, fontsize="medium")
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    return ax


def placeholder(ax: Axes, message: str) -> Axes:
    """Mark ``ax`` as empty with a readable reason (missing runs), instead of a blank panel."""
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        wrap=True,
        fontsize="medium",
        color="#444444",
        transform=ax.transAxes,
        bbox={"boxstyle": "round", "facecolor": "#f3f3f3", "edgecolor": "#bbbbbb"},
    )
    return ax


def shared_legend(fig, axes, title: str | None = None) -> None:
    """Replace the legends of ``axes`` by one figure legend (the union of their entries, first
    occurrence kept), placed outside on the right (needs ``layout="constrained"``)."""
    seen: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen.keys()),
            title=title,
            loc="outside right upper",
            fontsize="small",
            title_fontsize="small",
            frameon=False,
        )


def panel_letter(ax: Axes, letter: str) -> None:
    """Bold panel letter (a, b, c) at the top left, outside the axes."""
    ax.text(
        -0.18,
        1.06,
        letter,
        transform=ax.transAxes,
        fontweight="bold",
        fontsize="large",
        va="bottom",
        ha="left",
    )


def log_axes(ax: Axes, x: bool = False, y: bool = False) -> Axes:
    """Log scale on the chosen axes. Decade labels; minor ticks are labelled only when the axis
    spans less than about half a decade (with no decade inside, it would have no label)."""
    for on, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if on:
            setter("log")
            axis.set_minor_formatter(
                LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(0.6, 0.25))
            )
    return ax


def coupling_lines(df: pd.DataFrame, x: str, y: str, ax: Axes, linewidth: float = 1.2) -> Axes:
    """Mean of ``y`` over ``x`` per coupling setting, with a 95% band (mean +- 1.96 SE).

    The SE band instead of a bootstrap keeps curves with many steps fast to draw.
    """
    import seaborn as sns

    df = with_setting(df)
    order = coupling_order(df["setting"])
    palette = {s: coupling_color(s, order) for s in order}
    sns.lineplot(
        df,
        x=x,
        y=y,
        hue="setting",
        hue_order=order,
        palette=palette,
        errorbar=("se", 1.96),
        linewidth=linewidth,
        ax=ax,
    )
    return ax
