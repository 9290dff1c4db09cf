"""Writing the prepared-dataset format (see :mod:`iterconv.data.prepared` and docs/data.md).

Needs numpy only, so generators can write without importing torch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from iterconv.errors import UserError
from iterconv.io import sha256, write_json

SPLIT_FILES = ("train.npz", "val.npz")


# --- writing -------------------------------------------------------------------------------


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and (population) std of uint8 images on the 0..1 scale."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(x.shape[1]):
        hist = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        m = float(hist @ levels / hist.sum())
        mean.append(m)
        std.append(float(np.sqrt(hist @ (levels - m) ** 2 / hist.sum())))
    return mean, std


def label_counts(y: np.ndarray, num_classes: int) -> list[int]:
    if y.ndim == 2:  # multi-hot
        return [int(v) for v in y.sum(axis=0, dtype=np.int64)]
    return [int(v) for v in np.bincount(y, minlength=num_classes)]


def check_output_dir(out: Path) -> None:
    """Fail early (one line) if ``out`` cannot be created or is not ours to replace."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output directory {out.parent}: {err.strerror}") from err
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"output directory {out.parent} is not writable")
    ours = out.is_dir() and (not any(out.iterdir()) or (out / "manifest.json").exists())
    if out.exists() and not ours:
        raise UserError(f"refusing to replace {out}: it exists and is not a prepared dataset")


def write_prepared(
    out: str | os.PathLike,
    *,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    name: str,
    source: str,
    num_classes: int,
    multilabel: bool,
    augment: str,
    params: dict,
) -> dict:
    """Write a prepared dataset atomically; returns its manifest.

    Everything is built in a temporary sibling directory (manifest last) which is then renamed
    into place; an earlier complete output is removed only after the new one is complete.
    """
    out = Path(out)
    check_output_dir(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise UserError(f"cannot write to {out.parent}: {err.strerror}") from err
    try:
        for fname, arrays in zip(SPLIT_FILES, (train, val), strict=True):
            with open(tmp / fname, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
        mean, std = channel_stats(train["x"])
        manifest = {
            "name": name,
            "source": source,
            "num_classes": num_classes,
            "multilabel": multilabel,
            "augment": augment,
            "mean": mean,
            "std": std,
            "shapes": {"train": list(train["x"].shape), "val": list(val["x"].shape)},
            "label_counts": {
                "train": label_counts(train["y"], num_classes),
                "val": label_counts(val["y"], num_classes),
            },
            "files": {f: sha256(tmp / f) for f in SPLIT_FILES},
            "params": params,
        }
        write_json(tmp / "manifest.json", manifest)
        _apply_umask(tmp)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _apply_umask(directory: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give them the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~umask)


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():  # a directory cannot be replaced by rename: move it aside first
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "data")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):  # make the renames durable where the OS allows
        fd = os.open(out.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
