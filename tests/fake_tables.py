"""Synthetic tables with the columns of ``iterconv collect``, for the figure and claims tests.

The numbers follow the paper's qualitative findings (coupling and width raise the Convergence
Index and lower the Divergence Index, coupling and spectral normalisation raise the error), so
the figures look like the paper's and the claims can be checked on known effects. ``effect``
scales every effect: 1 = as in the paper, -1 = reversed, 0 = none.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from iterconv.io import atomic_path

SETTINGS = (
    (0.0, "nonrecurrent"),
    (0.0, "recurrent"),
    (0.5, "recurrent"),
    (0.9, "recurrent"),
    (1.0, "recurrent"),
)
OTHER_DATASETS = ("digits5", "digits2", "cifar100", "cifar10_2048", "mnist")
VARIATIONS = ({"bn_gamma": 0.1}, {"kernel": "triangular"}, {"couple_from": 5})


def _grid(preset: str, seeds: int) -> list[dict]:
    base = {
        "stages": 3,
        "mu": 0.95,
        "bn_gamma": 1.0,
        "kernel": "uniform",
        "couple_from": 0,
        "epochs": 6,
        "lr": 0.05,
        "multiplier_step": 0.1,
    }
    rows: list[dict] = []

    def add(dataset, variant, widths, settings, blocks, **extra):
        for width in widths:
            for coupling, init in settings:
                for seed in range(seeds):
                    rows.append(
                        {
                            **base,
                            "dataset": dataset,
                            "variant": variant,
                            "width": width,
                            "blocks": blocks,
                            "coupling": coupling,
                            "init": init,
                            "seed": seed,
                            **extra,
                        }
                    )

    if preset == "demo":  # what the demo preset trains
        demo = [s for s in SETTINGS if s[0] != 0.9]
        for variant in ("standard", "icr", "pcr"):
            add("demo_digits", variant, [8], demo, 4)
        return rows
    for variant in ("standard", "icr", "pcr"):
        add("cifar10", variant, [8, 16], SETTINGS, 4)
    for dataset in OTHER_DATASETS:
        add(dataset, "standard", [8, 16], SETTINGS, 4)
    for variation in VARIATIONS:
        add("cifar10", "standard", [16], SETTINGS[1:], 4, **variation)
    for variant in ("plain", "van", "implicit"):  # the related papers' block types
        add("cifar10", variant, [8, 16], SETTINGS[:1], 4)
    for n in (1, 3, 5):  # the VAN paper's CIFAR depth sweep: 4 stages of n blocks, width 64
        for variant, extra in (("standard", {}), ("plain", {}), ("van", {}),
                               ("van", {"multiplier_step": 0.0})):  # fmt: skip
            add("cifar10", variant, [64], SETTINGS[:1], n, stages=4, **extra)
    return rows


def _run_values(cfg: dict, rng: np.random.Generator, effect: float) -> dict:
    lam = cfg["coupling"] + (0.0 if cfg["init"] == "nonrecurrent" else 0.1)
    wide = math.log2(cfg["width"] / 8)
    convergent = cfg["variant"] in ("icr", "pcr", "implicit")
    skipless = cfg["variant"] in ("plain", "van")  # VAN ends without skip-connections
    ci = 0.55 + effect * (0.15 * lam + 0.05 * wide) + 0.2 * convergent
    di = 0.05 if convergent else 0.6 - effect * (0.25 * lam + 0.05 * wide)
    err = 0.12 - 0.02 * wide + effect * 0.04 * cfg["coupling"] + 0.02 * convergent
    err += 0.015 * skipless * cfg["blocks"] * (0.5 if cfg["variant"] == "van" else 1.0)
    err += 0.01 * (cfg["variant"] == "pcr") + 0.4 * cfg["dataset"].startswith("cifar100")
    noise = rng.normal(0, 0.01, 3)
    return {
        "CI": ci + noise[0],
        "RI": 1.0 + 3 * noise[1] - 0.5 * skipless,
        "DI": max(di + noise[2], 0.0),
        "val_error": err + rng.normal(0, 0.003),
    }


def fake_tables(
    preset: str = "full", seeds: int = 2, effect: float = 1.0, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Tables ``runs``, ``stages``, ``curves``, ``history`` and ``toy`` (see module doc).

    Args:
        preset: "full" (every dataset, variant and variation; 2 widths) or "demo".
        seeds: training seeds per configuration.
        effect: scale of the paper's effects (1 as in the paper, -1 reversed).
        seed: seed of the noise.
    """
    rng = np.random.default_rng(seed)
    runs, stages, curves, history = [], [], [], []
    for i, cfg in enumerate(_grid(preset, seeds)):
        run_id = f"r{i:04d}_{cfg['dataset']}_{cfg['variant']}_w{cfg['width']}"
        v = _run_values(cfg, rng, effect)
        chance = 0.99 if cfg["dataset"] == "cifar100" else 0.9
        raw = 20000 * cfg["width"] ** 2 // 64
        share = cfg["coupling"] if cfg["init"] == "recurrent" else 0.0
        runs.append(
            {
                "run_id": run_id,
                **cfg,
                "parameters": raw,
                "recurrent_parameters": int(raw * 0.9),
                "epc": raw * (1 - 0.8 * share) * (1 + rng.normal(0, 0.02)),
                "best_epoch": cfg["epochs"],
                "val_error": v["val_error"],
                "chance_error": chance,
                **{k: v[k] for k in ("CI", "RI", "DI")},
                **{f"{k}_alt": v[k] + 0.02 for k in ("CI", "RI", "DI")},
            }
        )
        for s in range(1, cfg["stages"] + 1):
            di = v["DI"] * (0.6 if s == 1 else 1.2)
            stages.append(
                {
                    "run_id": run_id,
                    "stage": s,
                    "CI": v["CI"] - 0.05 * (s - 2),
                    "RI": v["RI"],
                    "DI": di,
                    "CI_alt": v["CI"],
                    "RI_alt": v["RI"],
                    "DI_alt": di,
                    "deviation": 0.8 * (1 - share) + 0.02 * s,
                    **cfg,
                }
            )
            curves += _curves(run_id, s, cfg, v, chance, di)
        for e in range(1, cfg["epochs"] + 1):
            tr = v["val_error"] + 0.5 * math.exp(-e / 2) - 0.03
            history.append(
                {
                    "run_id": run_id,
                    "epoch": e,
                    "lr": cfg["lr"],
                    "train_loss": 2 * tr,
                    "train_error": tr,
                    "val_loss": 2 * tr + 0.1,
                    "val_error": v["val_error"] + 0.5 * math.exp(-e / 2),
                    "alpha_residual": math.exp(-e) if cfg["variant"] == "van" else math.nan,
                    "seconds": 1.0,
                    **cfg,
                }
            )
    return {
        "runs": pd.DataFrame(runs),
        "stages": pd.DataFrame(stages),
        "curves": pd.DataFrame(curves),
        "history": pd.DataFrame(history),
        "toy": fake_toy(),
    }


