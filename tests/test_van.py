import io
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from iterconv.cli import UserError
from iterconv.data.store import write_prepared
from iterconv.families import van as van_family
from iterconv.models.van import (
    FCNet,
    SkipGate,
    add_multiplier_gradients,
    alpha_residual,
    gate_group,
    gate_parameters,
    mean_alpha,
    mean_multiplier,
    skip_gates,
    update_multipliers,
)
from iterconv.pipeline.grid import ParamsError
from iterconv.report.engine import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    NOT_REPRODUCIBLE,
    SUPPORTED,
)
from iterconv.train.config import RunConfig
from iterconv.train.loop import build_optimizer

# --- the gate and the multiplier updates -----------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_gate_is_resnet_block_at_alpha_0_and_plain_layer_at_alpha_1(shape):
    fx, x = torch.randn(2, *shape), torch.randn(2, *shape)
    assert torch.equal(SkipGate(shape, alpha_init=0.0)(fx, x), fx + x)
    assert torch.equal(SkipGate(shape, alpha_init=1.0)(fx, x), fx)


def test_gate_is_per_neuron():
    gate = SkipGate((3,))
    with torch.no_grad():
        gate.alpha.copy_(torch.tensor([0.0, 0.5, 1.0]))
    out = gate(torch.zeros(1, 3), torch.full((1, 3), 2.0))
    assert torch.equal(out, torch.tensor([[2.0, 1.0, 0.0]]))


def test_update_clips_alpha_to_unit_interval():
    net = FCNet(4, 3, depth=2, arch="van")
    with torch.no_grad():
        for g in skip_gates(net):
            g.alpha.copy_(torch.linspace(-2.0, 3.0, g.alpha.numel()))
    update_multipliers(net, 0.1)
    alphas = torch.cat(gate_parameters(net)).detach()
    assert alphas.min() == 0.0 and alphas.max() == 1.0


def test_multipliers_decrease_while_alpha_below_1_and_stay_at_alpha_1():
    gate = SkipGate((4,))
    with torch.no_grad():
        gate.alpha.copy_(torch.tensor([0.0, 0.3, 1.0, 1.0]))
    history = [gate.multiplier.clone()]
    for _ in range(5):
        update_multipliers(gate, 0.5)
        history.append(gate.multiplier.clone())
    h = torch.stack(history)
    assert torch.all(h[1:, :2] < h[:-1, :2])  # strictly decreasing where alpha < 1
    assert torch.equal(h[:, 2:], torch.full((6, 2), -1.0))  # unchanged where alpha = 1
    # eq. 8 exactly: lambda <- lambda + step (alpha - 1)
    torch.testing.assert_close(h[1, :2], torch.tensor([-1.5, -1.35]))


def test_eq7_gradient_is_cost_gradient_plus_multiplier():
    torch.manual_seed(0)
    gate = SkipGate((3,))
    with torch.no_grad():
        gate.alpha.copy_(torch.tensor([0.2, 0.5, 0.9]))
        gate.multiplier.copy_(torch.tensor([-1.0, -2.0, -0.5]))
    fx, x = torch.randn(4, 3), torch.randn(4, 3)
    cost = (gate(fx, x) ** 2).sum()
    cost.backward()
    # independent reference: dC/dalpha_i = sum_n 2 out_ni * (-x_ni)
    out = fx + (1 - gate.alpha.detach()) * x
    reference = (2 * out * -x).sum(0) + gate.multiplier
    add_multiplier_gradients(gate)
    torch.testing.assert_close(gate.alpha.grad, reference)


def test_sgd_step_with_multipliers_pushes_alpha_up():
    net = FCNet(4, 3, depth=3, arch="van")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    opt.zero_grad()
    (0.0 * net(torch.randn(8, 4)).sum()).backward()  # zero cost gradient: eq. 7 is lambda
    add_multiplier_gradients(net)
    opt.step()
    update_multipliers(net, 0.05)
    for g in skip_gates(net):
        torch.testing.assert_close(g.alpha.detach(), torch.full((50,), 0.1))
        torch.testing.assert_close(g.multiplier, torch.full((50,), -1.0 + 0.05 * (0.1 - 1)))


