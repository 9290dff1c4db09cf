"""The pipeline's tables and what every reader of them shares: loading, run selection and
labels (used by the figures and the claims report; no plotting and no statistics here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from iterconv.models import TORCHVISION_VARIANTS

TABLES = ("runs", "stages", "curves", "history")

# Defaults of the training variations: a run with these values is "ordinary training".
VARIATION_DEFAULTS = {"bn_gamma": 1.0, "kernel": "uniform", "couple_from": 0}


@dataclass
class Tables:
    """The pipeline's tables; a missing table is an empty frame."""

    runs: pd.DataFrame
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    toy: pd.DataFrame = field(default_factory=pd.DataFrame)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def load_tables(tables_dir: str | Path, toy_dir: str | Path | None = None) -> Tables:
    """Read ``runs/stages/curves/history.csv`` (and the toy trajectories when given).

    Raises:
        FileNotFoundError: when ``runs.csv`` is missing (every figure needs it).
    """
    tables_dir = Path(tables_dir)
    if not (tables_dir / "runs.csv").is_file():
        raise FileNotFoundError(f"{tables_dir / 'runs.csv'} not found")
    frames = {name: _read(tables_dir / f"{name}.csv") for name in TABLES}
    toy = _read(Path(toy_dir) / "trajectories.csv") if toy_dir else pd.DataFrame()
    return Tables(toy=toy, **frames)


def _column(df: pd.DataFrame, name: str, default) -> pd.Series:
    return df[name].fillna(default) if name in df else pd.Series(default, index=df.index)


def ordinary_training(df: pd.DataFrame) -> pd.DataFrame:
    """Rows trained without a variation (BN gamma 1, uniform kernel, coupling from block 0),
    with their dataset's main architecture (:func:`main_architecture`)."""
    if df.empty:
        return df
    keep = pd.Series(True, index=df.index)
    for name, default in VARIATION_DEFAULTS.items():
        col = _column(df, name, default)
        keep &= col.astype(str) == str(default) if isinstance(default, str) else col == default
    return main_architecture(df[keep])


