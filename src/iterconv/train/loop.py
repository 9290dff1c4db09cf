"""Training of one run: SGD with momentum, step schedule, soft gradient coupling, resumable.

Outputs in the run directory (each written atomically):
    last.pt       every epoch: model, optimizer, epoch, history and the best-validation
                  weights so far (the resume point; not a pipeline output, so a rerun
                  scheduled by Snakemake, which deletes a job's outputs first, keeps it)
    best.pt       the best-validation model (used by every analysis), written at the end
    history.csv   one row per epoch: lr, train/val loss and error, seconds
    metrics.json  written last, when training is complete; lists the sha256 of best.pt and
                  history.csv (the run's manifest)

Determinism: the initial weights come from ``seed``; the shuffling and augmentation of epoch e
from a generator seeded with (seed, e). A resumed run therefore replays exactly the epochs an
uninterrupted run would have done (bitwise on CPU), with no RNG state in the checkpoint.

Integrity: checkpoints are written, read and verified by :mod:`iterconv.train.checkpoint`. A
last.pt that does not load or does not match its checksum is ignored (training restarts from
scratch).

Failures: a non-finite training loss (looked for on the device, read every
:data:`NONFINITE_CHECK_EVERY` steps and at the end of the epoch) or validation loss raises
:class:`Diverged` (a ``UserError``) before anything of that epoch is written; a checkpoint that
cannot be written raises a ``UserError`` and leaves the previous file intact. Either way the run
directory keeps what it held.

Speed options (:class:`SpeedOptions`: bf16 autocast, channels-last, ``torch.compile``) change how
a run is computed, not what it is: like ``eval_batch_size`` they are not part of the run's
configuration or id, and checkpoints hold the eager module's weights in the default memory
format whatever the options. Defaults: fp32, contiguous, eager.

Interruption: inside :func:`stop_on_sigterm`, SIGTERM (a SLURM preemption or ``scancel``) only
sets a flag; the loop checks it after each batch, abandons the partial epoch (the last completed
one is on disk) and raises :class:`Interrupted`, which ``iterconv train`` turns into exit status
:data:`EXIT_INTERRUPTED`. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from iterconv.data.augment import augment_batch
from iterconv.data.prepared import PreparedDataset, normalize
from iterconv.errors import UserError
from iterconv.io import sha256, write_json, write_text
from iterconv.models import build_network
from iterconv.models.resnet import ResNet, count_parameters
from iterconv.models.spectral import record_bounds
from iterconv.models.van import (
    add_multiplier_gradients,
    alpha_residual,
    gate_group,
    gate_parameters,
    skip_gates,
    update_multipliers,
)
from iterconv.train.checkpoint import CorruptCheckpoint, read_checkpoint, save_checkpoint
from iterconv.train.config import RunConfig, learning_rate
from iterconv.train.coupling import GradientCoupler
from iterconv.train.metrics import loss_fn, mistakes
from iterconv.train.progress import EpochProgress, epoch_line

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_error",
    "val_loss",
    "val_error",
    "alpha_residual",  # van: (1/L) sum_l mean (1 - alpha_l)^2 (0: no skips left); else nan
    "seconds",
)

# Exit status of ``iterconv train`` after SIGTERM: EX_TEMPFAIL of sysexits.h ("temporary
# failure, retry"), distinct from 1 (crash), 2 (bad input), 130 (Ctrl-C) and 137/143 (killed
# by a signal it did not handle). Snakemake sees a failed job and retries it (``retries``).
EXIT_INTERRUPTED = 75

PRECISIONS = ("fp32", "bf16")

# A non-finite training loss is looked for every this many steps (one device synchronisation
# each) and at the end of every epoch; the step it reports is exact either way.
NONFINITE_CHECK_EVERY = 50


@dataclass(frozen=True)
class SpeedOptions:
    """How a run is computed. The defaults stay until a GPU measurement shows a gain
    (docs/performance.md); nothing here changes the run's configuration or id."""

    # fp32 | bf16 (torch.autocast over forward and loss; weights, gradients, optimizer: fp32)
    precision: str = "fp32"
    channels_last: bool = False  # model and training batches in channels_last (NHWC) layout
    compile: bool = False  # torch.compile the model for training steps (evaluation: eager)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> torch.autocast:
        """Autocast to bf16 on ``device``, or a disabled (no-op) autocast for fp32."""
        return torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16")


