"""One look for every figure: width and coupling colours, axis style, placeholders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogFormatterSciNotation,
    MaxNLocator,
    NullFormatter,
)

from iterconv.results import coupling_order, with_setting
from iterconv.stats import bootstrap_mean_ci

# Okabe-Ito colours (colour-blind safe), one per first-stage width, used by every figure.
WIDTH_COLORS: dict[int, str] = {8: "#E69F00", 16: "#56B4E9", 32: "#009E73", 64: "#CC79A7"}
_EXTRA_COLORS = ("#0072B2", "#D55E00", "#000000", "#F0E442")

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


def integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (block counts, epochs, depths)."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _log_ticks(lo: float, hi: float, mantissas: Sequence[int]) -> list[float]:
    """Every mantissa x 10^k inside [lo, hi]."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = (m * 10.0**k for k in decades for m in mantissas)
    return [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def _label_log_axis(axis: Axis, lo: float, hi: float) -> None:
    """At least two labelled ticks on a log axis spanning [lo, hi]: decades when two fit, else
    1-2-5 steps, else every integer multiple of a decade, else evenly spaced plain numbers."""
    axis.set_minor_formatter(NullFormatter())
    if len(_log_ticks(lo, hi, (1,))) >= 2:
        axis.set_major_formatter(LogFormatterSciNotation())
        return
    ticks = _log_ticks(lo, hi, (1, 2, 5))
    if len(ticks) < 2:
        ticks = _log_ticks(lo, hi, range(1, 10))
    if len(ticks) < 2:
        ticks = [t for t in MaxNLocator(nbins=3).tick_values(lo, hi) if lo <= t <= hi]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def log_axes(ax: Axes, x: bool = False, y: bool = False) -> Axes:
    """Log scale on the chosen axes, called after plotting: the tick labels are chosen for the
    data's range so that every log axis has at least two labelled ticks."""
    for on, axis, setter, limits in (
        (x, ax.xaxis, ax.set_xscale, ax.get_xlim),
        (y, ax.yaxis, ax.set_yscale, ax.get_ylim),
    ):
        if on:
            setter("log")
            lo, hi = sorted(limits())
            _label_log_axis(axis, lo, hi)
    return ax


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Error bar of a mean across seeds: the claims' percentile bootstrap interval
    (:func:`iterconv.stats.bootstrap_mean_ci`, seeded; NaN, so no bar, for a single value)."""
    return bootstrap_mean_ci(values, np.random.default_rng(0))


def coupling_lines(df: pd.DataFrame, x: str, y: str, ax: Axes, linewidth: float = 1.2) -> Axes:
    """Mean of ``y`` over ``x`` per coupling setting, with a band from :func:`mean_ci95`."""
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
        errorbar=mean_ci95,
        linewidth=linewidth,
        marker="o" if df[x].nunique() <= 3 else None,  # a curve of one step is a point
        markersize=4,
        ax=ax,
    )
    return ax