def main_architecture(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose (stages, blocks) is the most frequent one of their dataset: the paper's
    network, not the VAN paper's depth sweeps that share a dataset with it (ties: the deeper)."""
    if df.empty or not {"dataset", "stages", "blocks"} <= set(df.columns):
        return df
    keep = pd.Series(False, index=df.index)
    for _ds, g in df.groupby("dataset"):
        counts = g.groupby(["stages", "blocks"]).size()
        best = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        keep[g.index] = (g["stages"] == best[0]) & (g["blocks"] == best[1])
    return df[keep]


def select(df: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list value means "one of")."""
    keep = pd.Series(True, index=df.index)
    for name, value in equal.items():
        if name not in df:
            return df.iloc[0:0]
        values = value if isinstance(value, list | tuple | set) else [value]
        keep &= df[name].isin(values)
    return df[keep]


def main_dataset(runs: pd.DataFrame) -> str | None:
    """The dataset of the paper's main figures: cifar10 if present, else the most-run dataset."""
    if runs.empty or "dataset" not in runs:
        return None
    counts = ordinary_training(select(runs, variant="standard"))["dataset"].value_counts()
    if counts.empty:
        counts = runs["dataset"].value_counts()
    if "cifar10" in counts.index:
        return "cifar10"
    # Most runs first; ties broken by name so the choice is deterministic.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return str(ranked[0][0])


def digitclutter_dataset(runs: pd.DataFrame, exclude: str | None = None) -> str | None:
    """A Digitclutter dataset for fig 3b: digits5 if present, else the most-run digits* one."""
    names = [d for d in runs.get("dataset", pd.Series(dtype=str)).unique() if "digits" in str(d)]
    names = [d for d in names if d != exclude]
    if not names:
        return None
    if "digits5" in names:
        return "digits5"
    counts = runs["dataset"].value_counts()
    return max(names, key=lambda d: (counts[d], d))


def core_runs(runs: pd.DataFrame, dataset: str | None, variant: str = "standard") -> pd.DataFrame:
    """Ordinary-training runs of one dataset and variant (the coupling grid of figs 3/4/S2)."""
    return ordinary_training(select(runs, dataset=dataset, variant=variant))


def restrict(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of a per-run table (stages, curves, history) belonging to ``runs``."""
    if table.empty or "run_id" not in table:
        return table.iloc[0:0]
    out = table[table["run_id"].isin(runs["run_id"])]
    missing = [c for c in runs.columns if c not in out.columns]
    if missing:  # configuration columns the table lacks are taken from runs.csv
        out = out.merge(runs[["run_id", *missing]], on="run_id", how="left")
    return out


# --- labels ---------------------------------------------------------------------------------

DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "cifar10_2048": "CIFAR-10 (2048 samples)",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "van_digits": "Digitclutter-1 (VAN demo)",
    "van_micro_digits": "Digitclutter-1 (VAN micro)",
    "digits2": "Digitclutter-2",
    "digits3": "Digitclutter-3",
    "digits4": "Digitclutter-4",
    "digits5": "Digitclutter-5",
    "digits2to5": "Digitclutter (2-5 digits)",
    "digits2_2048": "Digitclutter-2 (2048 samples)",
    "digits4_8192": "Digitclutter-4 (8192 samples)",
    "demo_digits": "Digitclutter demo",
    "micro_digits": "Digitclutter micro",
    "small_digits": "Digitclutter-2 (3072 samples)",
}


def dataset_name(dataset: str) -> str:
    """Readable name of a dataset id (the id itself when unknown)."""
    return DATASET_NAMES.get(dataset, dataset)


def coupling_label(coupling: float, init: str) -> str:
    """The paper's x label of one coupling setting, e.g. ``"0 (non-rec.)"``, ``"0.5 (rec.)"``."""
    rec = "rec." if str(init).startswith("rec") else "non-rec."
    return f"{float(coupling):g} ({rec})"


def _label_key(label: str) -> tuple[float, int]:
    value, _, rest = label.partition(" ")
    return float(value), 0 if "non-rec" in rest else 1


def coupling_order(labels: Iterable[str]) -> list[str]:
    """Sort coupling labels as on the paper's axes: by lambda, non-recurrent before recurrent."""
    return sorted(set(labels), key=_label_key)


def with_setting(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with a ``setting`` column holding the coupling label of each row."""
    out = df.copy()
    init = out["init"] if "init" in out else pd.Series("nonrecurrent", index=out.index)
    out["setting"] = [coupling_label(c, i) for c, i in zip(out["coupling"], init, strict=True)]
    return out


# --- block types of the related papers ------------------------------------------------------

# Block types that come from the related papers (the variants figure needs at least one).
RELATED_VARIANTS = ("plain", "van", "implicit")
# Every block type of iterconv.models.resnet.VARIANTS, in plotting order (not imported from
# there: reading the tables should not load torch).
VARIANT_NAMES = {
    "standard": "ResNet",
    "icr": "ICR",
    "pcr": "PCR",
    "plain": "plain",
    "van": "VAN",
    "implicit": "implicit",
    "tv_resnet": "tv ResNet",  # torchvision's architectures
    "tv_vit": "tv ViT",
}


def variant_runs(runs: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """Uncoupled, non-recurrently initialised runs of ``dataset`` without training variations:
    the block types compared as their papers train them."""
    df = select(runs, dataset=dataset, coupling=0.0, init="nonrecurrent")
    other = df["variant"].isin(TORCHVISION_VARIANTS)  # their own shapes: not the main architecture
    df = pd.concat([ordinary_training(df[~other]), df[other]])
    return df[df["variant"].isin(list(VARIANT_NAMES))]
