import copy
import csv
import json

import pytest
import torch

from iterconv.cli import main
from iterconv.data.prepared import PreparedDataset
from iterconv.models.resnet import ModelConfig, ResNet
from iterconv.train.checkpoint import content_digest, load_run_model
from iterconv.train.config import RunConfig, learning_rate
from iterconv.train.loop import (
    SpeedOptions,
    train_run,
    usable_speed,
)
from iterconv.train.metrics import mistakes

CPU = torch.device("cpu")


def synthetic(n_train=96, n_val=48, multilabel=False, seed=0, augment="none") -> PreparedDataset:
    """Images whose class sets the brightness of one quadrant: learnable in a few epochs."""
    gen = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.randint(0, 4, (n,), generator=gen)
        x = torch.randint(0, 60, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
        for i, c in enumerate(y.tolist()):
            r, q = divmod(c, 2)
            x[i, 0, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 180
        if multilabel:
            y = torch.nn.functional.one_hot(y, 4).to(torch.uint8)
        return x, y

    (tx, ty), (vx, vy) = split(n_train), split(n_val)
    return PreparedDataset(
        train_x=tx,
        train_y=ty,
        val_x=vx,
        val_y=vy,
        mean=torch.tensor([0.3]),
        std=torch.tensor([0.3]),
        num_classes=4,
        multilabel=multilabel,
        augment=augment,
        manifest={},
    )


def tiny_config(**kw) -> RunConfig:
    base = dict(
        dataset="synthetic",
        width=4,
        stages=2,
        blocks=2,
        epochs=4,
        lr=0.05,
        milestones=(3,),
        lr_factor=5,
        batch_size=16,
        seed=3,
    )
    return RunConfig(**{**base, **kw})


def quiet(msg):
    pass


def test_learning_rate_schedule():
    cfg = RunConfig(lr=0.1, milestones=(200, 300), lr_factor=10)
    assert [learning_rate(cfg, e) for e in (0, 199, 200, 299, 300)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )


def test_training_learns_and_writes_outputs(tmp_path):
    data = synthetic()
    metrics = train_run(tiny_config(epochs=6), data, tmp_path, CPU, log=quiet)
    for name in ("best.pt", "last.pt", "history.csv", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert metrics["best_val_error"] < 0.5  # chance is 0.75
    model, cfg = load_run_model(tmp_path / "best.pt")
    with torch.no_grad():
        x = (data.val_x.float() / 255 - 0.3) / 0.3
        err = mistakes(model(x), data.val_y, False).float().mean().item()
    assert err == pytest.approx(metrics["best_val_error"])
    assert cfg["epochs"] == 6
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 7


def train_interrupted(cfg: RunConfig, data, out, epochs: int, **kw) -> None:
    """Leave in ``out`` what a run of ``cfg`` stopped after ``epochs`` epochs leaves."""
    train_run(RunConfig(**{**cfg.__dict__, "epochs": epochs}), data, out, CPU, log=quiet, **kw)
    last = torch.load(out / "last.pt", weights_only=False)
    last["config"]["epochs"] = cfg.epochs  # the interrupted run of the longer configuration
    del last["sha256"]
    last["sha256"] = content_digest(last)  # a legitimate edit: keep the checksum valid
    torch.save(last, out / "last.pt")
    (out / "metrics.json").unlink()


@pytest.mark.parametrize(
    "settings, speed",
    [
        (dict(variant="icr", coupling=0.5, init="recurrent"), SpeedOptions()),
        (dict(variant="van"), SpeedOptions()),  # the Lagrange multipliers are checkpointed too
        (dict(variant="van"), SpeedOptions(precision="bf16", channels_last=True)),
    ],
    ids=["icr-coupled", "van", "van-bf16-channels-last"],
)
def test_resume_gives_identical_weights(tmp_path, settings, speed):
    data = synthetic(augment="crop_flip")  # the augmentation's randomness must replay too
    cfg = tiny_config(**settings)
    train_run(cfg, data, tmp_path / "straight", CPU, log=quiet, speed=speed)
    # Two epochs, "stop the process", then resume the same configuration for the rest.
    train_interrupted(cfg, data, tmp_path / "split", 2, speed=speed)
    messages = []
    train_run(cfg, data, tmp_path / "split", CPU, log=messages.append, speed=speed)
    assert "resuming after epoch 2 of 4" in messages
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert ma["best_val_error"] == mb["best_val_error"] and ma["best_epoch"] == mb["best_epoch"]


def test_changed_configuration_restarts(tmp_path):
    data = synthetic()
    train_run(tiny_config(epochs=2), data, tmp_path, CPU, log=quiet)
    messages = []
    train_run(tiny_config(epochs=2, seed=4), data, tmp_path, CPU, log=messages.append)
    assert any("another configuration" in m for m in messages)


def history_column(run_dir, column: str) -> list[float]:
    with open(run_dir / "history.csv") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def test_multilabel_training_learns_and_is_deterministic(tmp_path):
    """Multi-hot targets (sigmoid outputs, binary cross-entropy): the training loss falls every
    epoch, the best validation error ends far below chance (0.75), and the same configuration
    trains to bitwise the same weights; another seed does not."""
    data, cfg = synthetic(multilabel=True), tiny_config(epochs=4)
    metrics = train_run(cfg, data, tmp_path / "a", CPU, log=quiet)
    losses = history_column(tmp_path / "a", "train_loss")
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses
    assert metrics["best_val_error"] < 0.5
    train_run(cfg, data, tmp_path / "b", CPU, log=quiet)
    train_run(tiny_config(epochs=4, seed=4), data, tmp_path / "c", CPU, log=quiet)
    a, b, c = (torch.load(tmp_path / r / "best.pt", weights_only=False)["model"] for r in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_multilabel_error_counts_images_whose_top_n_scores_are_not_their_digits():
    """Hand-made scores for images of one and two digits (docs/science.md: an image with n
    digits is correct when its n highest scores are its n digits)."""
    scores = torch.tensor(
        [
            [3.0, 2.0, 0.0, -1.0],  # digits {0, 1}, top two {0, 1}: right
            [3.0, 0.0, 2.0, -1.0],  # digits {0, 1}, top two {0, 2}: wrong
            [0.0, 0.0, 1.0, 2.0],  # digits {2, 3}, top two {3, 2}: right
            [5.0, 0.0, 0.0, 6.0],  # digit {0}, top one {3}: wrong
            [0.0, 4.0, -1.0, 1.0],  # digit {1}, top one {1}: right
        ]
    )
    labels = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.uint8
    )
    assert mistakes(scores, labels, True).tolist() == [False, True, False, True, False]
    assert mistakes(scores, labels.argmax(1), False).tolist() == [False, False, True, True, False]


def test_cli_rejects_bad_configuration(tmp_path, capsys):
    code = main(
        [
            "train",
            "--config-json",
            '{"coupling": 2}',
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "coupling" in err and "[0, 1]" in err and "Traceback" not in err


def test_run_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown run configuration keys"):
        RunConfig.from_dict({"widht": 8})


def test_van_training_phases_out_the_skips(tmp_path):
    """Seed 003's constrained training: alpha in [0, 1] rises towards 1 (the alpha residual
    falls), the multipliers only decrease, and alpha is exempt from weight decay."""
    from iterconv.models.van import skip_gates
    from iterconv.train.loop import build_model, build_optimizer

    cfg = tiny_config(variant="van", epochs=3, weight_decay=0.1)
    train_run(cfg, synthetic(), tmp_path / "run", CPU, log=quiet)
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    residuals = [float(line.split(",")[6]) for line in history[1:]]
    assert residuals == sorted(residuals, reverse=True) and residuals[-1] < 1.0
    model, _ = load_run_model(tmp_path / "run" / "last.pt")
    for gate in skip_gates(model):
        assert float(gate.alpha.min()) >= 0.0 and float(gate.alpha.max()) <= 1.0
        assert float(gate.multiplier.max()) <= -1.0
    fresh = build_model(cfg, synthetic())
    groups = build_optimizer(fresh, cfg).param_groups
    alphas = {id(g.alpha) for g in skip_gates(fresh)}
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert {id(p) for p in groups[1]["params"]} == alphas


# --- speed options ---------------------------------------------------------------------------


def final_val_loss(run_dir) -> float:
    with open(run_dir / "history.csv") as f:
        return float(list(csv.DictReader(f))[-1]["val_loss"])


@pytest.fixture(scope="module")
def fp32_reference(tmp_path_factory):
    """Final validation loss of the default (fp32, contiguous) tiny run."""
    out = tmp_path_factory.mktemp("fp32")
    train_run(tiny_config(epochs=6), synthetic(), out, CPU, log=quiet)
    return final_val_loss(out)


# Tolerances on the final validation loss after 6 epochs. fp32: 0.507 (seed 3); over seeds
# 0-4 it spans 0.20-0.51. Measured differences to fp32 over seeds 0-4 (CPU, torch 2.14):
# channels-last at most 1.2e-7 (only the order of float summations changes), bf16 and
# bf16 + channels-last at most 0.0055 (convolution inputs rounded to 8 mantissa bits).
# --compile is left out: compiling even this network takes 25-45 s on a CPU (checked by hand on
# standard, VAN and ICR runs: the same losses as eager; docs/performance.md).
SPEED_CASES = {
    "channels-last": (SpeedOptions(channels_last=True), 1e-4),
    "bf16": (SpeedOptions(precision="bf16"), 0.02),
    "bf16-channels-last": (SpeedOptions(precision="bf16", channels_last=True), 0.02),
}


@pytest.mark.parametrize("case", SPEED_CASES)
def test_speed_options_train_like_fp32(tmp_path, fp32_reference, case):
    speed, tolerance = SPEED_CASES[case]
    metrics = train_run(tiny_config(epochs=6), synthetic(), tmp_path, CPU, log=quiet, speed=speed)
    assert metrics["speed"] == {**SpeedOptions().__dict__, **speed.__dict__}
    assert metrics["best_val_error"] < 0.5  # chance is 0.75
    assert final_val_loss(tmp_path) == pytest.approx(fp32_reference, abs=tolerance)


@pytest.mark.parametrize("variant", ["standard", "icr", "van", "implicit"])
def test_channels_last_computes_the_same_function(variant):
    """fp32 channels-last: same logits, predictions and gradients as the default layout, up to
    float rounding, in training mode (batch statistics, power iteration, implicit solve and its
    custom backward) and in eval mode."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=4, image_size=8, width=4, stages=2, blocks=2, variant=variant)
    plain = ResNet(cfg)
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    weight = last.stages[0].blocks[0].f.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 4, (16,))
    outputs = []
    for model, batch in ((plain, x), (last, x.contiguous(memory_format=torch.channels_last))):
        logits = model(batch)
        torch.nn.functional.cross_entropy(logits, y).backward()
        with torch.no_grad():
            outputs.append((logits, model.eval()(batch), [p.grad for p in model.parameters()]))
    (train_a, eval_a, grads_a), (train_b, eval_b, grads_b) = outputs
    assert torch.allclose(train_a, train_b, atol=1e-5)
    assert torch.allclose(eval_a, eval_b, atol=1e-5)
    assert torch.equal(eval_a.argmax(1), eval_b.argmax(1))
    for ga, gb in zip(grads_a, grads_b):
        assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4)


def test_implicit_variant_trains_in_fp32_and_eagerly(tmp_path):
    notes = []
    speed = SpeedOptions(precision="bf16", channels_last=True, compile=True)
    assert usable_speed("van", speed, notes.append) == speed and not notes
    cfg = tiny_config(variant="implicit", epochs=1)
    metrics = train_run(cfg, synthetic(), tmp_path, CPU, log=notes.append, speed=speed)
    assert metrics["speed"] == {"precision": "fp32", "channels_last": True, "compile": False}
    assert any("bf16" in n and "fp32" in n for n in notes)
    assert any("--compile" in n and "eagerly" in n for n in notes)


def test_resume_may_change_speed_options_and_checkpoints_stay_plain(tmp_path):
    """Two epochs in the default layout, the rest resumed in bf16 and channels-last: the
    checkpoints hold contiguous CPU weights under the module's own names either way."""
    data, cfg = synthetic(), tiny_config()
    train_interrupted(cfg, data, tmp_path, 2)
    messages = []
    speed = SpeedOptions(precision="bf16", channels_last=True)
    train_run(cfg, data, tmp_path, CPU, log=messages.append, speed=speed)
    assert "resuming after epoch 2 of 4" in messages
    names = set(ResNet(tiny_config().model_config(1, 4, 8)).state_dict())
    for name in ("last.pt", "best.pt"):
        weights = torch.load(tmp_path / name, weights_only=False)["model"]
        assert set(weights) == names
        assert all(w.is_contiguous() and w.device == CPU for w in weights.values())
    load_run_model(tmp_path / "best.pt")


def test_cli_speed_options_reach_the_run(tmp_path):
    from test_faults import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data")
    argv = ["train", "--config-json", json.dumps(tiny_config(epochs=1).to_dict())]
    argv += ["--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*argv, "--precision", "bf16", "--channels-last"]) == 0
    speed = json.loads((tmp_path / "run" / "metrics.json").read_text())["speed"]
    assert speed == {"precision": "bf16", "channels_last": True, "compile": False}
