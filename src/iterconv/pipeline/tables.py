"""Collect per-run outputs into a preset's tables (results/<preset>/tables/*.csv, metrics.json).

Tables (columns documented in docs/pipeline.md):
    runs.csv    one row per run: configuration, parameter counts, EPC, errors, network indices
    stages.csv  one row per run and stage: indices and weight deviation
    curves.csv  tidy perturbation curves (readout, dropout, extra) per run and stage
    history.csv per-epoch training history of every run

Only aggregation happens here: each run's ``metrics.json``, ``history.csv`` and indices JSON
(which carries the effective parameter count) are read and checked, never a checkpoint, and
torch is never imported. Every input is read before anything is written; the tables directory
is then replaced whole (:func:`iterconv.io.replace_dir`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from iterconv.analysis.indices import IndicesError, read_indices
from iterconv.errors import UserError
from iterconv.io import (
    ForeignEntryError,
    check_replaceable,
    read_json,
    replace_dir,
    sha256,
    write_json,
)

INDEX_KEYS = ("CI", "RI", "DI", "CI_alt", "RI_alt", "DI_alt")
CURVES = ("readout", "dropout", "extra")
TABLES = ("runs", "stages", "curves", "history")
STAMP_PATTERN = "inputs-*.json"
# Everything collect writes into the tables directory; anything else there is refused.
OWNED = (*(f"{name}.csv" for name in TABLES), STAMP_PATTERN)
METRICS_KEYS = ("config", "best_epoch", "best_val_error", "final_val_error", "train_seconds")
# Run settings that change speed only: kept in runs.csv, not repeated in the other tables.
NOT_CONFIG_COLUMNS = frozenset({"eval_batch_size"})


@dataclass(frozen=True)
class RunInputs:
    """One run's checked inputs."""

    run_id: str
    metrics: dict[str, Any]
    history: pd.DataFrame
    indices: dict[str, Any]


def _nan(x: Any) -> Any:
    return math.nan if x is None else x


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json``, checked for the keys the tables need."""
    redo = f"delete {path.parent} and rerun its training job"
    metrics = read_json(path, UserError, "train the run first", redo)
    if not isinstance(metrics, dict):
        raise UserError(f"{path} is not a JSON object: {redo}")
    if missing := [k for k in METRICS_KEYS if k not in metrics]:
        raise UserError(f"{path} has no key {missing[0]!r}: {redo}")
    if not isinstance(metrics["config"], dict):
        raise UserError(f"{path}: 'config' is not an object: {redo}")
    return metrics


def read_history(path: Path, metrics: dict[str, Any]) -> pd.DataFrame:
    """A run's ``history.csv``, checked against the sha256 its ``metrics.json`` lists."""
    redo = f"delete {path.parent} and rerun its training job"
    expected = (metrics.get("sha256") or {}).get(path.name)
    try:
        if expected is not None and sha256(path) != expected:
            raise UserError(f"{path} does not match its sha256 in metrics.json: {redo}")
        return pd.read_csv(path)
    except FileNotFoundError as err:
        raise UserError(f"{path} not found: {redo}") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is truncated or corrupt: {redo}") from err


def read_inputs(
    metrics_paths: Sequence[str | Path], indices_paths: Sequence[str | Path]
) -> list[RunInputs]:
    """Every run's inputs, read and checked; the indices file of a run is the one whose stem is
    the run directory's name. Raises :class:`UserError` naming the first bad file."""
    indices_by_run: dict[str, Path] = {}
    for path in map(Path, indices_paths):
        if path.stem in indices_by_run:
            raise UserError(f"two indices files for run {path.stem}: {indices_by_run[path.stem]}")
        indices_by_run[path.stem] = path
    runs = []
    for path in map(Path, metrics_paths):
        run_id = path.parent.name
        if run_id not in indices_by_run:
            raise UserError(f"no indices file {run_id}.json among --indices for run {path.parent}")
        metrics = read_metrics(path)
        history = read_history(path.parent / "history.csv", metrics)
        try:
            indices = read_indices(indices_by_run[run_id])
        except IndicesError as err:
            raise UserError(str(err)) from err
        runs.append(RunInputs(run_id, metrics, history, indices))
    return runs


def run_rows(run: RunInputs) -> tuple[dict, list[dict], list[dict]]:
    """(runs row, stage rows, curve rows) of one run."""
    metrics, indices, run_id = run.metrics, run.indices, run.run_id
    epc = indices["epc"]
    row = {
        "run_id": run_id,
        **{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in metrics["config"].items()},
        "parameters": epc["raw"],
        "recurrent_parameters": epc["recurrent"],
        "epc": epc["epc"],
        "best_epoch": metrics["best_epoch"],
        "val_error": _nan(metrics["best_val_error"]),
        "final_val_error": _nan(metrics["final_val_error"]),
        "train_seconds": metrics["train_seconds"],
        "chance_error": indices["chance_error"],
        "index_error": indices["final_error"],
        **{k: indices["network"][k] for k in INDEX_KEYS},
    }
    stages, curves = [], []
    for st, weights in zip(indices["stages"], epc["stages"], strict=True):
        stages.append(
            {
                "run_id": run_id,
                "stage": st["stage"],
                "deviation": weights["mean_abs_deviation"],
                **{k: _nan(st.get(k)) for k in INDEX_KEYS},
            }
        )
        for kind in CURVES:
            for step, err in enumerate(st[f"{kind}_error"], start=1):
                curves.append(
                    {
                        "run_id": run_id,
                        "stage": st["stage"],
                        "perturbation": kind,
                        "step": step,
                        "error": err,
                        "error_alt": st[f"{kind}_error_alt"][step - 1],
                        "loss": st[f"{kind}_loss"][step - 1],
                        "distance": st[f"{kind}_distance"][step - 1],
                    }
                )
    return row, stages, curves


