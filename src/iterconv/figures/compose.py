"""Compose the paper's figures from the panel functions (one builder per figure)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from iterconv.figures import (
    alternative,
    coupling,
    parameters,
    standard,
    toy,
    training,
    variants,
)
from iterconv.figures.style import (
    panel_letter,
    placeholder,
    shared_legend,
)
from iterconv.results import (
    Tables,
    core_runs,
    dataset_name,
    digitclutter_dataset,
    main_dataset,
    ordinary_training,
    restrict,
    select,
    variant_runs,
)

WIDTH_LEGEND = "# channels"
SETTING_LEGEND = "Coupling (init.)"
VARIATIONS = {  # label: (column, value) of each training variation (appendix D)
    "BN γ = 0.1": ("bn_gamma", 0.1),
    "Triangular kernel": ("kernel", "triangular"),
    "Coupling from block 5": ("couple_from", 5),
}
ORDINARY = "Ordinary training"
VARIATION_COLORS = {
    ORDINARY: "#999999",
    "BN γ = 0.1": "#0072B2",
    "Triangular kernel": "#D55E00",
    "Coupling from block 5": "#009E73",
}


def new_figure(rows: int, cols: int, panel: tuple[float, float] = (3.3, 2.8)) -> tuple:
    fig = Figure(figsize=(panel[0] * cols + 1.2, panel[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def message_figure(title: str, message: str) -> Figure:
    """A labelled placeholder figure (missing runs), never an empty file."""
    fig = Figure(figsize=(6, 2.5), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    placeholder(ax, message)
    return fig


def preferred_width(runs: pd.DataFrame, prefer: int = 16) -> int | None:
    """16 channels (the paper's choice in fig 5) if present, else the most common width."""
    if runs.empty:
        return None
    counts = runs["width"].astype(int).value_counts()
    return prefer if prefer in counts.index else int(counts.idxmax())


# --- fig 1 --------------------------------------------------------------------------------


def fig1(t: Tables) -> Figure:
    methods = [m for m in toy.METHOD_TITLES if "method" in t.toy and m in set(t.toy["method"])]
    methods += sorted(set(t.toy.get("method", [])) - set(methods))
    if not methods:
        return message_figure("Fig 1", "no toy trajectories (results/toy/trajectories.csv)")
    rows = (
        ("none", "a  trajectories"),
        ("drop4", "b  4th block dropped"),
        ("extra", "c  last block repeated"),
    )
    fig, axes = new_figure(len(rows), len(methods), (2.8, 2.6))
    for r, (pert, title) in enumerate(rows):
        for c, method in enumerate(methods):
            toy.plot_trajectories(t.toy, method, pert, axes[r, c])
        axes[r, 0].annotate(title, (0, 1.18), xycoords="axes fraction", fontweight="bold")
    return fig


# --- fig 2 --------------------------------------------------------------------------------


def fig2(t: Tables) -> Figure:
    ds = main_dataset(t.runs)
    runs = select(core_runs(t.runs, ds), init="nonrecurrent", coupling=0.0)
    fig, axes = new_figure(3, 3)
    width = preferred_width(runs)
    curve_runs = select(runs, width=width)
    curves = restrict(t.curves, curve_runs)
    highlight = str(curve_runs.sort_values("seed")["run_id"].iloc[0]) if len(curve_runs) else None
    chance = float(runs["chance_error"].median()) if "chance_error" in runs else None
    for c, pert in enumerate(standard.PERTURBATIONS):
        standard.plot_curves(curves, pert, axes[0, c], highlight=highlight, chance=chance)
    shared = [axes[0, c] for c in range(3)]
    for ax in shared[1:]:
        if ax.get_legend():
            ax.get_legend().remove()
    if shared[0].get_legend_handles_labels()[0]:
        shared[0].legend(fontsize="x-small", frameon=False)
    stages = restrict(t.stages, runs)
    for c, index in enumerate(("CI", "RI", "DI")):
        standard.plot_stage_indices(stages, runs, index, axes[1, c])
    for c, index in enumerate(("CI", "DI")):
        standard.plot_error_scatter(runs, index, axes[2, c])
    axes[2, 2].set_axis_off()
    shared_legend(fig, list(axes[1]) + list(axes[2, :2]), WIDTH_LEGEND)
    for letter, ax in zip("abc", axes[:, 0], strict=True):
        panel_letter(ax, letter)
    return fig


# --- figs 3, 4, S1, S2 (coupling grids) ---------------------------------------------------


def _indices_and_error(runs: pd.DataFrame, indices: tuple[str, ...], what: str) -> Figure:
    fig, axes = new_figure(1, len(indices) + 1)
    if runs.empty:
        for ax in axes[0]:
            placeholder(ax, f"no {what} runs in this preset")
        return fig
    for c, index in enumerate(indices):
        coupling.plot_by_setting(runs, index, axes[0, c])
    coupling.plot_by_setting(runs, "val_error", axes[0, -1], ylabel="Error rate", percent=True)
    shared_legend(fig, axes[0], WIDTH_LEGEND)
    panel_letter(axes[0, 0], "a")
    panel_letter(axes[0, -1], "b")
    return fig


def fig3(t: Tables) -> Figure:
    ds = main_dataset(t.runs)
    runs = core_runs(t.runs, ds)
    digits = digitclutter_dataset(t.runs, exclude=ds)
    fig, axes = new_figure(3, 2)
    for c, index in enumerate(("CI", "DI")):
        coupling.plot_by_setting(runs, index, axes[0, c], title=dataset_name(ds))
    coupling.plot_by_setting(
        runs, "val_error", axes[1, 0], ylabel="Error rate", percent=True, title=dataset_name(ds)
    )
    if digits is None:
        placeholder(axes[1, 1], "no second (Digitclutter)\ndataset in this preset")
    else:
        coupling.plot_by_setting(
            core_runs(t.runs, digits),
            "val_error",
            axes[1, 1],
            ylabel="Error rate",
            percent=True,
            title=dataset_name(digits),
        )
    for c, index in enumerate(("CI", "DI")):
        coupling.plot_error_vs_index(runs, index, axes[2, c])
    shared_legend(fig, axes.ravel(), WIDTH_LEGEND)
    for letter, ax in zip("abc", axes[:, 0], strict=True):
        panel_letter(ax, letter)
    return fig


def fig4(t: Tables) -> Figure:
    return _indices_and_error(core_runs(t.runs, main_dataset(t.runs), "icr"), ("CI", "DI"), "ICR")


def figS2(t: Tables) -> Figure:
    runs = core_runs(t.runs, main_dataset(t.runs), "pcr")
    return _indices_and_error(runs, ("CI", "RI", "DI"), "PCR")


def figS1(t: Tables) -> Figure:
    ds = main_dataset(t.runs)
    fig, axes = new_figure(1, 2)
    for ax, (variant, name) in zip(
        axes[0],
        (("standard", "Gradient-coupled ResNets"), ("icr", "Improperly convergent ResNets")),
        strict=True,
    ):
        runs = core_runs(t.runs, ds, variant)
        if runs.empty:
            placeholder(ax, f"no {variant.upper()} runs in this preset")
        else:
            coupling.plot_by_setting(runs, "RI", ax, title=name)
    shared_legend(fig, axes[0], WIDTH_LEGEND)
    panel_letter(axes[0, 0], "a")
    panel_letter(axes[0, 1], "b")
    return fig


def other_datasets(runs: pd.DataFrame) -> list[str]:
    """Datasets of fig S3: every dataset with standard runs except the main one."""
    ds = main_dataset(runs)
    std = ordinary_training(select(runs, variant="standard"))
    return sorted(d for d in std["dataset"].unique() if d != ds)


def figS3(t: Tables) -> Figure:
    names = other_datasets(t.runs)
    if not names:
        return message_figure("S3 Fig", "no datasets besides the main one in this preset")
    cols = min(len(names), 3)
    fig, axes = new_figure((len(names) + cols - 1) // cols, cols)
    for ax, name in zip(axes.ravel(), names, strict=False):
        coupling.plot_by_setting(
            core_runs(t.runs, name),
            "val_error",
            ax,
            ylabel="Error rate",
            percent=True,
            title=dataset_name(name),
        )
    for ax in axes.ravel()[len(names) :]:
        ax.set_axis_off()
    shared_legend(fig, axes.ravel(), WIDTH_LEGEND)
    return fig


# --- training variations (S4, S5 = appendix figs 8 and 10) --------------------------------


def variation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Standard runs of the main dataset labelled by training variation (column ``training``);
    ordinary runs restricted to the widths the variations were trained with."""
    base = select(runs, dataset=main_dataset(runs), variant="standard")
    parts = []
    for label, (column, value) in VARIATIONS.items():
        if column in base:
            parts.append(base[base[column] == value].assign(training=label))
    varied = pd.concat(parts) if parts else base.iloc[0:0]
    if varied.empty:
        return varied.assign(training=[])
    ordinary = ordinary_training(base)
    ordinary = ordinary[ordinary["width"].isin(varied["width"].unique())]
    return pd.concat([ordinary.assign(training=ORDINARY), varied], ignore_index=True)


def figS4(t: Tables) -> Figure:
    runs = variation_runs(t.runs)
    labels = [v for v in VARIATIONS if v in set(runs.get("training", []))]
    if not labels:
        return message_figure("S4 Fig", "no training-variation runs in this preset")
    fig, axes = new_figure(1, len(labels))
    for ax, letter, label in zip(axes[0], "abc", labels, strict=False):
        sub = runs[runs["training"].isin([ORDINARY, label])]
        coupling.plot_by_setting(
            sub,
            "val_error",
            ax,
            hue="training",
            palette=VARIATION_COLORS,
            ylabel="Error rate",
            percent=True,
            title=label,
        )
        panel_letter(ax, letter)
    shared_legend(fig, axes[0], "Training")
    return fig


def figS5(t: Tables) -> Figure:
    runs = variation_runs(t.runs)
    if runs.empty:
        return message_figure("S5 Fig", "no training-variation runs in this preset")
    fig, axes = new_figure(1, 3)
    for ax, index in zip(axes[0], ("CI", "RI", "DI"), strict=True):
        coupling.plot_by_setting(runs, index, ax, hue="training", palette=VARIATION_COLORS)
    shared_legend(fig, axes[0], "Training")
    return fig


# --- appendix figs 5, 6, 7 ----------------------------------------------------------------


def fig5(t: Tables) -> Figure:
    runs = core_runs(t.runs, main_dataset(t.runs))
    runs = select(runs, width=preferred_width(runs))
    hist = restrict(t.history, runs)
    fig, axes = new_figure(1, 2)
    training.plot_history(hist, "train_error", axes[0, 0], "Training data")
    training.plot_history(hist, "val_error", axes[0, 1], "Validation data")
    shared_legend(fig, axes[0], SETTING_LEGEND)
    return fig


def fig6(t: Tables) -> Figure:
    runs = core_runs(t.runs, main_dataset(t.runs))
    curves = restrict(t.curves, runs)
    n_stages = int(curves["stage"].max()) if len(curves) else 1
    rows = [("loss", "readout"), ("loss", "extra"), ("distance", "readout"), ("distance", "extra")]
    fig, axes = new_figure(1 + len(rows), max(3, n_stages))
    for c, index in enumerate(("CI_alt", "RI_alt", "DI_alt")):
        coupling.plot_by_setting(runs, index, axes[0, c])
    for ax in axes[0, 3:]:
        ax.set_axis_off()
    shared_legend(fig, axes[0], WIDTH_LEGEND)
    for r, (measure, pert) in enumerate(rows, start=1):
        for s in range(1, n_stages + 1):
            alternative.plot_measure_curves(curves, measure, pert, s, axes[r, s - 1])
        for ax in axes[r, n_stages:]:
            ax.set_axis_off()
        # One coupling legend, in the last panel of the first curve row.
        for c, ax in enumerate(axes[r, :n_stages]):
            if ax.get_legend() and not (r == 1 and c == n_stages - 1):
                ax.get_legend().remove()
            elif ax.get_legend():
                ax.legend(
                    title=SETTING_LEGEND,
                    fontsize="x-small",
                    title_fontsize="x-small",
                    frameon=False,
                    loc="upper left",
                    bbox_to_anchor=(1.0, 1.0),
                )
    for letter, r in (("a", 0), ("b", 1), ("c", 3)):
        panel_letter(axes[r, 0], letter)
    return fig


def fig9(t: Tables) -> Figure:
    """Appendix fig 9: error of every standard run of the main dataset (training variations
    included) against its raw and effective parameter count."""
    runs = select(t.runs, dataset=main_dataset(t.runs), variant="standard")
    fig, axes = new_figure(1, 2)
    parameters.plot_error_vs_count(runs, "parameters", axes[0, 0])
    parameters.plot_error_vs_count(runs, "epc", axes[0, 1])
    shared_legend(fig, axes[0], SETTING_LEGEND)
    for letter, ax in zip("ab", axes.ravel(), strict=True):
        panel_letter(ax, letter)
    return fig


def fig7(t: Tables) -> Figure:
    ds = main_dataset(t.runs)
    runs = core_runs(t.runs, ds)
    fig, axes = new_figure(2, 2)
    parameters.plot_epc(runs, axes[0, 0])
    parameters.plot_error_vs_count(runs, "parameters", axes[0, 1])
    parameters.plot_error_vs_count(runs, "epc", axes[1, 0])
    parameters.plot_deviation(restrict(t.stages, runs), axes[1, 1])
    axes[1, 1].legend(title="Stage", fontsize="x-small", title_fontsize="x-small", frameon=False)
    shared_legend(fig, axes[0], SETTING_LEGEND)
    for ax in axes[1, :1]:
        if ax.get_legend():
            ax.get_legend().remove()
    for letter, ax in zip("abcd", axes.ravel(), strict=True):
        panel_letter(ax, letter)
    return fig


# --- the seed architectures on one scale --------------------------------------------------


def fig_variants(t: Tables) -> Figure:
    ds = main_dataset(t.runs)
    runs = variant_runs(t.runs, ds)
    fig, axes = new_figure(1, 4)
    for ax, y in zip(axes[0], ("CI", "RI", "DI", "val_error"), strict=True):
        variants.plot_by_variant(runs, y, ax)
    shared_legend(fig, axes[0], WIDTH_LEGEND)
    return fig