def test_van_free_leaves_multipliers_at_zero():
    torch.manual_seed(0)
    net = FCNet(4, 3, depth=2, arch="van_free")
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
        add_multiplier_gradients(net)
        opt.step()
        update_multipliers(net, 0.05)
    assert all(torch.equal(g.multiplier, torch.zeros(50)) for g in skip_gates(net))
    assert mean_multiplier(net) == 0.0
    assert any(g.alpha.detach().abs().sum() > 0 for g in skip_gates(net))  # alphas did learn


def test_multipliers_survive_state_dict_round_trip():
    net = FCNet(4, 3, depth=2, arch="van")
    with torch.no_grad():
        net.layers[1].gate.multiplier.fill_(-3.25)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    other = FCNet(4, 3, depth=2, arch="van")
    other.load_state_dict(torch.load(buffer))
    assert "layers.1.gate.multiplier" in net.state_dict()
    assert torch.equal(other.layers[1].gate.multiplier, torch.full((50,), -3.25))
    assert torch.equal(other.layers[0].gate.multiplier, torch.full((50,), -1.0))


def test_alpha_residual_and_gate_parameters():
    net = FCNet(4, 3, depth=2, arch="van")
    assert alpha_residual(net) == 1.0  # alpha = 0 everywhere
    with torch.no_grad():
        net.layers[0].gate.alpha.fill_(1.0)
        net.layers[1].gate.alpha[:25] = 0.5
    # layer 0: 0; layer 1: mean(25 * 0.25 + 25 * 1) / 50 = 0.625; average over 2 layers
    assert alpha_residual(net) == pytest.approx(0.3125)
    assert [id(p) for p in gate_parameters(net)] == [id(g.alpha) for g in skip_gates(net)]
    plain = FCNet(4, 3, depth=2, arch="plain")
    assert gate_parameters(plain) == [] and alpha_residual(plain) != alpha_residual(plain)  # NaN


# --- the fully connected networks of section 4.1 ---------------------------------------------


def test_van_with_alpha_1_is_the_plain_network_and_alpha_0_the_resnet():
    torch.manual_seed(0)
    van = FCNet(6, 4, depth=3, arch="van").eval()
    x = torch.randn(5, 6)
    for arch, alpha in (("plain", 1.0), ("resnet", 0.0)):
        other = FCNet(6, 4, depth=3, arch=arch).eval()
        other.load_state_dict(van.state_dict(), strict=False)  # same weights, no gates
        with torch.no_grad():
            for g in skip_gates(van):
                g.alpha.fill_(alpha)
        torch.testing.assert_close(van(x), other(x), rtol=0, atol=0)


def test_fcnet_shapes_and_validation():
    net = FCNet(32 * 32, 10, depth=4, arch="resnet")
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    assert len(skip_gates(net)) == 0 and len(skip_gates(FCNet(8, 2, 4, "van"))) == 4
    with pytest.raises(ValueError, match="arch"):
        FCNet(8, 2, 3, "highway")
    with pytest.raises(ValueError, match="depth"):
        FCNet(8, 2, 0, "plain")


# --- the family: spec, jobs, tables, figures, claims -----------------------------------------

MICRO = {
    "datasets": ["digits1"],
    "depths": [1, 12],
    "seeds": [0, 1],
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.01,
}


