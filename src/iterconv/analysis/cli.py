"""``iterconv indices`` (with the effective parameter count) and ``iterconv toy``: the analyses
of trained runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from iterconv.errors import UserError

if TYPE_CHECKING:  # torch only where a command needs it
    from iterconv.data.prepared import PreparedDataset
    from iterconv.models.resnet import ModelConfig
    from iterconv.models.torchvision_nets import TorchvisionConfig


INDICES = """\
Compute the three indices of iterative convergence of a trained run on its validation images
(docs/analysis.md): for each stage, the convergence index (read out after each block), the
recurrence index (drop one block) and the divergence index (apply the stage's last block again,
--extra times), and the effective parameter count of its weights. Writes one JSON file and logs
each stage's indices and the time taken."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "indices",
        help="convergence, recurrence and divergence indices and EPC of a run",
        description=INDICES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", type=Path, required=True, help="run directory containing best.pt")
    p.add_argument(
        "--data", type=Path, required=True, help="the prepared dataset the run was trained on"
    )
    p.add_argument("--out", type=Path, required=True, help="output JSON file")
    p.add_argument("--extra", type=int, default=16, help="extra evaluations J (default 16)")
    p.add_argument("--batch-size", type=int, default=1000, help="images per batch")
    p.add_argument(
        "--max-batch",
        type=int,
        default=4096,
        help="rows (images x perturbations) per call of the later stages",
    )
    p.add_argument("--max-images", type=int, default=0, help="first N validation images (0: all)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.set_defaults(handler=run_indices)

    p = sub.add_parser(
        "toy",
        help="the toy inverse problem of fig 1 (CSV tables)",
        description="Invert a two-dimensional linear map with an iterative algorithm and "
        "with small feedforward, residual and recurrent residual networks (the toy example of "
        "the paper's fig 1), read each out at every step, unperturbed, with a step dropped and "
        "with extra steps, and write the trajectories and errors as CSV tables.",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the networks' training (default 0)")
    p.set_defaults(handler=run_toy)


def _checkpoint(run: Path) -> Path:
    ckpt = run / "best.pt"
    if not ckpt.is_file():
        raise UserError(f"no checkpoint {ckpt}: train the run first")
    return ckpt


def _positive(name: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def run_indices(args: argparse.Namespace) -> int:
    from iterconv.analysis.adapters import adapter_for
    from iterconv.analysis.indices import compute_indices, write_indices
    from iterconv.data.prepared import load_prepared, normalize
    from iterconv.train.checkpoint import load_run_model
    from iterconv.train.device import resolve_device

    for name in ("extra", "batch_size", "max_batch"):
        _positive(name.replace("_", "-"), getattr(args, name))
    _positive("max-images", args.max_images, allow_zero=True)
    device = resolve_device(args.device)
    model, config = load_run_model(_checkpoint(args.run), device)
    data = load_prepared(args.data)
    check_run_dataset(args.run, config, model.cfg, args.data, data)
    n = args.max_images or data.val_x.shape[0]
    adapter = adapter_for(model, config.get("couple_from", 0))
    blocks = "+".join(str(len(stage)) for stage in adapter.stages)
    print(
        f"indices of {args.run.name}: {n:,} validation images, blocks per stage {blocks}, "
        f"{args.extra} extra evaluations, on {device}",
        file=sys.stderr,
        flush=True,
    )
    result = compute_indices(
        adapter,
        data.val_x[:n],
        data.val_y[:n],
        multilabel=data.multilabel,
        extra=args.extra,
        batch_size=args.batch_size,
        max_batch=args.max_batch,
        device=device,
        prepare=lambda x: normalize(x, data.mean, data.std),
    )
    result["run"] = args.run.name
    try:
        write_indices(args.out, result)
    except OSError as err:
        raise UserError(f"cannot write {args.out}: {err.strerror}") from err
    print(indices_summary(result, args.out), file=sys.stderr)
    return 0


def indices_summary(result: dict, out: Path) -> str:
    """Lines for the log of ``iterconv indices``: each stage's indices, the network's, the time."""
    from iterconv.analysis.indices import INDEX_NAMES

    def indices(values: dict) -> str:
        return "  ".join(f"{name} {values[name]:.3f}" for name in INDEX_NAMES)

    stages = result["stages"]
    lines = [
        f"stage {st['stage']}/{len(stages)} ({st['blocks']} blocks)  {indices(st)}" for st in stages
    ]
    per_image = result["block_evaluations"]["total"]
    lines.append(f"network  {indices(result['network'])}")
    lines.append(
        f"{per_image:,.0f} block evaluations per image, {len(result['notes'])} notes, "
        f"{result['seconds']:.1f} s -> {out}"
    )
    return "\n".join(lines)


def check_run_dataset(
    run: Path,
    config: dict,
    model_cfg: ModelConfig | TorchvisionConfig,
    path: Path,
    data: PreparedDataset,
) -> None:
    """Refuse a prepared dataset other than the one ``run`` was trained on: its name (the run's
    configuration names it; the manifest holds the prepared dataset's), then what the network
    was built for (channels, image size, classes)."""
    trained_on = config.get("dataset") if isinstance(config, dict) else None
    name = (getattr(data, "manifest", None) or {}).get("name")
    if trained_on is not None and name is not None and trained_on != name:
        raise UserError(
            f"run {run} was trained on dataset {trained_on!r}, but --data {path} holds "
            f"{name!r}: pass the run's prepared dataset"
        )
    _, channels, *size = data.val_x.shape
    want = (model_cfg.in_channels, [model_cfg.image_size] * 2, model_cfg.num_classes)
    have = (channels, list(size), data.num_classes)
    if want != have:

        def shape(c: int, hw: list[int], k: int) -> str:
            return f"{c} channel(s) of {'x'.join(map(str, hw))} pixels, {k} classes"

        raise UserError(
            f"run {run} was trained on {shape(*want)}, but --data {path} holds "
            f"{shape(*have)}: pass the run's prepared dataset"
        )


def run_toy(args: argparse.Namespace) -> int:
    from iterconv.analysis.toy import run_toy_example, write_toy

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output directory {args.out}: {err.strerror}") from err
    write_toy(args.out, run_toy_example(seed=args.seed))
    return 0
