"""Training curves (appendix fig 5)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import coupling_color, coupling_order, placeholder, style_ax
from iterconv.figures.style import with_setting as _with_setting


def plot_history(
    history: pd.DataFrame, y: str = "val_error", ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Mean ``y`` per epoch for each coupling setting; band: mean ± 1.96 SE across seeds.

    Args:
        history: rows of ``history.csv`` (``epoch``, ``y``, ``coupling``, ``init``).
        y: ``train_error`` or ``val_error`` (fractions 0..1), or a loss.
    """
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = history.dropna(subset=[y]) if y in history else history.iloc[0:0]
    if df.empty:
        return placeholder(ax, f"no {y} history")
    df = _with_setting(df)
    order = coupling_order(df["setting"])
    palette = {s: coupling_color(s, order) for s in order}
    sns.lineplot(
        df,
        x="epoch",
        y=y,
        hue="setting",
        hue_order=order,
        palette=palette,
        errorbar=("se", 1.96),
        linewidth=1.2,
        ax=ax,
    )
    return style_ax(ax, title, "Epoch", "Error rate", percent="error" in y)