def _dataset(path: Path, digits_per_image: int = 1, seed: int = 0) -> Path:
    """A tiny Digitclutter-like prepared dataset: multi-hot labels, class = bright quadrant."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", 96), ("val", 48)):
        x = rng.integers(0, 60, (n, 1, 8, 8), dtype=np.uint8)
        y = np.zeros((n, 10), np.uint8)
        for i in range(n):
            classes = rng.choice(4, digits_per_image, replace=False)
            y[i, classes] = 1
            for c in classes:
                x[i, 0, 4 * (c // 2) : 4 * (c // 2) + 4, 4 * (c % 2) : 4 * (c % 2) + 4] += 150
        splits[split] = {"x": x, "y": y}
    write_prepared(
        path,
        **splits,
        name=path.name,
        source="digitclutter",
        num_classes=10,
        multilabel=True,
        augment="none",
        params={"n_digits": digits_per_image},
    )
    return path


def test_expand_job_ids_and_configs():
    jobs = van_family.expand(MICRO)
    archs = ("plain", "resnet", "van", "van_free")
    assert sorted(jobs) == sorted(
        f"digits1_{a}_d{d}_s{s}" for a in archs for d in (1, 12) for s in (0, 1)
    )
    cfg = jobs["digits1_van_d12_s1"]
    assert cfg["arch"] == "van" and cfg["depth"] == 12 and cfg["seeds"] == [1]
    assert cfg["momentum"] == 0.9 and cfg["multiplier_fraction"] == 0.5 and cfg["width"] == 50
    assert cfg["multiplier_init"] == -1.0 and cfg["alpha_init"] == 0.0
    assert van_family.datasets(cfg) == ["digits1"]
    json.dumps(jobs)  # JSON-serialisable
    grouped = van_family.expand({**MICRO, "seeds": [0, 1, 2, 3, 4], "seeds_per_job": 2})
    assert {j.rsplit("_", 1)[1] for j in grouped} == {"s0-1", "s2-3", "s4"}
    assert all(re.fullmatch(r"[a-z0-9_.-]+", j) for j in grouped)
    paper = van_family.expand({"datasets": ["mnist"]})
    assert len(paper) == 30 * 4 and paper["mnist_plain_d30_s0"]["lr"] == 0.001
    assert paper["mnist_plain_d30_s0"]["epochs"] == 50
    assert paper["mnist_plain_d30_s0"]["batch_size"] == 128


@pytest.mark.parametrize(
    "change, key",
    [
        ({"datasets": None}, "families.van.datasets"),
        ({"datasets": ["Bad Name"]}, "families.van.datasets"),
        ({"depths": [0, 2]}, "families.van.depths"),
        ({"depths": [2, 2]}, "families.van.depths"),
        ({"archs": ["highway"]}, "families.van.archs"),
        ({"seeds": []}, "families.van.seeds"),
        ({"seeds": [True]}, "families.van.seeds"),
        ({"lr": 0}, "families.van.lr"),
        ({"momentum": 1.5}, "families.van.momentum"),
        ({"alpha_init": 2}, "families.van.alpha_init"),
        ({"multiplier_init": 0.5}, "families.van.multiplier_init"),
        ({"batch_size": 1}, "families.van.batch_size"),
        ({"n_train": "all"}, "families.van.n_train"),
        ({"depth": [2]}, "families.van.depth"),
    ],
)
def test_expand_rejects_malformed_specs(change, key):
    with pytest.raises(ParamsError, match=re.escape(key)):
        van_family.expand({**MICRO, **change})


def test_run_collect_figures_claims(tmp_path, capsys):
    data = {"digits1": _dataset(tmp_path / "digits1")}
    jobs = van_family.expand(MICRO)
    results = {}
    for job_id, cfg in jobs.items():
        van_family.run(cfg, tmp_path / "jobs" / job_id, data=data)
        results[job_id] = json.loads((tmp_path / "jobs" / job_id / "result.json").read_text())
    assert "epoch 2" in capsys.readouterr().out
    again = tmp_path / "again"
    van_family.run(jobs["digits1_van_d12_s0"], again, data=data)
    assert (
        json.loads((again / "result.json").read_text())["runs"][0]["epochs"]
        == (results["digits1_van_d12_s0"]["runs"][0]["epochs"])
    )  # deterministic given the config
    tables = van_family.collect(results)
    # The framework hands the tables over as CSV.
    tables = {k: pd.read_csv(io.StringIO(v.to_csv(index=False))) for k, v in tables.items()}
    assert len(tables["epochs"]) == 16 * 3 and len(tables["final"]) == 16  # epochs 0, 1, 2
    start = tables["epochs"][(tables["epochs"]["epoch"] == 0) & (tables["epochs"]["arch"] == "van")]
    assert (start["alpha_residual"] == 1.0).all() and (start["mean_multiplier"] == -1.0).all()
    final = tables["final"].set_index("job")
    assert (
        final.loc["digits1_plain_d1_s0", "alpha_residual"]
        != final.loc["digits1_plain_d1_s0", "alpha_residual"]
    )  # NaN: no gates
    van_rows = tables["final"][tables["final"]["arch"] == "van"]
    assert (van_rows["mean_multiplier"] < -1).all()  # eq. 8 drove them down
    free = tables["final"][tables["final"]["arch"] == "van_free"]
    assert (free["mean_multiplier"] == 0).all()
    assert tables["final"]["val_acc"].between(0, 1).all()
    for name, (caption, build) in van_family.FIGURES.items():
        assert name.startswith("van_") and caption
        fig = build(tables)
        assert fig.axes
        plt.close(fig)
    results_ = van_family.claims(tables, np.random.default_rng(0))
    ids = [c.id for c in results_]
    assert len(set(ids)) == len(ids) == 5
    verdicts = {SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA, NOT_REPRODUCIBLE}
    assert all(
        c.verdict in verdicts and c.paper_reference.startswith("the VAN paper") for c in results_
    )
    by_id = {c.id: c for c in results_}
    assert by_id["van_beats_plain"].verdict != NO_DATA and by_id["van_beats_plain"].n["strata"] == 2


def test_claims_and_figures_without_data():
    empty = {"epochs": pd.DataFrame(), "final": pd.DataFrame()}
    results_ = van_family.claims(empty, np.random.default_rng(0))
    assert results_ and all(c.verdict == NO_DATA for c in results_)
    for _caption, build in van_family.FIGURES.values():
        plt.close(build(empty))


def _final(groups: dict[tuple[str, int], list[float]], residual: float = 0.0) -> pd.DataFrame:
    rows = [
        {"dataset": "d", "arch": a, "depth": d, "seed": s, "val_acc": v, "alpha_residual": residual}
        for (a, d), values in groups.items()
        for s, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_claim_verdicts_on_hand_made_tables():
    good = _final(
        {
            ("plain", 2): [0.95, 0.96, 0.95, 0.955],
            ("plain", 30): [0.50, 0.55, 0.52, 0.6],
            ("van", 2): [0.96, 0.96, 0.97, 0.965],
            ("van", 30): [0.96, 0.965, 0.97, 0.96],
            ("resnet", 2): [0.97, 0.97, 0.971, 0.97],
            ("resnet", 30): [0.97, 0.971, 0.97, 0.97],
            ("van_free", 2): [0.97, 0.972, 0.971, 0.97],
            ("van_free", 30): [0.97, 0.969, 0.97, 0.971],
        }
    )
    verdicts = {
        c.id: c.verdict for c in van_family.claims({"final": good}, np.random.default_rng(0))
    }
    assert set(verdicts.values()) == {SUPPORTED}
    bad = good.assign(
        val_acc=np.where(
            good["arch"].isin(["van", "van_free"]), good["val_acc"] - 0.3, good["val_acc"]
        )
    ).assign(alpha_residual=0.5)
    verdicts = {
        c.id: c.verdict for c in van_family.claims({"final": bad}, np.random.default_rng(0))
    }
    assert (
        verdicts["van_beats_plain"] == INCONCLUSIVE or verdicts["van_beats_plain"] == CONTRADICTED
    )
    assert verdicts["van_free_competitive"] == CONTRADICTED
    assert verdicts["van_skips_removed"] == CONTRADICTED
    assert verdicts["van_plain_depth_degradation"] == SUPPORTED


def test_multi_digit_dataset_is_rejected(tmp_path):
    data = {"digits1": _dataset(tmp_path / "digits2", digits_per_image=2)}
    cfg = van_family.expand({**MICRO, "depths": [1], "archs": ["plain"], "seeds": [0]})
    with pytest.raises(UserError, match="n_digits: 1"):
        van_family.run(next(iter(cfg.values())), tmp_path / "job", data=data)
    assert not (tmp_path / "job" / "result.json").exists()


# --- eq. 7 without momentum, the phase-out step, the verdict ----------------------------------


def _alpha_steps(alpha_momentum: bool, n_steps: int = 3) -> tuple[list[Tensor], list[Tensor]]:
    """(alphas after each of the family's SGD steps, eq. 7 by hand from the same state)."""
    torch.manual_seed(0)
    net = FCNet(6, 3, depth=2, arch="van")
    cfg = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "alpha_momentum": alpha_momentum}
    opt = van_family._optimizer(net, cfg)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    got, hand = [], []
    for _ in range(n_steps):
        loss = nn.functional.cross_entropy(net(x), y)
        d_alpha = torch.autograd.grad(loss, gate_parameters(net), retain_graph=True)
        # eq. 7 as stated, then the clip: alpha <- clip(alpha - lr (dC/dalpha + lambda))
        hand.append(
            torch.cat(
                [
                    (g.alpha - 0.1 * (d + g.multiplier)).clamp(0, 1).detach()
                    for g, d in zip(skip_gates(net), d_alpha, strict=True)
                ]
            )
        )
        opt.zero_grad()
        loss.backward()
        add_multiplier_gradients(net)
        opt.step()
        update_multipliers(net, 0.05)
        got.append(torch.cat([g.alpha.detach().clone() for g in skip_gates(net)]))
    return got, hand


