"""The epoch line of a training log, written by :func:`iterconv.train.loop.train_run` and read
back by anything that follows a run (``iterconv status``). Imports neither torch nor the rest of
the project, so a reader stays cheap.

    epoch 3/5  lr 0.1  train loss 0.7060 err 98.8%  val loss 0.6912 err 97.0%  12.3 s

Errors are percentages of the split; the time is the epoch's wall-clock seconds. Implicit
networks append their solver report after the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EPOCH_LINE = re.compile(
    r"^epoch (?P<epoch>\d+)/(?P<epochs>\d+)  lr (?P<lr>\S+)  "
    r"train loss (?P<train_loss>\S+) err (?P<train_error>\S+)%  "
    r"val loss (?P<val_loss>\S+) err (?P<val_error>\S+)%  (?P<seconds>[0-9.]+) s"
)


@dataclass(frozen=True)
class EpochProgress:
    """One epoch as its log line states it (errors as fractions)."""

    epoch: int
    epochs: int
    lr: float
    train_loss: float
    train_error: float
    val_loss: float
    val_error: float
    seconds: float


def epoch_line(progress: EpochProgress) -> str:
    """The log line of one epoch (see the module's docstring)."""
    p = progress
    return (
        f"epoch {p.epoch}/{p.epochs}  lr {p.lr:.4g}  "
        f"train loss {p.train_loss:.4f} err {p.train_error:.1%}  "
        f"val loss {p.val_loss:.4f} err {p.val_error:.1%}  {p.seconds:.1f} s"
    )


def parse_epoch_line(line: str) -> EpochProgress | None:
    """The epoch a log line reports, or None for any other line."""
    match = EPOCH_LINE.match(line)
    if match is None:
        return None
    try:
        return EpochProgress(
            epoch=int(match["epoch"]),
            epochs=int(match["epochs"]),
            lr=float(match["lr"]),
            train_loss=float(match["train_loss"]),
            train_error=float(match["train_error"]) / 100,
            val_loss=float(match["val_loss"]),
            val_error=float(match["val_error"]) / 100,
            seconds=float(match["seconds"]),
        )
    except ValueError:
        return None
