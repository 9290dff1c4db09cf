"""Family ``van``: the depth sweep of section 4.1 of the VAN paper (phasing out skip-connections).

Thin fully connected networks (:class:`iterconv.models.van.FCNet`) of l = ``depths`` hidden
layers, architectures plain / resnet / van / van_free (VAN with lambda = 0), trained on
flattened, normalised images with the paper's recipe (SGD, momentum 0.9, lr 0.001, 50 epochs,
batch 128; eta0 = lr / 2, alpha_0 = 0, lambda_0 = -1). One job = one dataset, architecture and
depth, for a group of seeds. Before training (epoch 0) and after every epoch it records the
training loss and accuracy (running means over the epoch's batches; NaN at epoch 0), the
held-out accuracy (the prepared dataset's validation split; the project never touches official
test sets), the mean alpha residual and the mean multiplier; and, per run, the phase-out step:
the first SGD step after which the mean alpha reaches 1 - 1e-3 (null if never).

The alphas take the plain gradient step of eq. 7 (no momentum, no weight decay);
``alpha_momentum: true`` lets them share the weights' momentum instead.

The spec (``families.van`` of a preset) is :class:`VanConfig`; one job is a :class:`VanJob`
(keys, defaults and allowed values: docs/van.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iterconv.families.config import (
    NAME_PATTERN,
    SEED_MAX,
    parse,
    required,
    setting,
    shared,
    to_dict,
)
from iterconv.figures import van as van_figures
from iterconv.models.van import ARCHS
from iterconv.report.engine import (
    NOT_REPRODUCIBLE,
    Band,
    Below,
    ClaimResult,
    difference_check,
    level_check,
)

NAME = "van"
TITLE = "Phasing out skip-connections: Variable Activation Networks (the VAN paper)"


@dataclass(frozen=True, kw_only=True)
class Training:
    """The network's width and the training recipe: every job of a spec has the same."""

    width: int = setting(50, "hidden units", minimum=1)
    epochs: int = setting(50, "training epochs", minimum=1)
    batch_size: int = setting(128, "training batch size", minimum=2)
    lr: float = setting(0.001, "learning rate eta, constant", exclusive_minimum=0, maximum=10)
    momentum: float = setting(0.9, "SGD momentum of the weights", minimum=0, maximum=0.999)
    alpha_momentum: bool = setting(
        False, "true: the alphas use the weights' momentum too (not eq. 7)"
    )
    weight_decay: float = setting(
        0.0, "SGD weight decay, never applied to the alphas", minimum=0, maximum=1
    )
    multiplier_fraction: float = setting(
        0.5, "eta0 / eta: the multipliers' step (eq. 8)", minimum=0, maximum=100
    )
    alpha_init: float = setting(0.0, "initial alphas", minimum=0, maximum=1)
    multiplier_init: float = setting(
        -1.0, "initial multipliers lambda_0 (van; van_free keeps 0)", minimum=-1e6, maximum=0
    )
    n_train: int | None = setting(
        None, "use only the first n training images (null: all)", minimum=2
    )
    n_val: int | None = setting(
        None, "use only the first n validation images (null: all)", minimum=2
    )


@dataclass(frozen=True, kw_only=True)
class VanConfig(Training):
    """``families.van`` of a preset: one job per dataset, architecture, depth and seed group."""

    datasets: tuple[str, ...] = required("prepared datasets, single-label", pattern=NAME_PATTERN)
    depths: tuple[int, ...] = setting(tuple(range(1, 31)), "hidden layers l", minimum=1)
    archs: tuple[str, ...] = setting(ARCHS, "architectures", choices=ARCHS)
    seeds: tuple[int, ...] = setting((0,), "training seeds", minimum=0, maximum=SEED_MAX)
    seeds_per_job: int = setting(1, "seeds run one after another inside a job", minimum=1)


