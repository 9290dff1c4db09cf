"""Training curves (appendix fig 5)."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import coupling_lines, integer_ticks, placeholder, style_ax


def plot_history(
    history: pd.DataFrame, y: str = "val_error", ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Mean ``y`` per epoch for each coupling setting; band: bootstrap 95% CI across seeds.

    Args:
        history: rows of ``history.csv`` (``epoch``, ``y``, ``coupling``, ``init``).
        y: ``train_error`` or ``val_error`` (fractions 0..1), or a loss.
    """
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = history.dropna(subset=[y]) if y in history else history.iloc[0:0]
    if df.empty:
        return placeholder(ax, f"no {y} history")
    coupling_lines(df, "epoch", y, ax)
    integer_ticks(ax.xaxis)
    return style_ax(ax, title, "Epoch", "Error rate", percent="error" in y)