def test_alpha_follows_eq7_without_momentum():
    got, hand = _alpha_steps(alpha_momentum=False)
    for g, h in zip(got, hand, strict=True):
        torch.testing.assert_close(g, h)
    assert (got[-1] > 0).all() and (got[-1] < 1).all()  # the clip did not decide the match


def test_alpha_momentum_option_keeps_the_shared_momentum():
    got, hand = _alpha_steps(alpha_momentum=True)
    torch.testing.assert_close(got[0], hand[0])  # the first step has no momentum yet
    assert (got[1] - hand[1]).abs().max() > 1e-3  # later steps carry the momentum buffer
    net = FCNet(4, 2, depth=2, arch="van")
    assert gate_group(net)["momentum"] == 0.0 and gate_group(net)["weight_decay"] == 0.0
    assert "momentum" not in gate_group(net, momentum=True)
    assert van_family.expand(MICRO)["digits1_van_d1_s0"]["alpha_momentum"] is False
    with pytest.raises(ParamsError, match="alpha_momentum"):
        van_family.expand({**MICRO, "alpha_momentum": "yes"})


def test_resnet_van_variant_alphas_have_no_momentum():
    from iterconv.models.resnet import ResNet

    cfg = RunConfig(dataset="d", variant="van", width=4, stages=1, blocks=1, epochs=1)
    model = ResNet(cfg.model_config(1, 10, 8))
    groups = build_optimizer(model, cfg).param_groups
    assert groups[0]["momentum"] == cfg.momentum > 0
    assert groups[1]["momentum"] == 0.0 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in gate_parameters(model)}