@dataclass(frozen=True, kw_only=True)
class VanJob(Training):
    """One job: a dataset, architecture and depth, trained for each of a group of seeds."""

    dataset: str = required("prepared dataset, single-label", pattern=NAME_PATTERN)
    arch: str = required("architecture", choices=ARCHS)
    depth: int = required("hidden layers l", minimum=1)
    seeds: tuple[int, ...] = required(
        "training seeds, run one after another", minimum=0, maximum=SEED_MAX
    )


CONFIG = VanConfig  # the family's section of a preset

FIGURES = {
    "van_depth": (
        "Held-out accuracy after training against the number of hidden layers, per "
        "architecture (mean over seeds, bars: min to max), as in the VAN paper, fig. 1.",
        van_figures.depth_figure,
    ),
    "van_curves": (
        "Training (dashed) and held-out (solid) error per epoch of plain and VAN networks at "
        "the deepest depth run, with VAN's mean alpha residual (gold, right axis), as in "
        "the VAN paper, fig. 2 (right), in the fully connected setting.",
        van_figures.curves_figure,
    ),
}

# --- the spec -------------------------------------------------------------------------------


def _seed_label(seeds: tuple[int, ...]) -> str:
    return f"s{seeds[0]}" if len(seeds) == 1 else f"s{seeds[0]}-{seeds[-1]}"


def jobs(config: VanConfig) -> dict[str, VanJob]:
    """The spec's jobs by id: ``mnist_van_d8_s0`` (``_s0-4`` for a group of seeds)."""
    k = config.seeds_per_job
    groups = [config.seeds[i : i + k] for i in range(0, len(config.seeds), k)]
    training = shared(config, Training)
    return {
        f"{dataset}_{arch}_d{depth}_{_seed_label(seeds)}": VanJob(
            dataset=dataset, arch=arch, depth=depth, seeds=seeds, **training
        )
        for dataset in config.datasets
        for arch in config.archs
        for depth in config.depths
        for seeds in groups
    }


def expand(spec: Mapping[str, Any], where: str = f"families.{NAME}") -> dict[str, dict]:
    """``families.van`` -> {job id: configuration as JSON}; raises ParamsError naming the key
    from ``where``."""
    return {job_id: to_dict(job) for job_id, job in jobs(parse(VanConfig, spec, where)).items()}


def parse_job(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One job's configuration (``family-run``), checked and normalised."""
    return to_dict(parse(VanJob, config, where))


def datasets(config: Mapping[str, Any]) -> list[str]:
    return [config["dataset"]]


# --- running a job --------------------------------------------------------------------------


def _arrays(path: Path, name: str, n_train: int | None, n_val: int | None):
    """Flattened, normalised float32 inputs and int64 class ids of both splits."""
    import torch

    from iterconv.data.prepared import load_prepared, normalize
    from iterconv.errors import UserError

    data = load_prepared(path)
    out = []
    for x, y, n in ((data.train_x, data.train_y, n_train), (data.val_x, data.val_y, n_val)):
        if data.multilabel:  # Digitclutter: multi-hot (N, 10); only one digit per image works
            if not bool((y.sum(1) == 1).all()):
                raise UserError(
                    f"dataset {name!r} has images with several digits: the van family needs "
                    "single-label data (prepare Digitclutter with n_digits: 1)"
                )
            y = y.argmax(1)
        n = len(x) if n is None else min(n, len(x))
        x = normalize(x[:n], data.mean, data.std).flatten(1)
        out += [x.contiguous(), y[:n].to(torch.int64)]
    return (*out, data.num_classes)


def _optimizer(model, cfg: dict):
    """SGD with momentum on the weights; the alphas in their own group (eq. 7: no momentum
    unless ``alpha_momentum``; never weight decay)."""
    import torch

    from iterconv.models import van

    gates = {id(p) for p in van.gate_parameters(model)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in gates]},
        van.gate_group(model, momentum=cfg.get("alpha_momentum", False)),
    ]
    return torch.optim.SGD(
        groups, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
    )


