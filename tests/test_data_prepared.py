"""The prepared-dataset format: atomic writing, checksum verification, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iterconv.cli import UserError
from iterconv.data.prepared import load_prepared, normalize
from iterconv.data.store import channel_stats, write_prepared


def _write(out, seed=0):
    rng = np.random.default_rng(seed)
    split = lambda n: {  # noqa: E731
        "x": rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8),
        "y": rng.integers(0, 5, n).astype(np.int64),
    }
    return write_prepared(
        out, train=split(20), val=split(8), name="toy", source="cifar10", num_classes=5,
        multilabel=False, augment="crop_flip", params={"seed": seed},
    )  # fmt: skip


def test_roundtrip_and_manifest(tmp_path):
    manifest = _write(tmp_path / "toy")
    data = load_prepared(tmp_path / "toy")
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert tuple(data.train_x.shape) == (20, 3, 4, 4) and len(data.val_y) == 8
    assert manifest["shapes"] == {"train": [20, 3, 4, 4], "val": [8, 3, 4, 4]}
    assert sum(manifest["label_counts"]["val"]) == 8
    x = data.train_x.double() / 255
    assert np.allclose(data.mean, x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert np.allclose(data.std, x.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["toy"]  # no temporary leftovers
    moved = data.to("cpu")
    assert moved.manifest is data.manifest and moved.train_x.device.type == "cpu"


def test_replace_existing_output(tmp_path):
    _write(tmp_path / "toy", seed=0)
    _write(tmp_path / "toy", seed=1)
    assert json.loads((tmp_path / "toy" / "manifest.json").read_text())["params"] == {"seed": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_refuses_to_replace_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing"):
        _write(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_corrupted_npz_detected(tmp_path):
    _write(tmp_path / "toy")
    path = tmp_path / "toy" / "val.npz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(UserError, match=r"val\.npz.*delete .* prepare it again"):
        load_prepared(tmp_path / "toy")
    with pytest.raises(UserError, match="unreadable"):  # without the check, zip's CRC catches it
        load_prepared(tmp_path / "toy", verify=False)


@pytest.mark.parametrize("missing", ["train.npz", "manifest.json"])
def test_missing_files_detected(tmp_path, missing):
    _write(tmp_path / "toy")
    (tmp_path / "toy" / missing).unlink()
    with pytest.raises(UserError, match=missing.replace(".", r"\.")):
        load_prepared(tmp_path / "toy")


def test_missing_directory(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_prepared(tmp_path / "nothing")


def test_normalize():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    out = normalize(x, torch.tensor([0.5]), torch.tensor([0.25]))
    assert out.dtype == torch.float32
    assert torch.allclose(out.view(-1), torch.tensor([-2.0, 2.0]))


def test_channel_stats_exact():
    x = np.array([[[[0, 255]]], [[[255, 255]]]], dtype=np.uint8)
    mean, std = channel_stats(x)
    assert mean == [0.75] and abs(std[0] - np.sqrt(0.1875)) < 1e-12
