"""The labelled epoch line of a training log: written and read back by the same module."""

from __future__ import annotations

import pytest

from iterconv.train.progress import EpochProgress, epoch_line, parse_epoch_line


def test_epoch_line_is_labelled_and_reads_back() -> None:
    progress = EpochProgress(
        epoch=3,
        epochs=5,
        lr=0.1,
        train_loss=0.70604,
        train_error=0.98828,
        val_loss=0.69121,
        val_error=0.97,
        seconds=12.34,
    )
    line = epoch_line(progress)
    assert line == (
        "epoch 3/5  lr 0.1  train loss 0.7060 err 98.8%  val loss 0.6912 err 97.0%  12.3 s"
    )
    back = parse_epoch_line(line + " solves: 4.0 fwd / 3.5 bwd iterations, 0 not converged")
    assert back is not None
    assert (back.epoch, back.epochs, back.lr, back.seconds) == (3, 5, 0.1, 12.3)
    assert back.train_error == pytest.approx(0.988) and back.val_error == pytest.approx(0.97)
    assert back.train_loss == pytest.approx(0.706) and back.val_loss == pytest.approx(0.6912)


@pytest.mark.parametrize(
    "line",
    [
        "training epochs 1..5 on cpu",
        "resuming after epoch 2 of 5",
        "epoch 1/2 lr 0.1 train 0.7060/0.9883 val 0.6900/0.9700 (1.0s)",  # unlabelled
        "iterconv train: error: training diverged at epoch 2 of 2",
    ],
)
def test_other_lines_are_not_epochs(line: str) -> None:
    assert parse_epoch_line(line) is None