def _train_seed(cfg: dict, seed: int, arrays, device: str, log) -> dict:
    """Train one network: ``{"epochs": per-epoch records, "steps_per_epoch", "phase_out_step"}``
    (the first step after which the mean alpha reaches 1 - PHASE_OUT_TOL; None if never or
    without gates)."""
    import torch
    import torch.nn.functional as F

    from iterconv.models import van

    train_x, train_y, val_x, val_y, num_classes = (
        a.to(device) if hasattr(a, "to") else a for a in arrays
    )
    torch.manual_seed(seed)
    model = van.FCNet(train_x.shape[1], num_classes, cfg["depth"], cfg["arch"], cfg["width"]).to(
        device
    )
    with torch.no_grad():
        for gate in van.skip_gates(model):
            gate.alpha.fill_(cfg["alpha_init"])
            gate.multiplier.fill_(cfg["multiplier_init"] if gate.constrained else 0.0)
    gates = van.gate_parameters(model)
    opt = _optimizer(model, cfg)
    step = cfg["multiplier_fraction"] * cfg["lr"]  # eta0 (constant learning rate)
    order = torch.Generator().manual_seed(seed)
    n, bs = len(train_x), cfg["batch_size"]
    steps = 0
    phase_out_step = None
    watch = bool(gates)  # mean alpha checked after every step until the skips are gone

    def evaluate(epoch: int, train_loss: float, train_acc: float) -> dict:
        """Held-out accuracy (batch norm in inference mode) and the gates' state."""
        model.eval()
        with torch.no_grad():
            hits = sum(
                int((model(val_x[i : i + 1000]).argmax(1) == val_y[i : i + 1000]).sum())
                for i in range(0, len(val_x), 1000)
            )
        return {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_acc": hits / len(val_x),
            "alpha_residual": van.alpha_residual(model),
            "mean_multiplier": van.mean_multiplier(model),
        }

    records = [evaluate(0, float("nan"), float("nan"))]  # before training: the skips at init
    for epoch in range(1, cfg["epochs"] + 1):
        # Training: one pass in a seeded random order; running loss and accuracy.
        model.train()
        perm = torch.randperm(n, generator=order).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            logits = model(train_x[idx])
            loss = F.cross_entropy(logits, train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            van.add_multiplier_gradients(model)  # eq. 7
            opt.step()
            van.update_multipliers(model, step)  # clip alpha, eq. 8
            steps += 1
            if watch and van.mean_alpha(model) >= 1 - van.PHASE_OUT_TOL:
                phase_out_step, watch = steps, False
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == train_y[idx]).sum()
            seen += len(idx)
        records.append(evaluate(epoch, float(loss_sum) / seen, float(correct) / seen))
        log(records[-1])
    return {
        "epochs": records,
        "steps_per_epoch": steps // cfg["epochs"],
        "phase_out_step": phase_out_step,
    }


def run(config: dict, out: Path, *, data: dict[str, Path], device: str = "cpu") -> None:
    from iterconv.io import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(data[config["dataset"]], config["dataset"], config["n_train"], config["n_val"])
    runs = []
    for seed in config["seeds"]:
        start = time.perf_counter()
        tag = f"{config['dataset']} {config['arch']} l={config['depth']} seed {seed}"

        def log(r: dict, tag: str = tag) -> None:
            print(
                f"{tag} epoch {r['epoch']}: loss {r['train_loss']:.4f} "
                f"train {r['train_acc']:.4f} val {r['val_acc']:.4f} "
                f"alpha-res {r['alpha_residual']:.3g}",
                flush=True,
                file=sys.stdout,
            )

        trained = _train_seed(config, seed, arrays, device, log)
        if trained["phase_out_step"] is not None:
            print(f"{tag}: skips phased out at step {trained['phase_out_step']}", flush=True)
        runs.append({"seed": seed, "seconds": time.perf_counter() - start, **trained})
    write_json(out / "result.json", {"config": config, "runs": runs})