class Interrupted(Exception):
    """Training stopped on request (SIGTERM); ``last.pt`` holds every completed epoch."""

    def __init__(self, epochs_done: int, epochs: int):
        super().__init__(
            f"stopped by SIGTERM during epoch {epochs_done + 1} of {epochs}; last.pt holds "
            f"{epochs_done} completed epochs, rerun the same command to resume"
        )
        self.epochs_done = epochs_done


class Diverged(UserError):
    """A training or validation loss that is not finite: the run stops before saving anything
    of that epoch, so the run directory keeps what it held (``iterconv train`` exits 2)."""

    def __init__(self, what: str, epoch: int, cfg: RunConfig, lr: float, step: str = ""):
        super().__init__(
            f"training diverged at epoch {epoch + 1} of {cfg.epochs}{step} (lr {lr:g}): {what}; "
            "nothing of this epoch was saved: lower lr or check the configuration"
        )
        self.epoch = epoch


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Within the block SIGTERM sets a flag instead of killing; yields a "was it sent?" check.

    Only callable from the main thread (a Python restriction on signal handlers).
    """
    flag = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_model(cfg: RunConfig, data: PreparedDataset) -> nn.Module:
    """The run's network for ``data``'s images (the project's ResNet or a torchvision
    architecture), initialised from ``cfg.seed``."""
    c, h = data.train_x.shape[1], data.train_x.shape[2]
    torch.manual_seed(cfg.seed)
    return build_network(cfg.model_config(c, data.num_classes, h))


def build_coupler(model: nn.Module, cfg: RunConfig) -> GradientCoupler:
    """Soft gradient coupling of the stages of the project's ResNet; a torchvision architecture
    has none (its configuration allows coupling 0 only)."""
    stages = model.stages if isinstance(model, ResNet) else []
    return GradientCoupler(stages, cfg.coupling, cfg.kernel, cfg.couple_from)


def build_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    """SGD with momentum on the weights; VAN's alphas take plain gradient steps (the VAN paper,
    eq. 7: no momentum) and no weight decay (decay would pull them towards 0, against the
    constraint alpha = 1)."""
    gates = {id(p) for p in gate_parameters(model)}
    weights = [p for p in model.parameters() if id(p) not in gates]
    groups = [{"params": weights, "weight_decay": cfg.weight_decay}]
    if gates:
        groups.append(gate_group(model))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def usable_speed(variant: str, speed: SpeedOptions, log) -> SpeedOptions:
    """``speed`` less the options ``variant`` cannot use, each dropped one logged.

    The implicit variant trains in fp32 and eagerly: its solver's tolerance (1e-4) lies below
    bf16's resolution (in bf16 nearly every fixed-point and adjoint solve ran to its iteration
    limit, doubling the step), and ``torch.compile`` breaks the graph at every solver
    iteration and rejects the adjoint solve's ``retain_graph`` inside a compiled backward.
    """
    if variant != "implicit":
        return speed
    if speed.precision != "fp32":
        log("note: --precision bf16 does not suit the implicit variant's solver; training in fp32")
    if speed.compile:
        log("note: --compile cannot handle the implicit variant's solver; training eagerly")
    return dataclasses.replace(speed, precision="fp32", compile=False)


def training_forward(model: nn.Module, speed: SpeedOptions) -> Callable:
    """What computes the training logits: ``model`` itself or, with ``speed.compile``, a
    ``torch.compile`` wrapper sharing its parameters and buffers (compiled on its first batch).
    Evaluation, analyses and checkpoints always use the eager ``model``."""
    return torch.compile(model) if speed.compile else model


def plain_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model.state_dict()`` in the default (contiguous) memory format, so
    checkpoints do not depend on the device or the speed options."""
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in model.state_dict().items()
    }


def solver_report(model: nn.Module) -> str:
    """Implicit blocks: the epoch's fixed-point and adjoint solves (mean iterations, failures),
    then the counters restart; "" for other variants."""
    stats = [st for m in model.modules() if (st := getattr(m, "solve_stats", None)) is not None]
    calls = sum(st.forward_calls for st in stats)
    if not calls:
        return ""
    fwd = sum(st.forward_iterations for st in stats) / calls
    bwd = sum(st.backward_iterations for st in stats) / max(
        sum(st.backward_calls for st in stats), 1
    )
    failed = sum(st.forward_failures + st.backward_failures for st in stats)
    for st in stats:
        st.reset()
    return f" solves: {fwd:.1f} fwd / {bwd:.1f} bwd iterations, {failed} not converged"


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: PreparedDataset, batch_size: int = 1000
) -> tuple[float, float]:
    """(mean loss, error rate) on the validation split, eval mode."""
    model.eval()
    total_loss, wrong, n = 0.0, 0, len(data.val_x)
    for i in range(0, n, batch_size):
        x = normalize(data.val_x[i : i + batch_size], data.mean, data.std)
        y = data.val_y[i : i + batch_size]
        logits = model(x)
        total_loss += float(loss_fn(logits, y, data.multilabel)) * len(y)
        wrong += int(mistakes(logits, y, data.multilabel).sum())
    return total_loss / n, wrong / n


