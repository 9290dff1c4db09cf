"""Iterative convergence indices CI, RI, DI (paper section "Iterative convergence indices";
docs/analysis.md section 1) and their alternatives against the model's own predictions
(appendix B).

For stage s with B blocks, chance error e_c and unperturbed error e_f:

    CI_s = mean_k (e_c - r_k) / (e_c - e_f)      r_k: read-out after k blocks, k = 1..B
    RI_s = mean_k (e_c - d_k) / (e_c - d_B)      d_k: block k dropped, k = 1..B
    DI_s = mean_j (x_j - e_f) / (e_c - e_f)      x_j: last block applied j more times, j = 1..J

A zero denominator gives NaN and a line in ``notes``. The network index is the plain mean over
stages, NaN when any stage is NaN (a NaN is never silently averaged away).
Any residual network enters through the adapter protocol of :mod:`iterconv.analysis.adapters`
(stem, stages of residual blocks, transitions, head), which also holds the perturbation engine.
The per-run JSON (schema ``iterconv.indices/2``, documented in docs/analysis.md) also holds the
effective parameter count of the same weights, so that aggregating runs never loads a model.
This module imports torch only when computing: :func:`read_indices` works without it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterconv.io import read_json, write_text

if TYPE_CHECKING:
    import torch
    from torch import nn

    from iterconv.analysis.adapters import NetworkAdapter

SCHEMA = "iterconv.indices/2"
INDEX_NAMES = ("CI", "RI", "DI")
CURVE_KINDS = ("readout", "dropout", "extra")
CURVE_MEASURES = ("error", "error_alt", "loss", "distance")
_PREFIX = {"readout": "CI", "dropout": "RI", "extra": "DI"}


def chance_error(
    num_classes: int, multilabel: bool = False, n_per_image: torch.Tensor | None = None
) -> float:
    """Error of guessing uniformly: 1 - 1/classes, or 1 - mean_i 1 / C(classes, n_i) for
    multi-label images with n_i targets each (``n_per_image``: (N,) integers)."""
    import torch

    if not multilabel:
        return 1.0 - 1.0 / num_classes
    if n_per_image is None or n_per_image.numel() == 0:
        raise ValueError("multi-label chance error needs the target count of every image")
    counts = torch.bincount(n_per_image.long().flatten(), minlength=num_classes + 1)
    p = sum(int(c) / math.comb(num_classes, n) for n, c in enumerate(counts.tolist()) if c)
    return 1.0 - p / n_per_image.numel()


def _ratio_mean(num: list[float], den: float, what: str, notes: list[str]) -> float:
    if abs(den) < 1e-12:
        notes.append(f"{what}: zero denominator ({den:.3g}); index set to NaN")
        return math.nan
    return sum(v / den for v in num) / len(num) if num else math.nan


def convergence_index(
    readout: list[float],
    e_chance: float,
    e_final: float,
    notes: list[str] | None = None,
    what: str = "CI",
) -> float:
    """CI = mean_k (e_chance - r_k) / (e_chance - e_final); ``readout`` = r_1..r_B."""
    return _ratio_mean(
        [e_chance - r for r in readout],
        e_chance - e_final,
        what,
        notes if notes is not None else [],
    )


def recurrence_index(
    dropout: list[float], e_chance: float, notes: list[str] | None = None, what: str = "RI"
) -> float:
    """RI = mean_k (e_chance - d_k) / (e_chance - d_B); ``dropout`` = d_1..d_B."""
    return _ratio_mean(
        [e_chance - d for d in dropout],
        e_chance - dropout[-1],
        what,
        notes if notes is not None else [],
    )


def divergence_index(
    extra: list[float],
    e_chance: float,
    e_final: float,
    notes: list[str] | None = None,
    what: str = "DI",
) -> float:
    """DI = mean_j (x_j - e_final) / (e_chance - e_final); ``extra`` = x_1..x_J."""
    return _ratio_mean(
        [x - e_final for x in extra], e_chance - e_final, what, notes if notes is not None else []
    )


def _nan_mean(values: list[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else sum(values) / len(values)


class _Sums:
    """Running sums over images of error, own-prediction error, loss and distance per curve."""

    def __init__(self, sizes: dict[str, int]):
        import torch

        self.v = {
            (kind, m): torch.zeros(n, dtype=torch.float64)
            for kind, n in sizes.items()
            for m in ("error", "error_alt", "loss", "distance")
        }

    def add(
        self,
        kind: str,
        logits: torch.Tensor,
        dist: torch.Tensor,
        y: torch.Tensor,
        own: torch.Tensor,
        multilabel: bool,
    ) -> None:
        """``logits`` (P, b, K), ``dist`` (P, b); ``y``, ``own`` targets of the b images."""
        import torch

        from iterconv.train.metrics import loss_fn, mistakes

        n_p, b = logits.shape[:2]
        if n_p == 0:
            return
        flat = logits.reshape(n_p * b, -1)
        rep = (n_p,) + (1,) * (y.dim() - 1)
        err = mistakes(flat, y.repeat(rep), multilabel).view(n_p, b).sum(1)
        alt = mistakes(flat, own.repeat(rep), multilabel).view(n_p, b).sum(1)
        loss = torch.stack([loss_fn(logit, y, multilabel) for logit in logits]) * b
        for m, t in (("error", err), ("error_alt", alt), ("loss", loss), ("distance", dist.sum(1))):
            self.v[kind, m][:n_p] += t.double().cpu()


def _inference_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.inference_mode()`` as a decorator that imports torch only when called."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper


@_inference_mode
def compute_indices(
    model: nn.Module | NetworkAdapter,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    multilabel: bool = False,
    extra: int = 16,
    batch_size: int = 1000,
    max_batch: int = 4096,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Curves and indices of every stage of ``model`` on a validation set, and the effective
    parameter count of its weights.

    Args:
        model: the network, or an adapter describing it as stages of residual blocks
            (:mod:`iterconv.analysis.adapters`; a module gets :func:`adapter_for`'s); put in
            eval mode here (BN running statistics, fixed spectral bound).
        images: (N, C, H, W) images, already normalised floats unless ``prepare`` is given.
        labels: (N,) int64 class ids, or (N, classes) multi-hot for ``multilabel``.
        multilabel: Digitclutter-style targets (correct iff the top-n scores are the n digits).
        extra: J, the number of extra evaluations of each stage's last block.
        batch_size: images per batch (memory ~ (B + 1) x batch x C x H x W per stage).
        max_batch: rows (images x perturbations) per call of the later stages.
        prepare: applied to every batch on the device (e.g. uint8 -> normalised float).
        device: where to compute; default the model's device.

    Returns:
        The ``iterconv.indices/2`` dict (NaN as float NaN; ``run`` set to None).
    """
    import torch
    from torch import nn

    from iterconv.analysis import adapters
    from iterconv.analysis.adapters import KINDS, BlockCounter
    from iterconv.train.metrics import loss_fn, mistakes, predictions

    start = time.perf_counter()
    adapter = adapters.adapter_for(model) if isinstance(model, nn.Module) else model
    adapter.module.eval()
    if device is None:  # the parameters' device; the images' for a parameter-free network
        param = next(iter(adapter.module.parameters()), None)
        device = param.device if param is not None else images.device
    device = torch.device(device)
    n_images, num_classes = images.shape[0], adapter.num_classes
    if n_images == 0:
        raise ValueError("the validation set is empty")
    n_per_image = labels.sum(1) if multilabel else None
    e_chance = chance_error(num_classes, multilabel, n_per_image)
    n_blocks = [len(blocks) for blocks in adapter.stages]
    sums = [_Sums({"readout": b - 1, "dropout": b, "extra": extra}) for b in n_blocks]
    final = {"error": 0.0, "loss": 0.0}
    counter = BlockCounter()

    for lo in range(0, n_images, batch_size):
        xb = images[lo : lo + batch_size].to(device, non_blocking=True)
        xb = prepare(xb) if prepare is not None else xb
        yb = labels[lo : lo + batch_size].to(device)
        logits, stages = adapters.perturb_batch(adapter, xb, extra, max_batch, counter)
        own = predictions(logits, multilabel, yb.sum(1) if multilabel else None)
        final["error"] += float(mistakes(logits, yb, multilabel).sum())
        final["loss"] += float(loss_fn(logits, yb, multilabel)) * xb.shape[0]
        for res, acc in zip(stages, sums, strict=True):
            for kind in KINDS:
                acc.add(kind, res.logits[kind], res.distance[kind], yb, own, multilabel)

    e_final, loss_final = final["error"] / n_images, final["loss"] / n_images
    notes: list[str] = []
    out_stages = []
    for s, (acc, b) in enumerate(zip(sums, n_blocks, strict=True)):
        curve = {
            f"{kind}_{m}": (acc.v[kind, m] / n_images).tolist()
            for kind in KINDS
            for m in ("error", "error_alt", "loss", "distance")
        }
        # read-out B is the unperturbed network: append its values.
        for m, v in (
            ("error", e_final),
            ("error_alt", 0.0),
            ("loss", loss_final),
            ("distance", 0.0),
        ):
            curve[f"readout_{m}"].append(v)
        entry: dict[str, Any] = {"stage": s + 1, "blocks": b}
        for m in ("error", "error_alt", "loss", "distance"):
            entry.update({f"{kind}_{m}": curve[f"{kind}_{m}"] for kind in KINDS})
        for alt, ef in (("", e_final), ("_alt", 0.0)):
            tag = f"stage {s + 1}"
            entry[f"CI{alt}"] = convergence_index(
                curve[f"readout_error{alt}"], e_chance, ef, notes, f"CI{alt} {tag}"
            )
            entry[f"RI{alt}"] = recurrence_index(
                curve[f"dropout_error{alt}"], e_chance, notes, f"RI{alt} {tag}"
            )
            entry[f"DI{alt}"] = divergence_index(
                curve[f"extra_error{alt}"], e_chance, ef, notes, f"DI{alt} {tag}"
            )
        out_stages.append(entry)

    network = {}
    for name in (*INDEX_NAMES, *(f"{n}_alt" for n in INDEX_NAMES)):
        network[name] = _nan_mean([st[name] for st in out_stages])
        if math.isnan(network[name]):
            notes.append(f"network {name}: NaN because a stage index is NaN")
    naive = naive_block_evaluations(n_blocks, extra)
    epc = adapter.epc()
    if math.isnan(epc["epc"]):
        notes.append("epc: NaN because the blocks of a stage differ in their parameters")
    return {
        "schema": SCHEMA,
        "run": None,
        "chance_error": e_chance,
        "final_error": e_final,
        "final_loss": loss_final,
        "n_images": n_images,
        "extra_evaluations": extra,
        "network": network,
        "stages": out_stages,
        "block_evaluations": {
            "unit": "residual-block applications per image",
            "perturbed_stage": counter.perturbed_stage / n_images,
            "later_stages": counter.later_stages / n_images,
            "total": counter.total / n_images,
            "downsampling": counter.downsampling / n_images,
            "naive_total": naive,
        },
        "epc": epc,
        "notes": notes,
        "seconds": time.perf_counter() - start,
    }