# --- tables ---------------------------------------------------------------------------------

_KEYS = ("dataset", "arch", "depth")


# Per run, in ``final``: the training setting and the phase-out step (NaN: never, or no gates).
_SETTING = ("lr", "batch_size", "momentum", "multiplier_fraction", "alpha_init", "multiplier_init")
_RUN_COLUMNS = (*_SETTING, "n_epochs", "alpha_momentum", "steps_per_epoch", "phase_out_step")


def collect(results: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """``epochs``: one row per job, seed and epoch; ``final``: one row per job and seed (the
    last epoch) with the setting and the phase-out step."""
    rows, runs = [], []
    for job_id, result in sorted(results.items()):
        cfg = result["config"]
        for r in result["runs"]:
            for e in r["epochs"]:
                rows.append({"job": job_id, **{k: cfg[k] for k in _KEYS}, "seed": r["seed"], **e})
            runs.append(
                {
                    "job": job_id,
                    "seed": r["seed"],
                    **{k: cfg[k] for k in _SETTING},
                    "n_epochs": cfg["epochs"],
                    "alpha_momentum": cfg.get("alpha_momentum", True),  # older jobs: shared
                    "steps_per_epoch": r.get("steps_per_epoch"),
                    "phase_out_step": r.get("phase_out_step"),
                }
            )
    columns = ["job", *_KEYS, "seed", "epoch", "train_loss", "train_acc", "val_acc"]
    columns += ["alpha_residual", "mean_multiplier"]
    epochs = pd.DataFrame(rows, columns=columns)
    last = epochs.groupby(["job", "seed"])["epoch"].transform("max") == epochs["epoch"]
    final = epochs[last].reset_index(drop=True)
    per_run = pd.DataFrame(runs, columns=["job", "seed", *_RUN_COLUMNS])
    per_run["phase_out_step"] = pd.to_numeric(per_run["phase_out_step"], errors="coerce")
    final = final.merge(per_run, on=["job", "seed"], how="left")
    return {"epochs": epochs, "final": final}


# --- claims ---------------------------------------------------------------------------------

SHALLOW_MAX = 10  # the paper: plain networks degrade "once the depth exceeds ~10 layers"
COMPETITIVE_TOL = 0.01  # "competitive", "no pronounced degradation": within 1 point of accuracy
REMOVED_TOL = 1e-3  # mean alpha residual below which the skip-connections count as removed
REF = "the VAN paper, sec. 4.1, fig. 1"


def _depth_pair(df: pd.DataFrame) -> tuple[int, int] | None:
    """(shallow, deep): the deepest depth <= SHALLOW_MAX and the deepest depth run."""
    depths = sorted(int(d) for d in df["depth"].unique())
    shallow = [d for d in depths if d <= SHALLOW_MAX]
    if not shallow or depths[-1] <= shallow[-1]:
        return None
    return shallow[-1], depths[-1]


def constraint_only_step(
    lr: float,
    multiplier_fraction: float,
    multiplier_init: float,
    alpha_init: float = 0.0,
    momentum: float = 0.0,
    max_steps: int = 10**6,
) -> int | None:
    """The phase-out step eqs. 7 and 8 give when dC/dalpha = 0: the constraint alone pushes
    alpha up by -lr * lambda per step (with ``momentum``: through a momentum buffer). None if
    alpha never reaches 1 - PHASE_OUT_TOL within ``max_steps``."""
    from iterconv.models.van import PHASE_OUT_TOL

    alpha, lam, velocity = alpha_init, multiplier_init, 0.0
    for step in range(1, max_steps + 1):
        velocity = momentum * velocity + lam
        alpha = min(max(alpha - lr * velocity, 0.0), 1.0)
        lam += multiplier_fraction * lr * (alpha - 1)
        if alpha >= 1 - PHASE_OUT_TOL:
            return step
    return None


def _phase_out(final: pd.DataFrame) -> dict[str, float] | None:
    """The VAN runs' phase-out, when the stated updates phase the skips out abruptly: every
    run reaches mean alpha 1 - PHASE_OUT_TOL within its first epoch, or within 10% of the step
    the constraint alone gives (the cost gradient then plays no part, so the phase-out cannot
    come later for deeper networks). The paper's figs. 2 (right) and 5 show a gradual
    phase-out instead, later for deeper networks. None otherwise or without the columns."""
    need = {"phase_out_step", "steps_per_epoch", *_SETTING, "alpha_momentum"}
    van = final[final["arch"] == "van"] if need <= set(final.columns) else final.iloc[:0]
    if van.empty or van["phase_out_step"].isna().any():
        return None
    steps = van["phase_out_step"].to_numpy(float)
    alone = [
        constraint_only_step(
            r.lr,
            r.multiplier_fraction,
            r.multiplier_init,
            r.alpha_init,
            r.momentum if str(r.alpha_momentum).lower() == "true" else 0.0,
        )
        for r in van.itertuples()
    ]
    first_epoch = steps <= van["steps_per_epoch"].to_numpy(float)
    forced = np.array(
        [a is not None and abs(s - a) <= 0.1 * a for s, a in zip(steps, alone, strict=True)]
    )
    if not (first_epoch | forced).all():
        return None
    return {
        "phase_out_step_min": float(steps.min()),
        "phase_out_step_max": float(steps.max()),
        "constraint_only_step": float(max(a or 0 for a in alone)),
        "steps_per_epoch": float(van["steps_per_epoch"].max()),
    }


def _as_specified(res: ClaimResult, phase_out: dict[str, float] | None) -> ClaimResult:
    """A claim on VAN's accuracy is not tested when the stated updates remove the skips
    abruptly (see :func:`_phase_out`): verdict "not reproducible as specified"."""
    if phase_out is None:
        return res
    res.measured = {**res.measured, **phase_out}
    res.verdict = NOT_REPRODUCIBLE
    res.note += (
        " The paper's stated updates (eqs. 7 and 8, lambda_0 = -1) removed every skip-connection "
        f"by step {phase_out['phase_out_step_max']:g} ({phase_out['steps_per_epoch']:g} steps "
        f"per epoch; the constraint alone gives step {phase_out['constraint_only_step']:g}), "
        "whereas the paper's figs. 2 and 5 show a gradual phase-out, later for deeper "
        "networks: the specification cannot produce its own figures, so this run does not test "
        "the claim."
    )
    return res


def summary(tables: dict[str, pd.DataFrame]) -> str:
    """The claims report's section header: the training setting and the phase-out steps."""
    final = tables.get("final", pd.DataFrame())
    if final.empty or "phase_out_step" not in final:
        return ""
    lines = ["Setting of these runs:", ""]
    for key, group in final.groupby(["dataset", "lr", "batch_size", "n_epochs", "alpha_momentum"]):
        dataset, lr, bs, n_epochs, momentum = key
        update = "shared momentum" if str(momentum).lower() == "true" else "eq. 7, no momentum"
        lines.append(
            f"- `{dataset}`: {n_epochs} epochs, lr {lr:g} (the paper: 0.001, 50 epochs), batch "
            f"{bs}, {int(group['steps_per_epoch'].max())} steps per epoch; alpha update: {update}."
        )
    van = final[final["arch"] == "van"]
    if len(van):
        lines += ["", "| dataset | depth | VAN phase-out step (min-max over seeds) |"]
        lines += ["|---|---|---|"]
        for (dataset, depth), g in van.groupby(["dataset", "depth"]):
            s = g["phase_out_step"]
            cell = "never" if s.isna().all() else f"{s.min():g}-{s.max():g}"
            lines.append(f"| `{dataset}` | {depth} | {cell} |")
    return "\n".join(lines) + "\n"


def _arch(name: str):
    return lambda g: g["arch"] == name


def _band(low: float, high: float) -> tuple[Band, str]:
    """The rule "the difference lies in [low, high]" and the note that states it."""
    note = f"Supported when the 95% interval of the difference lies in [{low:g}, {high:g}]."
    return Band(low, high), note


def _degradation(final: pd.DataFrame, arch: str, rng: np.random.Generator) -> ClaimResult:
    """Held-out accuracy at the shallow depth minus at the deepest, per dataset."""
    if arch == "plain":
        text = (
            "Plain networks degrade with depth: the deepest plain network is less accurate "
            f"than the deepest one of at most {SHALLOW_MAX} layers."
        )
    else:
        text = (
            "VAN networks do not suffer such a pronounced degradation: the deepest VAN loses "
            f"at most {COMPETITIVE_TOL:g} of accuracy against one of at most {SHALLOW_MAX} layers."
        )
    base = ClaimResult(id=f"van_{arch}_depth_degradation", claim=text, paper_reference=REF)
    df = final[final["arch"] == arch]
    pair = _depth_pair(df) if len(df) else None
    if pair is None:
        base.note = f"Needs {arch} runs at a depth <= {SHALLOW_MAX} and at a deeper one."
        return base
    shallow, deep = pair
    base.measured = {"shallow_depth": shallow, "deep_depth": deep}
    groups = (lambda g: g["depth"] == shallow, lambda g: g["depth"] == deep, ["dataset"])
    if arch == "plain":
        return difference_check(base, df, "val_acc", *groups, rng)
    rule, base.note = _band(-1.0, COMPETITIVE_TOL)
    return difference_check(base, df, "val_acc", *groups, rng, bound=rule)


def _skips_removed(final: pd.DataFrame, rng: np.random.Generator) -> ClaimResult:
    res = ClaimResult(
        id="van_skips_removed",
        claim="The Lagrange multipliers phase the skip-connections out: at the end of training "
        f"the mean alpha residual of VAN networks is below {REMOVED_TOL:g}.",
        paper_reference="the VAN paper, sec. 3 and fig. 2 (right)",
        note="One value per VAN run: its final mean alpha residual.",
    )
    van = final[final["arch"] == "van"]
    if van["alpha_residual"].notna().any():
        res.measured = {"max": float(van["alpha_residual"].max())}
    return level_check(res, van, "alpha_residual", Below(REMOVED_TOL), rng, digits=6)


def claims(tables: dict[str, pd.DataFrame], rng: np.random.Generator) -> list[ClaimResult]:
    """Section 4.1's claims on the ``final`` table (held-out accuracy after the last epoch)."""
    final = tables.get("final", pd.DataFrame())
    if final.empty:
        final = pd.DataFrame(columns=[*_KEYS, "seed", "val_acc", "alpha_residual"])
    beats = difference_check(
        ClaimResult(
            id="van_beats_plain",
            claim="VAN networks outperform plain networks across all depths (held-out "
            "accuracy, averaged over datasets and depths).",
            paper_reference=REF,
        ),
        final,
        "val_acc",
        _arch("van"),
        _arch("plain"),
        ["dataset", "depth"],
        rng,
    )
    within, note = _band(-COMPETITIVE_TOL, COMPETITIVE_TOL)
    free = difference_check(
        ClaimResult(
            id="van_free_competitive",
            claim="VAN (lambda = 0) networks obtain competitive results across all depths: "
            f"within {COMPETITIVE_TOL:g} of ResNets' held-out accuracy.",
            paper_reference=REF,
            note=note,
        ),
        final,
        "val_acc",
        _arch("van_free"),
        _arch("resnet"),
        ["dataset", "depth"],
        rng,
        bound=within,
    )
    phase_out = _phase_out(final)
    return [
        _degradation(final, "plain", rng),
        _as_specified(_degradation(final, "van", rng), phase_out),
        _as_specified(beats, phase_out),
        free,
        _skips_removed(final, rng),
    ]