def test_constraint_only_phase_out_step():
    # dC/dalpha = 0: alpha_n = lr * sum_{s < n} |lambda_s| with |lambda| growing slowly
    assert van_family.constraint_only_step(0.01, 0.5, -1.0) == 88
    assert van_family.constraint_only_step(0.01, 0.5, -1.0, momentum=0.9) == 18
    assert van_family.constraint_only_step(0.001, 0.5, -1.0) == 870
    assert van_family.constraint_only_step(0.01, 0.0, 0.0, max_steps=100) is None


def test_phase_out_step_is_recorded(tmp_path):
    data = {"digits1": _dataset(tmp_path / "digits1")}
    spec = {**MICRO, "depths": [2], "seeds": [0], "archs": ["plain", "van"], "lr": 0.2}
    results = {}
    for job_id, cfg in van_family.expand(spec).items():
        van_family.run(cfg, tmp_path / job_id, data=data)
        results[job_id] = json.loads((tmp_path / job_id / "result.json").read_text())
    run = results["digits1_van_d2_s0"]["runs"][0]
    assert run["steps_per_epoch"] == 3 and 1 <= run["phase_out_step"] <= 6
    assert results["digits1_plain_d2_s0"]["runs"][0]["phase_out_step"] is None
    final = van_family.collect(results)["final"].set_index("arch")
    assert final.loc["van", "phase_out_step"] == run["phase_out_step"]
    assert np.isnan(final.loc["plain", "phase_out_step"])
    assert final.loc["van", "lr"] == 0.2 and not final.loc["van", "alpha_momentum"]
    summary = van_family.summary({"final": final.reset_index()})
    assert "lr 0.2" in summary and "steps per epoch" in summary
    net = FCNet(4, 2, depth=2, arch="van")
    assert mean_alpha(net) == 0.0 and np.isnan(mean_alpha(FCNet(4, 2, depth=2, arch="plain")))


