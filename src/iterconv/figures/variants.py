"""The indices across the block types of the related papers (standard, ICR, PCR, plain, VAN,
implicit): one scale for every seed architecture."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iterconv.figures.style import (
    INDEX_NAMES,
    mean_ci95,
    placeholder,
    style_ax,
    width_palette,
)
from iterconv.models import TORCHVISION_VARIANTS
from iterconv.results import VARIANT_NAMES, Tables, dataset_name, restrict, select


def plot_by_variant(runs: pd.DataFrame, y: str, ax: Axes | None = None) -> Axes:
    """Mean of ``y`` per block type (x) and width, 95% CI across seeds; dots: single runs.
    torchvision architectures (``tv_resnet``, ``tv_vit``) follow the paper's networks, after a
    dotted line."""
    ax = Figure(figsize=(4, 3)).subplots() if ax is None else ax
    df = runs.dropna(subset=[y]) if y in runs else runs.iloc[0:0]
    if df.empty:
        return placeholder(ax, f"no {INDEX_NAMES.get(y, y)} values")
    df = df.assign(block=df["variant"].map(VARIANT_NAMES), width=df["width"].astype(int))
    present = [v for v in VARIANT_NAMES if v in set(df["variant"])]
    present.sort(key=lambda v: v in TORCHVISION_VARIANTS)  # the paper's networks first
    order = [VARIANT_NAMES[v] for v in present]
    palette = width_palette(df["width"])
    common = dict(x="block", y=y, hue="width", order=order, palette=palette, ax=ax)
    sns.stripplot(df, **common, dodge=True, size=3, alpha=0.35, legend=False)
    sns.pointplot(
        df,
        **common,
        dodge=0.4 if df["width"].nunique() > 1 else False,
        errorbar=mean_ci95,
        markersize=5,
        linestyle="none",
        capsize=0.1,
    )
    torchvision = sum(v in TORCHVISION_VARIANTS for v in present)
    if 0 < torchvision < len(order):
        ax.axvline(len(order) - torchvision - 0.5, color="#999999", linestyle=":", linewidth=0.8)
    xlabel = "Block type or architecture" if torchvision else "Block type"
    percent = y == "val_error"
    style_ax(ax, None, xlabel, "Error rate" if percent else INDEX_NAMES.get(y, y), percent)
    ax.tick_params(axis="x", labelsize="small")
    return ax


# --- the VAN paper's CIFAR setting (its fig 2): ResNet, plain, VAN, VAN (lambda = 0) by depth


def van_depth_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the VAN paper's CIFAR sweeps (4 stages; standard, plain or van blocks), with the
    family figures' columns: ``arch`` (resnet, plain, van, van_free) and ``depth`` = 8n + 2,
    the paper's depth of a network with n blocks per stage."""
    if runs.empty or "stages" not in runs:
        return runs.iloc[0:0]
    df = select(runs, stages=4, variant=["standard", "plain", "van"])
    free = (df["variant"] == "van") & (df.get("multiplier_step", 0.1) == 0)
    arch = df["variant"].replace({"standard": "resnet"}).where(~free, "van_free")
    df = df.assign(arch=arch, depth=8 * df["blocks"] + 2)
    return df.assign(val_acc=1 - df["val_error"]) if "val_error" in df else df


def fig_van_depth(t: Tables) -> Figure:
    """Top: held-out accuracy against depth per dataset; bottom: training curves of plain and
    VAN at 26 layers (n = 3; else the deepest with both) with VAN's mean alpha residual."""
    from iterconv.figures import van

    runs = van_depth_runs(t.runs)
    names = sorted(runs["dataset"].unique())
    fig = Figure(figsize=(4.6 * len(names), 6.4), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    history = restrict(t.history, runs)
    cols = ["run_id", "arch", "depth", "dataset"]
    if not history.empty:
        history = history.drop(columns=[c for c in cols[1:] if c in history]).merge(
            runs[cols], on="run_id"
        )
        history = history.assign(
            train_acc=1 - history["train_error"], val_acc=1 - history["val_error"]
        )
    for c, name in enumerate(names):
        van.depth_panel(runs[runs["dataset"] == name], axes[0, c])
        axes[0, c].set(title=dataset_name(name), xlabel="Depth 8n + 2 (n blocks per stage)")
        h = history[history["dataset"] == name] if not history.empty else history
        both = set(h.loc[h["arch"] == "plain", "depth"]) & set(h.loc[h["arch"] == "van", "depth"])
        if not both:
            placeholder(axes[1, c], "no plain and VAN training curves")
            continue
        depth = 26 if 26 in both else max(both)
        van.curves_panel(h, depth, axes[1, c])
        axes[1, c].set_title(f"{dataset_name(name)}, {depth} layers", fontsize="medium")
    return fig