def train_epoch(
    model: nn.Module,
    data: PreparedDataset,
    cfg: RunConfig,
    optimizer: torch.optim.Optimizer,
    coupler: GradientCoupler,
    epoch: int,
    stop: Callable[[], bool] | None = None,
    speed: SpeedOptions = SpeedOptions(),
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """One pass over the training split; returns (mean loss, error) on the augmented batches.

    ``speed`` sets the batches' memory format and the autocast precision; ``forward`` computes
    the logits (default ``model``; see :func:`training_forward`). Raises :class:`Interrupted`
    after the batch during which ``stop()`` became true.
    """
    forward = model if forward is None else forward
    model.train()
    gen = epoch_generator(cfg.seed, epoch)
    n = len(data.train_x)
    batches = max(n // cfg.batch_size, 1)  # drop the last partial batch (BN needs > 1 sample)
    order = torch.randperm(n, generator=gen).to(data.train_x.device)
    total_loss = torch.zeros((), device=data.train_x.device)
    wrong = torch.zeros((), device=data.train_x.device, dtype=torch.long)
    # steps before the first non-finite loss: total_loss stays non-finite from there on, so
    # this counts on the device without a synchronisation per step
    finite_steps = torch.zeros((), device=data.train_x.device, dtype=torch.long)
    van = bool(skip_gates(model))  # looked up once: the per-step calls scan every module
    for b in range(batches):
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        x = normalize(augment_batch(data.train_x[idx], data.augment, gen), data.mean, data.std)
        x = x.contiguous(memory_format=speed.memory_format)  # a no-op unless channels-last
        y = data.train_y[idx]
        with speed.autocast(x.device):  # bf16: matmuls and convolutions in bf16, loss in fp32
            logits = forward(x).float()
            loss = loss_fn(logits, y, data.multilabel)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        coupler()  # soft gradient coupling between backward and step
        if van:
            add_multiplier_gradients(model)  # d(Lagrangian)/d alpha (the VAN paper, eq. 7)
        optimizer.step()
        if van:  # clip alpha to [0, 1], multiplier ascent (eq. 8) at a fraction of the SGD step
            update_multipliers(model, cfg.multiplier_step * optimizer.param_groups[0]["lr"])
        total_loss += loss.detach() * len(y)  # accumulate on device: no sync per step
        wrong += mistakes(logits.detach(), y, data.multilabel).sum()
        finite_steps += torch.isfinite(total_loss)
        if (b + 1) % NONFINITE_CHECK_EVERY == 0:
            _check_finite(finite_steps, b + 1, batches, epoch, cfg, optimizer)
        if stop is not None and stop():  # abandon the epoch: model and optimizer are discarded
            raise Interrupted(epoch, cfg.epochs)
    _check_finite(finite_steps, batches, batches, epoch, cfg, optimizer)
    seen = batches * min(cfg.batch_size, n)
    return float(total_loss) / seen, int(wrong) / seen


def _check_finite(
    finite_steps: torch.Tensor,
    done: int,
    batches: int,
    epoch: int,
    cfg: RunConfig,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Raise :class:`Diverged` if one of the first ``done`` steps had a non-finite loss."""
    first_bad = int(finite_steps)  # one synchronisation
    if first_bad < done:
        lr = optimizer.param_groups[0]["lr"]
        step = f", step {first_bad + 1} of {batches}"
        raise Diverged("the training loss is not finite (nan or inf)", epoch, cfg, lr, step)


@dataclass
class State:
    """Everything a resumed run needs besides the model and optimizer."""

    epoch: int = 0  # epochs completed
    history: list[dict] | None = None
    best_error: float = math.inf
    best_epoch: int = -1
    best_model: dict | None = None  # state_dict of the best-validation epoch (on CPU)


def try_resume(out: Path, model, optimizer, cfg: RunConfig, log) -> State:
    """Load ``last.pt`` if it belongs to this configuration; otherwise start from scratch."""
    path = out / "last.pt"
    if not path.exists():
        return State(history=[])
    try:
        ckpt = read_checkpoint(path)
    except CorruptCheckpoint as err:  # truncated or corrupt: restart; outputs stay correct
        log(f"warning: ignoring checkpoint: {err}; starting from scratch")
        return State(history=[])
    if ckpt.get("config") != cfg.to_dict():
        log(f"{path} was written for another configuration; starting from scratch")
        return State(history=[])
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    state = State(**ckpt["state"])
    log(f"resuming after epoch {state.epoch} of {cfg.epochs}")
    return state


def write_history(path: Path, history: list[dict]) -> None:
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(repr(row[c]) for c in HISTORY_COLUMNS) for row in history]
    write_text(path, "\n".join(lines) + "\n")


def train_run(
    cfg: RunConfig,
    data: PreparedDataset,
    out: str | Path,
    device: torch.device,
    log=None,
    stop: Callable[[], bool] | None = None,
    speed: SpeedOptions = SpeedOptions(),
) -> dict:
    """Train (or resume) one run into ``out``; returns the final metrics.

    ``stop`` (e.g. from :func:`stop_on_sigterm`) is polled after every batch and after every
    checkpoint; when true, training raises :class:`Interrupted` without writing anything more.
    ``speed``: see :class:`SpeedOptions` (a run may be resumed with other options).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    speed = usable_speed(cfg.variant, speed, log)
    model = build_model(cfg, data)
    optimizer = build_optimizer(model, cfg)
    state = try_resume(out, model, optimizer, cfg, log)
    model.to(device, memory_format=speed.memory_format)  # parameters keep their identity
    _optimizer_to(optimizer, device)
    data = data.to(device)
    coupler = build_coupler(model, cfg)
    forward = training_forward(model, speed)
    start = time.perf_counter()
    if state.epoch < cfg.epochs:
        log(f"training epochs {state.epoch + 1}..{cfg.epochs} on {device}")
        if speed != SpeedOptions():
            log(f"speed options: {speed}")
    for epoch in range(state.epoch, cfg.epochs):
        tic = time.perf_counter()
        lr = learning_rate(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss, train_error = train_epoch(
            model, data, cfg, optimizer, coupler, epoch, stop, speed, forward
        )
        val_loss, val_error = evaluate(model, data, cfg.eval_batch_size)
        if not math.isfinite(val_loss):
            raise Diverged(f"the validation loss is not finite ({val_loss})", epoch, cfg, lr)
        row = dict(
            epoch=epoch + 1,
            lr=lr,
            train_loss=train_loss,
            train_error=train_error,
            val_loss=val_loss,
            val_error=val_error,
            alpha_residual=alpha_residual(model),  # NaN without gates
            seconds=time.perf_counter() - tic,
        )
        state.history.append(row)
        state.epoch = epoch + 1
        if val_error < state.best_error:
            state.best_error, state.best_epoch = val_error, epoch + 1
            state.best_model = plain_weights(model)
        save_checkpoint(
            out / "last.pt", plain_weights(model), optimizer, cfg, vars(state), model.cfg
        )
        progress = EpochProgress(
            epoch=epoch + 1,
            epochs=cfg.epochs,
            lr=lr,
            train_loss=train_loss,
            train_error=train_error,
            val_loss=val_loss,
            val_error=val_error,
            seconds=row["seconds"],
        )
        log(epoch_line(progress) + solver_report(model))
        if stop is not None and stop() and state.epoch < cfg.epochs:
            raise Interrupted(state.epoch, cfg.epochs)
    best = State(**{**state.__dict__, "best_model": None, "history": None})
    lipschitz_bounds = record_bounds(model, state.best_model)  # converged, certified
    save_checkpoint(out / "best.pt", state.best_model, None, cfg, vars(best), model.cfg)
    write_history(out / "history.csv", state.history)
    final = state.history[-1]
    metrics = {
        "best_epoch": state.best_epoch,
        "best_val_error": state.best_error,
        "final_val_error": final["val_error"],
        "final_train_error": final["train_error"],
        "epochs": cfg.epochs,
        "parameters": count_parameters(model),
        "lipschitz_bounds": lipschitz_bounds,  # per normalised block (models/spectral.py)
        "train_seconds": sum(r["seconds"] for r in state.history),
        "session_seconds": time.perf_counter() - start,
        "device": str(device),
        "speed": dataclasses.asdict(speed),
        "torch": torch.__version__,
        "config": cfg.to_dict(),
        # the run's manifest: checkpoint.load_run_model checks best.pt against it
        "sha256": {name: sha256(out / name) for name in ("best.pt", "history.csv")},
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for st in optimizer.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                st[k] = v.to(device)
