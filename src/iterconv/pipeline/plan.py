"""``iterconv plan``: the size of a preset before running it.

For each sweep of a preset: training runs, total epochs, training FLOPs, evaluation FLOPs and
the estimated device-hours; then the totals and the number of jobs of each kind.

FLOPs (``forward_flops``): 2 x the multiply-accumulates of every convolution and linear layer of
the run's network (width, stages, blocks, input channels, image size, classes), by formula from
the layout of ``iterconv.models.resnet`` and of the torchvision variants (``network_flops``; no
network is built: that took most of the command's time); tests/test_plan.py checks it against a
count with hooks on those layers of the built network. BatchNorm, ReLU, additions, pooling and
the spectral normalisation's power iteration are not counted (a few percent of the convolutions;
the measured throughput of ICR/PCR includes them). A training image costs ~3 forward passes
(forward, and a backward of twice the forward), every epoch:

    train FLOPs = 3 x forward x training images x epochs   (the last partial batch is dropped)
    eval  FLOPs = forward x validation images x epochs     (one evaluation per epoch)

Device-hours come from the committed table of measured throughput (``throughput.yaml``, written
by ``bench/bench_throughput.py --record``): images/s of one job per (variant, width) on a named
device. A row measured on the paper's CIFAR network (3 x 16, 3 x 32 x 32, 10 classes) is moved
to another network by the ratio of forward FLOPs; a missing width is scaled from the nearest
measured width the same way, a missing variant uses the standard network's rate (each labelled
in the ``basis`` column). When the table has no entry for the device asked for, the plan says so
and uses an assumed throughput instead: an effective FLOP rate with a floor of one step's time
(small networks on a GPU are bound by kernel launches, not FLOPs), printed as an assumption.
Evaluation images are counted as one third of a training image (forward only). A variant whose
one-pass FLOP count understates its work (``STEP_COST``: the implicit variant's solves) is
slowed by its measured step-time factor wherever its rate is borrowed or assumed; its FLOPs
stay the one-pass count.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("throughput.yaml")

# (image channels, image side, classes) of each dataset source, as prepared (docs/data.md)
SHAPES = {
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "mnist": (1, 28, 10),
    "digitclutter": (1, 32, 10),
}
# (training, validation) images of the full official splits (torchvision_sets.py)
SPLITS = {"cifar10": (45_000, 5_000), "cifar100": (45_000, 5_000), "mnist": (50_000, 10_000)}
DIGITCLUTTER_DEFAULT = (100_000, 10_000)  # `iterconv digitclutter` defaults
# the configuration the throughput rows are measured on (bench_throughput.py)
BENCH_SHAPE = (3, 32, 10)
# Step time relative to the standard network of the same size, for variants whose work the
# one-pass FLOP count understates; applied when the variant has no measured row of its own.
# implicit: each block evaluates f about 10-30 times per step (fixed-point iteration and
# adjoint solve). bench/bench_train_step.py on the CPU, one thread, 3 x 4, batch 64, freshly
# initialised weights: 10.8x at width 8, 10.6x at width 16 (bench/RESULTS.md). The iteration
# counts depend on the weights, and a GPU's ratio may differ: measure a row instead.
STEP_COST = {"implicit": 10.8}


# --- FLOPs ----------------------------------------------------------------------------------


def forward_flops(
    width: int,
    stages: int = 3,
    blocks: int = 16,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
) -> int:
    """Forward FLOPs of one image through the paper's ResNet: 2 x MACs of convs and linears."""
    size, channels = image_size, width
    macs = size * size * width * in_channels * 9  # stem: 3x3, padding 1
    for s in range(stages):
        if s > 0:  # downsampling block: 3x3 stride 2 (C -> 2C), then 3x3 (2C -> 2C)
            size = (size + 1) // 2
            macs += size * size * 2 * channels * channels * 9
            channels *= 2
            macs += size * size * channels * channels * 9
        macs += blocks * 2 * size * size * channels * channels * 9  # two 3x3 convs per block
    return 2 * (macs + channels * num_classes)  # + the linear head


def tv_resnet_flops(
    width: int, stages: int, blocks: int, in_channels: int, image_size: int, num_classes: int
) -> int:
    """Forward FLOPs of the ``tv_resnet`` variant (iterconv.models.torchvision_nets): a 3x3
    stem, then per stage ``blocks`` BasicBlocks of two 3x3 convs; a stage after the first
    halves the size in its first block, which also projects its input by a strided 1x1 conv."""
    size, channels = image_size, width
    macs = size * size * width * in_channels * 9
    for s in range(stages):
        out = width * 2**s
        if s > 0:
            size = (size + 1) // 2
            macs += size * size * channels * out  # the 1x1 projection
        macs += size * size * out * channels * 9  # first conv of the first block: C -> C'
        macs += (2 * blocks - 1) * size * size * out * out * 9
        channels = out
    return 2 * (macs + channels * num_classes)