def _with_phase_out(final: pd.DataFrame, step: float, per_epoch: int = 24) -> pd.DataFrame:
    setting = {"lr": 0.01, "batch_size": 128, "momentum": 0.9, "multiplier_fraction": 0.5}
    setting |= {"alpha_init": 0.0, "multiplier_init": -1.0, "n_epochs": 50}
    setting |= {"alpha_momentum": False, "steps_per_epoch": per_epoch}
    gated = final["arch"].isin(["van", "van_free"])
    return final.assign(**setting, phase_out_step=np.where(gated, step, np.nan))


def test_verdict_not_reproducible_when_phase_out_is_abrupt():
    table = _final(
        {
            ("plain", 2): [0.95, 0.96, 0.95, 0.955],
            ("plain", 30): [0.50, 0.55, 0.52, 0.6],
            ("van", 2): [0.96, 0.96, 0.97, 0.965],
            ("van", 30): [0.50, 0.55, 0.52, 0.6],
            ("resnet", 2): [0.97, 0.97, 0.971, 0.97],
            ("resnet", 30): [0.97, 0.971, 0.97, 0.97],
            ("van_free", 2): [0.97, 0.972, 0.971, 0.97],
            ("van_free", 30): [0.97, 0.969, 0.97, 0.971],
        }
    )

    def verdicts(final: pd.DataFrame) -> dict[str, object]:
        results_ = van_family.claims({"final": final}, np.random.default_rng(0))
        return {c.id: c for c in results_}

    within_first_epoch = verdicts(_with_phase_out(table, step=18))
    degradation = within_first_epoch["van_van_depth_degradation"]
    assert degradation.verdict == NOT_REPRODUCIBLE
    assert degradation.measured["phase_out_step_max"] == 18
    assert "figs. 2 and 5" in degradation.note
    assert within_first_epoch["van_beats_plain"].verdict == NOT_REPRODUCIBLE
    assert within_first_epoch["van_plain_depth_degradation"].verdict == SUPPORTED
    assert within_first_epoch["van_skips_removed"].verdict == SUPPORTED
    # set by the constraint alone (step 88 at lr 0.01): the same verdict after the first epoch
    forced = verdicts(_with_phase_out(table, step=88))
    assert forced["van_van_depth_degradation"].verdict == NOT_REPRODUCIBLE
    # a gradual phase-out (or none recorded) leaves the measured verdict
    gradual = verdicts(_with_phase_out(table, step=2000, per_epoch=390))
    assert gradual["van_van_depth_degradation"].verdict == CONTRADICTED
    assert verdicts(table)["van_van_depth_degradation"].verdict == CONTRADICTED
