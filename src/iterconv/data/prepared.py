"""The prepared-dataset format shared by every dataset, and its loader.

A prepared dataset is a directory holding ``train.npz`` and ``val.npz`` (``np.savez``, keys ``x``
uint8 (N, C, H, W) and ``y``: int64 class ids, or uint8 (N, 10) multi-hot for Digitclutter, which
also stores ``digits`` and ``n_digits``) and ``manifest.json`` (written last) with the
normalisation statistics of the training split, shapes, label counts, the files' sha256 and the
parameters that produced it. See docs/data.md.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from iterconv.data.store import SPLIT_FILES
from iterconv.errors import UserError
from iterconv.io import sha256

# Keys of manifest.json that loading needs; "files" maps each split file to its sha256.
MANIFEST_KEYS = ("files", "mean", "std", "num_classes", "multilabel", "augment")

# --- reading -------------------------------------------------------------------------------


@dataclass
class PreparedDataset:
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,) or uint8 (N, classes) multi-hot
    val_x: torch.Tensor
    val_y: torch.Tensor
    mean: torch.Tensor  # (C,) float32, 0..1 scale, from the training split
    std: torch.Tensor  # (C,)
    num_classes: int
    multilabel: bool
    augment: str  # "crop_flip" | "crop" | "none"
    manifest: dict

    def to(self, device) -> PreparedDataset:
        """A copy with every tensor on ``device``."""
        names = ("train_x", "train_y", "val_x", "val_y", "mean", "std")
        return replace(self, **{n: getattr(self, n).to(device) for n in names})


def read_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise UserError(f"prepared dataset not found: {path}")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError as err:
        raise UserError(f"{mpath} is missing: delete {path} and prepare it again") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{mpath} is corrupt: delete {path} and prepare it again") from err
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing or not isinstance(manifest["files"], dict):
        raise UserError(
            f"{mpath} is incomplete (no {', '.join(missing) or 'files'}): "
            f"delete {path} and prepare it again"
        )
    return manifest


def load_prepared(path: str | os.PathLike, device="cpu", verify: bool = True) -> PreparedDataset:
    """Load a prepared dataset (whole arrays) into tensors on ``device``.

    With ``verify``, every npz file's sha256 is checked against the manifest first.
    """
    path = Path(path)
    manifest = read_manifest(path)
    arrays = {}
    for fname in SPLIT_FILES:
        fpath = path / fname
        if not fpath.is_file():
            raise UserError(f"{fpath} is missing: delete {path} and prepare it again")
        if verify and sha256(fpath) != manifest["files"].get(fname):
            raise UserError(
                f"{fpath} does not match its checksum in the manifest (corrupt or modified): "
                f"delete {path} and prepare it again"
            )
        try:
            with np.load(fpath) as npz:
                arrays[fname] = {k: npz[k] for k in ("x", "y")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise UserError(
                f"{fpath} is unreadable ({err}): delete {path} and prepare it again"
            ) from err
    data = PreparedDataset(
        train_x=torch.from_numpy(arrays["train.npz"]["x"]),
        train_y=torch.from_numpy(arrays["train.npz"]["y"]),
        val_x=torch.from_numpy(arrays["val.npz"]["x"]),
        val_y=torch.from_numpy(arrays["val.npz"]["y"]),
        mean=torch.tensor(manifest["mean"], dtype=torch.float32),
        std=torch.tensor(manifest["std"], dtype=torch.float32),
        num_classes=int(manifest["num_classes"]),
        multilabel=bool(manifest["multilabel"]),
        augment=manifest["augment"],
        manifest=manifest,
    )
    return data.to(device) if str(device) != "cpu" else data


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, on x's device."""
    mean = mean.to(x.device, torch.float32).view(1, -1, 1, 1)
    std = std.to(x.device, torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std