def _curves(run_id, stage, cfg, v, chance, di) -> list[dict]:
    blocks, final = cfg["blocks"], v["val_error"]
    out = []
    for kind, steps in (("readout", blocks), ("dropout", blocks), ("extra", 16)):
        for k in range(1, steps + 1):
            if kind == "readout":
                err = final + (chance - final) * (1 - v["CI"]) * (blocks - k) / max(blocks - 1, 1)
            elif kind == "dropout":
                err = final + (0.3 if k == 1 else 0.02)
            else:
                err = final + (chance - final) * min(1.0, 2 * di * k / 16)
            out.append(
                {
                    "run_id": run_id,
                    "stage": stage,
                    "perturbation": kind,
                    "step": k,
                    "error": err,
                    "error_alt": err - final,
                    "loss": 3 * err,
                    "distance": 0.1 + (blocks - k if kind == "readout" else k) * (1 + di),
                    **cfg,
                }
            )
    return out


def fake_toy() -> pd.DataFrame:
    """Toy trajectories (docs/analysis.md, section 3) of two test points, four methods."""
    rows = []
    for point, (t1, t2) in enumerate(((1.0, 0.5), (-0.5, 1.0))):
        for method in ("algorithm", "feedforward", "resnet", "recurrent"):
            for pert, steps in (("none", 8), ("drop4", 8), ("extra", 16)):
                for step in range(steps + 1):
                    frac = 1 - 0.7**step if method == "algorithm" else step / 8
                    if method == "feedforward":
                        z = (math.sin(step + point), math.cos(2 * step))
                    else:
                        if pert == "drop4" and step >= 4:
                            frac -= 0.1
                        z = (t1 * frac, t2 * frac)
                    rows.append(
                        {
                            "method": method,
                            "point": point,
                            "perturbation": pert,
                            "step": step,
                            "z1": z[0],
                            "z2": z[1],
                            "true_z1": t1,
                            "true_z2": t2,
                        }
                    )
    return pd.DataFrame(rows)


def write_fake_tables(
    tables_dir: str | Path, toy_dir: str | Path | None = None, **kwargs
) -> dict[str, pd.DataFrame]:
    """Write :func:`fake_tables` as ``tables_dir/*.csv`` and ``toy_dir/trajectories.csv``."""
    tables = fake_tables(**kwargs)
    for name, df in tables.items():
        if name == "toy":
            if toy_dir is None:
                continue
            path = Path(toy_dir) / "trajectories.csv"
        else:
            path = Path(tables_dir) / f"{name}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    return tables
