"""Checkpoints of a run: writing, reading and verifying ``last.pt`` and ``best.pt``.

Each checkpoint embeds a sha256 of its content (every tensor's bytes, dtype and shape, every
other value's repr). A last.pt that does not load or does not match is ignored by the training
loop (training restarts from scratch); a best.pt that does not match, or whose file differs
from the sha256 in metrics.json (the run's manifest), stops the analysis with a
:class:`~iterconv.errors.UserError`, and so does a metrics.json beside it that cannot be read
or lists checksums without best.pt's.

A checkpoint that cannot be written (torch's writer reports a full disk as ``RuntimeError``)
raises a ``UserError`` and leaves the previous file intact (atomic writes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iterconv.errors import UserError
from iterconv.io import atomic_path, sha256
from iterconv.models import build_network, model_config_from_dict
from iterconv.train.config import RunConfig

# Files the run's metrics.json must list once it lists any (``sha256``): the checkpoint the
# analyses read. last.pt is never listed.
MANIFEST_FILES = ("best.pt",)


class CorruptCheckpoint(Exception):
    """A checkpoint that cannot be read or does not match its embedded checksum."""


def content_digest(obj) -> str:
    """sha256 of a checkpoint payload's content: tensors by bytes, dtype and shape, the rest by
    repr, dict keys in their order. Independent of the file's zip layout."""
    digest = hashlib.sha256()

    def feed(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            digest.update(f"D{len(x)}".encode())
            for k, v in x.items():
                feed(k)
                feed(v)
        elif isinstance(x, list | tuple):
            digest.update(f"L{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            digest.update(f"V{x!r};".encode())

    feed(obj)
    return digest.hexdigest()


def save_checkpoint(
    path: Path,
    weights: dict,
    optimizer: torch.optim.Optimizer | None,
    cfg: RunConfig,
    state: dict[str, Any],
    model_cfg,
) -> None:
    """Write ``path`` atomically with its content digest; ``state`` is the loop's resume state
    and ``model_cfg`` the dataclass the model was built from."""
    payload = {
        "config": cfg.to_dict(),
        "model_config": dataclasses.asdict(model_cfg),
        "model": weights,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "state": state,
    }
    payload["sha256"] = content_digest(payload)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (RuntimeError, OSError) as err:  # torch's zip writer reports ENOSPC as RuntimeError
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UserError(
            f"writing checkpoint {path} failed ({' '.join(detail.split())}): is the disk or "
            f"the quota full? Free space and rerun (the previous {path.name}, if any, is intact)"
        ) from err


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint and verify its embedded sha256 (files without one load unverified).

    Raises :class:`CorruptCheckpoint` (truncated, unreadable, modified) or FileNotFoundError.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, bad pickle, ...: all mean "corrupt"
        raise CorruptCheckpoint(f"{path} is unreadable ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CorruptCheckpoint(f"{path} is not an iterconv checkpoint")
    expected = ckpt.pop("sha256", None)
    if expected is not None and content_digest(ckpt) != expected:
        raise CorruptCheckpoint(f"{path} does not match its checksum (corrupt or modified)")
    return ckpt


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint (best.pt or last.pt) as an eval-mode model (the project's ResNet or a
    torchvision architecture, with its configuration as ``cfg``) and its run config.

    The file is checked against the sha256 listed in the ``metrics.json`` beside it (when that
    lists one) and against its embedded checksum. A missing, corrupt or modified checkpoint
    raises :class:`~iterconv.errors.UserError` naming the run directory to delete and retrain.
    """
    path = Path(path)
    fix = f"delete {path.parent} and rerun the workflow to retrain it"
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: train the run first")
    listed = _manifest_sha256(path, fix)
    if listed is not None and sha256(path) != listed:
        raise UserError(f"{path} does not match its sha256 in metrics.json (corrupt): {fix}")
    try:
        ckpt = read_checkpoint(path, map_location="cpu")
        model = build_network(model_config_from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except CorruptCheckpoint as err:
        raise UserError(f"{err}: {fix}") from err
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # structure does not fit
        raise UserError(f"{path} is not a valid checkpoint ({err}): {fix}") from err
    return model.to(device).eval(), ckpt["config"]


def _manifest_sha256(path: Path, fix: str) -> str | None:
    """The sha256 of ``path`` listed in the ``metrics.json`` beside it.

    None when there is no metrics.json (a run in progress, a checkpoint copied elsewhere), when
    it predates checksums (no ``sha256`` entry) or for a file it never lists (last.pt). A
    metrics.json that exists but cannot be read, or that lists checksums but not this
    checkpoint's, raises :class:`~iterconv.errors.UserError`: it must not switch the check off.
    """
    mpath = path.parent / "metrics.json"
    try:
        metrics = json.loads(mpath.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bytes
        raise UserError(
            f"{mpath} is unreadable ({type(err).__name__}), so {path} cannot be verified: {fix}"
        ) from err
    if not isinstance(metrics, dict):
        raise UserError(f"{mpath} is not a run's metrics (no JSON object): {fix}")
    listed = metrics.get("sha256")
    if listed is None:
        return None  # written before checksums existed; the embedded checksum still applies
    digest = listed.get(path.name) if isinstance(listed, dict) else None
    if digest is None and path.name in MANIFEST_FILES:
        raise UserError(f"{mpath} lists no sha256 for {path.name} (modified or corrupt): {fix}")
    return digest
