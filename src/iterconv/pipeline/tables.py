"""Collect per-run outputs into the grid's tables (results/tables/*.csv, results/metrics.json).

Tables (columns documented in docs/pipeline.md):
    runs.csv    one row per run: configuration, parameter counts, EPC, errors, network indices
    stages.csv  one row per run and stage: indices and weight deviation
    curves.csv  tidy perturbation curves (readout, dropout, extra) per run and stage
    history.csv per-epoch training history of every run
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from iterconv.io import atomic_path, write_json

INDEX_KEYS = ("CI", "RI", "DI", "CI_alt", "RI_alt", "DI_alt")
CURVES = ("readout", "dropout", "extra")


def _nan(x):
    return math.nan if x is None else x


def run_rows(run_dir: Path, indices: dict) -> tuple[dict, list[dict], list[dict]]:
    """(runs row, stage rows, curve rows) of one run."""
    from iterconv.analysis.epc import effective_parameter_count
    from iterconv.train.loop import load_run_model

    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = metrics["config"]
    run_id = run_dir.name
    model, _ = load_run_model(run_dir / "best.pt")
    epc = effective_parameter_count(model)
    row = {
        "run_id": run_id,
        **{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in config.items()},
        "parameters": epc["raw"],
        "recurrent_parameters": epc["recurrent"],
        "epc": epc["epc"],
        "best_epoch": metrics["best_epoch"],
        "val_error": metrics["best_val_error"],
        "final_val_error": metrics["final_val_error"],
        "train_seconds": metrics["train_seconds"],
        "chance_error": indices["chance_error"],
        "index_error": indices["final_error"],
        **{k: _nan(indices["network"].get(k)) for k in INDEX_KEYS},
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
                        "error": _nan(err),
                        "error_alt": _nan(st[f"{kind}_error_alt"][step - 1]),
                        "loss": _nan(st[f"{kind}_loss"][step - 1]),
                        "distance": _nan(st[f"{kind}_distance"][step - 1]),
                    }
                )
    return row, stages, curves


def collect(
    metrics_paths: Sequence[str | Path],
    indices_paths: Sequence[str | Path],
    tables_dir: str | Path,
    summary_path: str | Path,
) -> pd.DataFrame:
    tables_dir = Path(tables_dir)
    indices_by_run = {Path(p).stem: Path(p) for p in indices_paths}
    rows, stage_rows, curve_rows, histories = [], [], [], []
    for path in map(Path, metrics_paths):
        run_dir = path.parent
        indices = json.loads(indices_by_run[run_dir.name].read_text())
        row, stages, curves = run_rows(run_dir, indices)
        rows.append(row)
        stage_rows += stages
        curve_rows += curves
        history = pd.read_csv(run_dir / "history.csv")
        history.insert(0, "run_id", run_dir.name)
        histories.append(history)
    runs = pd.DataFrame(rows)
    config_cols = [c for c in runs.columns if c in _config_columns()]

    def with_config(frame: pd.DataFrame) -> pd.DataFrame:
        cols = ["run_id", *(c for c in config_cols if c not in frame.columns)]
        return runs[cols].merge(frame, on="run_id")

    tables = {
        "runs": runs,
        "stages": with_config(pd.DataFrame(stage_rows)),
        "curves": with_config(pd.DataFrame(curve_rows)),
        "history": with_config(pd.concat(histories, ignore_index=True)),
    }
    for name, table in tables.items():
        with atomic_path(tables_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    write_json(summary_path, summary(runs))
    return runs


def _config_columns() -> list[str]:
    from iterconv.train.config import RunConfig

    return [k for k in RunConfig().to_dict() if k != "eval_batch_size"]


def summary(runs: pd.DataFrame) -> dict:
    """The grid's aggregated metrics (one file for DVC): overall and per variant/coupling."""

    def stats(df: pd.DataFrame) -> dict:
        out = {"runs": len(df), "val_error": df["val_error"].mean()}
        out.update({k: df[k].mean() for k in ("CI", "RI", "DI")})
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    groups = {}
    for (dataset, variant, init, coupling), df in runs.groupby(
        ["dataset", "variant", "init", "coupling"], sort=True
    ):
        groups[f"{dataset}/{variant}/{init}/{coupling:g}"] = stats(df)
    return {"all": stats(runs), "groups": groups}
