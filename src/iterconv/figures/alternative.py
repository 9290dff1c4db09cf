"""Alternative measures (appendix fig 6): loss and distance along the perturbations."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.standard import PERTURBATIONS
from iterconv.figures.style import coupling_lines, integer_ticks, log_axes, placeholder, style_ax

MEASURES = {"loss": "Cross-entropy", "distance": "Distance to final repr.", "error_alt": "Error"}


def plot_measure_curves(
    curves: pd.DataFrame, measure: str, perturbation: str, stage: int, ax: Axes | None = None
) -> Axes:
    """Mean ``measure`` along one perturbation of one stage per coupling setting (log y),
    band: bootstrap 95% CI across seeds (:func:`~iterconv.figures.style.mean_ci95`).

    Args:
        curves: rows of ``curves.csv``; ``measure`` is ``loss`` (nats) or ``distance``
            (Euclidean, units of the representation).
    """
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    sel = (curves["perturbation"] == perturbation) & (curves["stage"] == stage)
    df = curves[sel].dropna(subset=[measure]) if measure in curves else curves.iloc[0:0]
    df = df[df[measure] > 0]  # log axis
    if df.empty:
        return placeholder(ax, f"no positive {measure} values\n({perturbation}, stage {stage})")
    coupling_lines(df, "step", measure, ax, linewidth=1.1)
    log_axes(ax, y=True)
    integer_ticks(ax.xaxis)
    title = f"Stage {int(stage)}"
    return style_ax(ax, title, PERTURBATIONS[perturbation][1], MEASURES.get(measure, measure))