def naive_block_evaluations(n_blocks: list[int], extra: int) -> int:
    """Residual-block applications per image when every perturbation (and the unperturbed pass)
    runs the whole network from the images."""
    total = sum(n_blocks)  # the unperturbed pass
    for b in n_blocks:
        others = sum(n_blocks) - b
        lengths = [*range(1, b + 1), *([b - 1] * b), *range(b + 1, b + extra + 1)]
        total += sum(lengths) + len(lengths) * others
    return total


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def _none_to_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: (v if k == "run" else _none_to_nan(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_none_to_nan(v) for v in obj]
    return obj


def write_indices(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write ``result`` as strict JSON (NaN -> null), atomically."""
    write_text(path, json.dumps(_nan_to_none(result), indent=2, allow_nan=False) + "\n")


class IndicesError(ValueError):
    """A per-run indices file that is missing, unreadable or incomplete."""


# Keys every per-run file holds; checked by read_indices.
REQUIRED_KEYS = ("schema", "run", "chance_error", "final_error", "network", "stages", "epc")
_STAGE_KEYS = ("stage", *(f"{k}_{m}" for k in CURVE_KINDS for m in CURVE_MEASURES))
_EPC_KEYS = ("raw", "recurrent", "epc", "stages")
_EPC_STAGE_KEYS = ("stage", "mean_abs_deviation")


def read_indices(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check one run's indices JSON; null numbers come back as NaN (``run`` stays as
    written). Raises :class:`IndicesError` (one line naming the file) when the file is missing,
    truncated, corrupt, of another schema or lacks a required key."""
    path = Path(path)
    redo = "delete it and rerun its analysis job (iterconv indices)"
    data = read_json(path, IndicesError, "run its analysis job (iterconv indices)", redo)
    problem = _incomplete(data)
    if problem:
        raise IndicesError(f"{path} is not a complete indices file ({problem}): {redo}")
    return _none_to_nan(data)


def _lacks(obj: Any, keys: tuple[str, ...], what: str) -> str | None:
    if not isinstance(obj, dict):
        return f"{what} is not an object"
    missing = [k for k in keys if k not in obj]
    return f"{what} has no key {missing[0]!r}" if missing else None


def _incomplete(data: Any) -> str | None:
    """What makes ``data`` not a complete indices document, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("schema") != SCHEMA:
        return f"schema {data.get('schema')!r}, expected {SCHEMA!r}"
    if problem := _lacks(data, REQUIRED_KEYS, "the document"):
        return problem
    names = (*INDEX_NAMES, *(f"{n}_alt" for n in INDEX_NAMES))
    if problem := _lacks(data["network"], names, "'network'"):
        return problem
    stages = data["stages"]
    if not isinstance(stages, list) or not stages:
        return "'stages' is not a non-empty list"
    for i, stage in enumerate(stages, start=1):
        if problem := _lacks(stage, _STAGE_KEYS, f"stage {i}"):
            return problem
    if problem := _lacks(data["epc"], _EPC_KEYS, "'epc'"):
        return problem
    if not isinstance(data["epc"]["stages"], list) or len(data["epc"]["stages"]) != len(stages):
        return "'epc.stages' does not match 'stages'"
    for i, stage in enumerate(data["epc"]["stages"], start=1):
        if problem := _lacks(stage, _EPC_STAGE_KEYS, f"'epc' stage {i}"):
            return problem
    return None