def tv_vit_flops(
    width: int, blocks: int, in_channels: int, image_size: int, num_classes: int, patch: int = 4
) -> int:
    """Forward FLOPs of the ``tv_vit`` variant: the patch projection, then per encoder layer the
    attention's q/k/v and output projections (4 d^2 per token), its scores and weighted sum
    (2 T^2 d) and the MLP (2 x 4 d^2 per token), over T = patches + the class token; the head
    reads the class token."""
    patches = (image_size // patch) ** 2
    tokens = patches + 1
    macs = patches * in_channels * patch * patch * width
    macs += blocks * (tokens * 12 * width * width + 2 * tokens * tokens * width)
    return 2 * (macs + width * num_classes)


def network_flops(cfg, in_channels: int, image_size: int, num_classes: int) -> int:
    """Forward FLOPs of one image through the network of run configuration ``cfg``."""
    shape = (in_channels, image_size, num_classes)
    if cfg.variant == "tv_resnet":
        return tv_resnet_flops(cfg.width, cfg.stages, cfg.blocks, *shape)
    if cfg.variant == "tv_vit":
        return tv_vit_flops(cfg.width, cfg.blocks, *shape)
    return forward_flops(cfg.width, cfg.stages, cfg.blocks, *shape)


# --- the runs of a preset -------------------------------------------------------------------


def dataset_facts(spec: dict[str, Any]) -> tuple[int, int, tuple[int, int, int]]:
    """(training images, validation images, (channels, side, classes)) of a dataset spec."""
    source = spec["source"]
    if source == "digitclutter":
        n_train = spec.get("n_train", DIGITCLUTTER_DEFAULT[0])
        n_val = spec.get("n_val", DIGITCLUTTER_DEFAULT[1])
    else:
        n_train, n_val = SPLITS[source]
        n_train = spec.get("n_train", n_train)
    return n_train, n_val, SHAPES[source]


@dataclass
class RunCost:
    run_id: str
    sweep: str
    epochs: int
    train_images: int  # per epoch, after dropping the partial batch
    val_images: int
    forward: int  # FLOPs of one image
    config: Any  # the RunConfig
    shape: tuple[int, int, int]  # (image channels, image side, classes)
    images_per_s: float | None = None  # training throughput of one job
    basis: str = ""

    @property
    def train_flops(self) -> float:
        return 3.0 * self.forward * self.train_images * self.epochs

    @property
    def eval_flops(self) -> float:
        return float(self.forward) * self.val_images * self.epochs

    @property
    def hours(self) -> float:
        images = self.epochs * (self.train_images + self.val_images / 3)
        return images / self.images_per_s / 3600


def run_costs(params: dict[str, Any]) -> list[RunCost]:
    from iterconv.pipeline.grid import expand_runs

    costs = []
    for rid, run in expand_runs(params).items():
        cfg = run.config
        n_train, n_val, (c, size, classes) = dataset_facts(params["datasets"][cfg.dataset])
        batches = max(n_train // cfg.batch_size, 1)  # as train_epoch: drop the partial batch
        fwd = network_flops(cfg, c, size, classes)
        used = batches * min(cfg.batch_size, n_train)
        costs.append(RunCost(rid, run.sweep, cfg.epochs, used, n_val, fwd, cfg, (c, size, classes)))
    return costs


# --- throughput -----------------------------------------------------------------------------


def load_table(path: str | Path = TABLE) -> dict[str, Any]:
    import yaml

    return (yaml.safe_load(Path(path).read_text()) or {}).get("devices", {})


def measured_rate(rows: Iterable[dict], cfg, path: str, c: int, size: int, classes: int):
    """(images/s, basis) of one run from measured rows, or None when nothing fits."""
    rows = [r for r in rows if r.get("path") == path and r.get("images_per_s")]
    basis = ["measured"]
    same = [r for r in rows if r["variant"] == cfg.variant]
    factor = 1.0
    if not same:
        same = [r for r in rows if r["variant"] == "standard"]
        factor = STEP_COST.get(cfg.variant, 1.0)
        basis.append("standard's rate" + (f" / {factor:g} (step cost)" if factor != 1 else ""))
    if not same:
        return None
    target = network_flops(cfg, c, size, classes)
    exact = [r for r in same if r["width"] == cfg.width]
    row = exact[0] if exact else min(same, key=lambda r: abs(r["width"] - cfg.width))
    source = forward_flops(row["width"], row["stages"], row["blocks"], *BENCH_SHAPE)
    if not exact:
        basis.append(f"scaled from w{row['width']} by FLOPs")
    elif source != target:
        basis.append("scaled to this network by FLOPs")
    return row["images_per_s"] * source / target / factor, ", ".join(basis)


def assign_rates(costs: list[RunCost], args: argparse.Namespace) -> list[str]:
    """Fill each run's images/s; returns the notes to print (which basis, which assumption)."""
    table = load_table(args.throughput)
    entry = table.get(args.device)
    notes = []
    if entry is None:
        notes.append(
            f"throughput table {args.throughput} has no device {args.device!r} "
            f"(it has: {', '.join(table) or 'none'}); ASSUMED throughput: "
            f"{args.assume_tflops:g} TFLOP/s effective, at most one step per "
            f"{args.assume_step_ms:g} ms — an assumption, not a measurement"
        )
    else:
        notes.append(
            f"throughput measured on {args.device!r}: {entry.get('device_name')}, torch "
            f"{entry.get('torch')}, {entry.get('date')}, path {args.path!r}"
        )
    for cost in costs:
        cfg = cost.config
        rows = entry.get("rows", []) if entry else []
        found = measured_rate(rows, cfg, args.path, *cost.shape)
        if found is None:
            per_image = 3 * cost.forward / (args.assume_tflops * 1e12)
            floor = args.assume_step_ms / 1e3 / cfg.batch_size
            slowdown = STEP_COST.get(cfg.variant, 1.0)
            cost.images_per_s, cost.basis = 1.0 / max(per_image, floor) / slowdown, "ASSUMED"
            if entry is not None and "ASSUMED" not in notes[-1]:
                notes.append(
                    f"runs without a measured row: ASSUMED {args.assume_tflops:g} TFLOP/s, "
                    f"floor {args.assume_step_ms:g} ms per step"
                )
        else:
            cost.images_per_s, cost.basis = found
    return notes


# --- the command ----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--throughput", type=Path, default=TABLE, help="measured throughput table")
    p.add_argument("--device", default="h100", help="device key in the table (default h100)")
    p.add_argument("--path", default="fp32", help="training path row to use (default fp32)")
    p.add_argument("--assume-tflops", type=float, default=20.0, help="if unmeasured: TFLOP/s")
    p.add_argument("--assume-step-ms", type=float, default=15.0, help="if unmeasured: ms floor")


def job_counts(params: dict[str, Any], n_runs: int) -> dict[str, int]:
    from iterconv.families.registry import family_figures
    from iterconv.pipeline.targets import figure_names
    from iterconv.pipeline.units import preset_units

    units = preset_units(params)
    families = units.jobs
    family_figs = [f for f, (name, _caption) in family_figures().items() if name in families]
    return {
        "prepare_dataset": len(units.datasets),
        "train_run": n_runs,
        "compute_indices": n_runs,
        "run_toy": 1,
        "collect_tables": 1,
        "run_family_job": sum(len(jobs) for jobs in families.values()),
        "collect_family_tables": len(families),
        "check_claims": 1,
        "plot_figure": len(figure_names(units.runs)) + len(family_figs),
    }


def plan(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print the plan of ``params``' preset; returns the totals (for tests and scripts)."""
    costs = run_costs(params)
    notes = assign_rates(costs, args)
    sweeps: dict[str, list[RunCost]] = {}
    for cost in costs:
        sweeps.setdefault(cost.sweep, []).append(cost)

    print(f"preset {params['preset']!r}: {len(costs)} training runs in {len(sweeps)} sweeps")
    for note in notes:
        print(f"  {note}")
    head = f"{'sweep':<18}{'runs':>6}{'epochs':>9}{'train PFLOP':>13}{'eval PFLOP':>12}"
    print(f"\n{head}{'device-h':>11}  basis")
    for name, rows in [*sweeps.items(), ("total", costs)]:
        if name == "total":
            print("-" * (len(head) + 11))
        kinds = {
            "measured": sum(r.basis == "measured" for r in rows),
            "scaled": sum("scaled" in r.basis for r in rows),
            "std-rate": sum("standard's" in r.basis for r in rows),
            "ASSUMED": sum(r.basis == "ASSUMED" for r in rows),
        }
        basis = ", ".join(f"{k} {n}" for k, n in kinds.items() if n)
        print(
            f"{name:<18}{len(rows):>6}{sum(r.epochs for r in rows):>9}"
            f"{sum(r.train_flops for r in rows) / 1e15:>13.1f}"
            f"{sum(r.eval_flops for r in rows) / 1e15:>12.2f}"
            f"{sum(r.hours for r in rows):>11.1f}  {basis}"
        )
    print(
        "basis (runs): measured = a measured row as is; scaled = moved by the ratio of forward "
        "FLOPs\n  to another width or network; std-rate = a variant without a row of its own at "
        "the standard\n  network's rate (implicit: at "
        f"{STEP_COST['implicit']:g}x its step time, also when ASSUMED); ASSUMED = no\n"
        "  measurement, the assumed rate above"
    )
    jobs = job_counts(params, len(costs))
    print(
        "\njobs: "
        + ", ".join(f"{n} {k}" for k, n in jobs.items())
        + f" = {sum(jobs.values())} in all"
    )
    totals = {
        "runs": len(costs),
        "epochs": sum(r.epochs for r in costs),
        "train_flops": sum(r.train_flops for r in costs),
        "eval_flops": sum(r.eval_flops for r in costs),
        "device_hours": sum(r.hours for r in costs),
        "jobs": jobs,
    }
    print(
        f"totals: {totals['runs']} training runs, {totals['epochs']} epochs, "
        f"{totals['train_flops']:.3e} training FLOPs, {totals['device_hours']:.1f} device-hours "
        f"on {args.device!r} (one job at a time; index computations not included)"
    )
    return totals
