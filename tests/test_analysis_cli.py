"""``iterconv indices`` / ``toy`` commands: happy path on a tiny run, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import torch

import iterconv.data.prepared as prepared
from iterconv.analysis.epc import effective_parameter_count
from iterconv.analysis.indices import read_indices
from iterconv.cli import main
from iterconv.models.resnet import ModelConfig, ResNet
from iterconv.train.checkpoint import load_run_model


def fake_run(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(in_channels=1, image_size=8, width=4, stages=2, blocks=2, variant="pcr")
    model = ResNet(cfg)
    run = tmp_path / "run0"
    run.mkdir()
    torch.save(
        {"model_config": dataclasses.asdict(cfg), "model": model.state_dict(), "config": {}},
        run / "best.pt",
    )
    return run


def fake_data(n=30):
    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(
        val_x=torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
        val_y=torch.randint(0, 10, (n,), generator=g),
        mean=torch.tensor([0.5]),
        std=torch.tensor([0.25]),
        num_classes=10,
        multilabel=False,
    )


def test_indices_command_writes_the_indices_and_the_epc(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    monkeypatch.setattr(prepared, "load_prepared", lambda path, device="cpu": fake_data())
    out = tmp_path / "out" / "indices.json"
    argv = [
        "indices",
        "--run",
        str(run),
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--extra",
        "3",
        "--batch-size",
        "8",
        "--max-images",
        "20",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    res = read_indices(out)
    assert res["run"] == "run0" and res["n_images"] == 20 and res["extra_evaluations"] == 3
    assert [len(st["extra_error"]) for st in res["stages"]] == [3, 3]
    assert all(isinstance(v, float) for v in res["network"].values())
    assert not math.isnan(res["chance_error"])

    # the per-run file carries the EPC of the same checkpoint: the tables never load a model
    model, _ = load_run_model(run / "best.pt")
    assert res["epc"] == effective_parameter_count(model)
    assert json.loads(out.read_text())["epc"] == res["epc"]  # exact through strict JSON
    # With L = 2 blocks eq. 4 can exceed the raw count (docs/analysis.md); only check the floor.
    assert res["epc"]["recurrent"] < res["epc"]["epc"]


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    argv = [
        "indices",
        "--run",
        str(tmp_path),
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "x.json"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "best.pt" in err