def build_tables(runs_in: Sequence[RunInputs]) -> dict[str, pd.DataFrame]:
    """The four tables (in memory) of the given runs."""
    rows, stage_rows, curve_rows, histories = [], [], [], []
    config_keys: dict[str, None] = {}  # ordered union of the runs' configuration keys
    for run in runs_in:
        row, stages, curves = run_rows(run)
        rows.append(row)
        stage_rows += stages
        curve_rows += curves
        history = run.history.copy()
        history.insert(0, "run_id", run.run_id)
        histories.append(history)
        config_keys.update(dict.fromkeys(run.metrics["config"]))
    runs = pd.DataFrame(rows)
    config_cols = [c for c in runs.columns if c in config_keys and c not in NOT_CONFIG_COLUMNS]

    def with_config(frame: pd.DataFrame) -> pd.DataFrame:
        cols = ["run_id", *(c for c in config_cols if c not in frame.columns)]
        return runs[cols].merge(frame, on="run_id")

    return {
        "runs": runs,
        "stages": with_config(pd.DataFrame(stage_rows)),
        "curves": with_config(pd.DataFrame(curve_rows)),
        "history": with_config(pd.concat(histories, ignore_index=True)),
    }


def check_stamp(stamp: Path | None, tables_dir: Path) -> None:
    """A stamp lies directly inside the tables directory and is named ``inputs-*.json``."""
    if stamp is None:
        return
    if stamp.resolve().parent != tables_dir.resolve():
        raise UserError(f"--stamp {stamp} must lie directly inside --tables-dir {tables_dir}")
    if not stamp.match(STAMP_PATTERN):
        raise UserError(f"--stamp {stamp}: its name must match {STAMP_PATTERN}")


def write_stamp(directory: Path, stamp: Path, inputs: Sequence[str | Path]) -> None:
    """``directory/<stamp's name>``: ``{"inputs": [the input paths as given, sorted]}``."""
    listed = sorted(str(p) for p in inputs)
    (directory / stamp.name).write_text(json.dumps({"inputs": listed}, indent=2) + "\n")


def check_outputs(tables_dir: Path, summary_path: Path, stamp: Path | None) -> None:
    """Refuse output paths that would make the tables directory swallow other files."""
    if summary_path.resolve().is_relative_to(tables_dir.resolve()):
        raise UserError(
            f"--summary {summary_path} lies inside --tables-dir {tables_dir}, which is replaced "
            "whole: put the summary elsewhere"
        )
    check_stamp(stamp, tables_dir)
    try:
        check_replaceable(tables_dir, OWNED)
    except ForeignEntryError as err:
        raise UserError(str(err)) from err


def collect(
    metrics_paths: Sequence[str | Path],
    indices_paths: Sequence[str | Path],
    tables_dir: str | Path,
    summary_path: str | Path,
    stamp: str | Path | None = None,
) -> pd.DataFrame:
    """Read and check every input, then write the summary JSON and replace ``tables_dir`` with
    the four tables and the optional ``stamp`` (``{"inputs": [input paths, sorted]}``).

    Any bad input, or an entry in ``tables_dir`` that collect does not write, raises
    :class:`UserError` before anything is written. Returns the runs table.
    """
    tables_dir, summary_path = Path(tables_dir), Path(summary_path)
    stamp = Path(stamp) if stamp is not None else None
    check_outputs(tables_dir, summary_path, stamp)
    tables = build_tables(read_inputs(metrics_paths, indices_paths))
    try:
        with replace_dir(tables_dir, OWNED) as tmp:
            for name, table in tables.items():
                table.to_csv(tmp / f"{name}.csv", index=False)
            if stamp is not None:
                write_stamp(tmp, stamp, [*metrics_paths, *indices_paths])
            write_json(summary_path, summary(tables["runs"]))  # last before the swap
    except ForeignEntryError as err:
        raise UserError(str(err)) from err
    return tables["runs"]


def summary(runs: pd.DataFrame) -> dict:
    """Headline metrics of the grid for DVC (``dvc metrics show``, ``dvc exp show``), to 4
    decimals (null when no run has the value): the run count, mean and best validation error
    and mean Convergence and Divergence Index of all runs, and per ``<dataset>/<block type>``
    the run count, mean validation error, CI and DI."""

    def value(df: pd.DataFrame, column: str, how: str) -> float | None:
        x = df[column].agg(how) if column in df else math.nan
        return None if pd.isna(x) else round(float(x), 4)

    def headline(df: pd.DataFrame) -> dict[str, Any]:
        means = {k: value(df, k, "mean") for k in ("val_error", "CI", "DI")}
        return {"runs": len(df), **means}

    overall = headline(runs) | {"best_val_error": value(runs, "val_error", "min")}
    groups = runs.groupby(["dataset", "variant"], sort=True)
    return overall | {f"{ds}/{variant}": headline(df) for (ds, variant), df in groups}
