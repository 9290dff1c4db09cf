"""Family ``shortcut`` (Liu et al. 2019): the population loss, GD, and the family contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from iterconv.families import shortcut as sc
from iterconv.models import two_layer as tl
from iterconv.pipeline.grid import ParamsError
from iterconv.report.engine import CONTRADICTED, NO_DATA, SUPPORTED

MICRO = {"ks": [9, 16], "trials": 40, "tol": 0.01, "max_steps": 4000, "path_k": 9}


def _random_point(rng, teacher, trials=3):
    p, k = teacher.v.size, teacher.a.size
    return rng.standard_normal((trials, p)) * 1.7, rng.standard_normal((trials, k))


@pytest.fixture
def teacher():
    return tl.make_teacher(k=5, p=3, angle=0.7, a_sum=0.8, a_norm=1.5)


def test_teacher_construction():
    t = tl.make_teacher(k=7, p=5, angle=0.9, a_sum=-0.6, a_norm=2.0)
    assert np.linalg.norm(t.v) == pytest.approx(1.0)
    assert math.acos(t.v @ tl.shortcut(5)) == pytest.approx(0.9)
    assert t.a.sum() == pytest.approx(-0.6)
    assert np.linalg.norm(t.a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="a_norm"):
        tl.make_teacher(k=4, p=3, angle=0.5, a_sum=4.0, a_norm=1.0)


def test_closed_form_matches_monte_carlo(teacher):
    """Loss and gradient of the closed form against sample means of ReLU networks on
    Gaussian patches (autograd for the gradient), within 5 standard errors."""
    rng = np.random.default_rng(0)
    v, a = _random_point(rng, teacher)
    loss = tl.population_loss(v, a, teacher)
    grad_v, grad_a = tl.population_grad(v, a, teacher)
    gen = torch.Generator().manual_seed(0)
    v_t = torch.tensor(v, requires_grad=True)
    a_t = torch.tensor(a, requires_grad=True)
    vs, as_ = torch.tensor(teacher.v), torch.tensor(teacher.a)
    batch_losses, batch_grads = [], []
    for _ in range(20):  # 20 independent batches -> mean and standard error
        z = torch.randn(20000, teacher.a.size, teacher.v.size, generator=gen, dtype=torch.float64)
        y = torch.relu(z @ vs) @ as_  # (N,)
        u = v_t / v_t.norm(dim=-1, keepdim=True)  # (T, p)
        f = (torch.relu(torch.einsum("nkp,tp->tnk", z, u)) * a_t[:, None, :]).sum(-1)
        per_trial = 0.5 * ((f - y) ** 2).mean(-1)  # (T,)
        gv, ga = torch.autograd.grad(per_trial.sum(), (v_t, a_t))
        batch_losses.append(per_trial.detach().numpy())
        batch_grads.append(np.concatenate([gv.numpy(), ga.numpy()], axis=-1))
    closed = np.concatenate([grad_v, grad_a], axis=-1)
    for mc, exact in ((np.array(batch_losses), loss), (np.array(batch_grads), closed)):
        se = mc.std(axis=0, ddof=1) / math.sqrt(len(mc))
        assert np.all(np.abs(mc.mean(axis=0) - exact) <= 5 * se + 1e-9)
    assert np.abs(closed).max() > 0.05  # a non-trivial gradient was compared


def test_gradient_matches_finite_differences(teacher):
    rng = np.random.default_rng(1)
    v, a = _random_point(rng, teacher, trials=2)
    grad_v, grad_a = tl.population_grad(v, a, teacher)
    h = 1e-6
    for which, grad in ((0, grad_v), (1, grad_a)):
        for i in range(grad.shape[1]):
            shifted = []
            for sign in (1, -1):
                point = [v.copy(), a.copy()]
                point[which][:, i] += sign * h
                shifted.append(tl.population_loss(*point, teacher))
            np.testing.assert_allclose((shifted[0] - shifted[1]) / (2 * h), grad[:, i], atol=1e-7)


def test_teacher_is_stationary_with_zero_loss(teacher):
    v = np.stack([teacher.v, 3.0 * teacher.v])  # the loss only sees the direction
    a = np.stack([teacher.a, teacher.a])
    np.testing.assert_allclose(tl.population_loss(v, a, teacher), 0.0, atol=1e-12)
    for grad in tl.population_grad(v, a, teacher):
        np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_spurious_optimum_is_stationary_with_positive_loss(teacher):
    v_bar, a_bar = tl.spurious_optimum(teacher)
    v, a = v_bar[None, :], a_bar[None, :]
    assert tl.population_loss(v, a, teacher)[0] > 0.01
    for grad in tl.population_grad(v, a, teacher):
        np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    # A local minimum when a_bar'a* < 0 (Du et al.): small perturbations raise the loss.
    assert a_bar @ teacher.a < 0
    rng = np.random.default_rng(2)
    dv, da = rng.standard_normal((50, v.size)), rng.standard_normal((50, a.size))
    bumped = tl.population_loss(v + 1e-3 * dv, a + 1e-3 * da, teacher)
    assert np.all(bumped > tl.population_loss(v, a, teacher)[0])


@pytest.mark.parametrize("method", tl.METHODS)
def test_vectorised_trials_equal_single_trials(method):
    teacher = tl.make_teacher(k=9, p=4, angle=1.0, a_sum=1.0, a_norm=1.0)
    cfg = tl.GDConfig(method, warmup_steps=100, max_steps=1500, tol=0.01)
    v0, a0 = tl.initial_points(method, teacher, 6, 8.0, np.random.default_rng(3))
    batch = tl.gradient_descent(cfg, teacher, v0, a0)
    assert len(set(batch["steps"].tolist())) > 1  # trials stopped at different times
    for i in range(6):
        one = tl.gradient_descent(cfg, teacher, v0[i : i + 1], a0[i : i + 1])
        for key in ("v", "a", "steps", "outcome"):
            np.testing.assert_allclose(one[key][0], batch[key][i], rtol=1e-12, atol=1e-14)


def test_normalisation_and_initialisation():
    teacher = tl.make_teacher(k=9, p=4, angle=1.0, a_sum=1.0, a_norm=1.0)
    rng = np.random.default_rng
    a0 = {m: tl.initial_points(m, teacher, 20, 3.0, rng(4)) for m in tl.METHODS}
    assert np.all(np.linalg.norm(a0["ssw"][1], axis=1) <= 3.0)
    np.testing.assert_array_equal(a0["ssw"][1], a0["cnn"][1])  # same a0 for every method
    np.testing.assert_allclose(a0["plain"][0], np.tile(tl.shortcut(4), (20, 1)))  # w0 = 0
    np.testing.assert_allclose(np.linalg.norm(a0["cnn"][0], axis=1), 1.0)
    for method, expect_unit in (("plain", True), ("cnn", False)):
        cfg = tl.GDConfig(method, max_steps=50, tol=1e-12)
        out = tl.gradient_descent(cfg, teacher, *a0[method], record_every=0)
        norms = np.linalg.norm(out["v"], axis=1)
        if expect_unit:  # the ResNet's 1 + w is rescaled to the unit sphere
            np.testing.assert_allclose(norms, 1.0)
        else:  # the CNN's update is orthogonal to v: its norm can only grow
            assert np.all(norms >= 1.0 - 1e-12) and norms.max() > 1.0
    cfg = tl.GDConfig("ssw", eta=0.1, eta_w_warmup=0.001, warmup_steps=10)
    assert (cfg.eta_w(9), cfg.eta_w(10)) == (0.001, 0.1)
    assert tl.GDConfig("plain", warmup_steps=10).eta_w(0) == 0.1


def test_warmup_avoids_the_trap_from_an_adversarial_start():
    teacher = tl.make_teacher(k=16, p=16, angle=math.pi / 3, a_sum=1.0, a_norm=1.0)
    v0 = tl.shortcut(16)[None, :]
    a0 = -8.0 * teacher.a[None, :] / np.linalg.norm(teacher.a)
    outcome = {
        m: tl.gradient_descent(tl.GDConfig(m, tol=0.01), teacher, v0, a0)["outcome"][0]
        for m in ("ssw", "plain")
    }
    assert outcome == {"ssw": 1, "plain": -1}


def test_expand_job_ids_and_configs():
    jobs = sc.expand(MICRO)
    assert list(jobs) == [
        f"shortcut_k{k}_{m}_{ball}_s0"
        for k in (9, 16)
        for m in ("ssw", "plain", "cnn")
        for ball in ("theory", "calibrated")
    ] + ["shortcut_path_k9_ssw_s0", "shortcut_path_k9_plain_s0"]
    assert json.loads(json.dumps(jobs)) == jobs
    assert jobs["shortcut_k16_cnn_theory_s0"]["trials"] == 40
    assert jobs["shortcut_path_k9_ssw_s0"]["trials"] == 1
    default = sc.expand({})
    assert len(default) == 7 * 3 * 2 + 2 and "shortcut_k100_plain_calibrated_s0" in default
    one = {"ks": [25], "methods": ["cnn"], "paths": False, "seed": 3, "sensitivity": []}
    assert list(sc.expand(one)) == ["shortcut_k25_cnn_theory_s3"]
    assert list(sc.expand({**one, "ball": "calibrated", "sensitivity": ["calibrated"]})) == [
        "shortcut_k25_cnn_calibrated_s3"
    ]
    assert sc.datasets(jobs["shortcut_k9_ssw_theory_s0"]) == []


def test_both_balls_recorded_with_their_radii():
    jobs = sc.expand({**MICRO, "a_sum": 2.0, "a_norm": 1.5})
    for k in (9, 16):
        for m in ("ssw", "plain", "cnn"):
            theory = jobs[f"shortcut_k{k}_{m}_theory_s0"]
            calibrated = jobs[f"shortcut_k{k}_{m}_calibrated_s0"]
            assert (theory["ball"], calibrated["ball"]) == ("theory", "calibrated")
            teacher = tl.make_teacher(k, 16, math.pi / 3, 2.0, 1.5)
            assert theory["a0_radius"] == pytest.approx(abs(teacher.a.sum()) / math.sqrt(k))
            assert theory["a0_radius"] == pytest.approx(tl.theory_radius(teacher))
            assert calibrated["a0_radius"] == 8.0  # the calibrated radius, as before
    assert sc.expand({"a0_radius": 4.0})["shortcut_k16_plain_calibrated_s0"]["a0_radius"] == 4.0
    # Figure 5 keeps its start on the calibrated ball's boundary.
    assert jobs["shortcut_path_k9_plain_s0"]["a0_radius"] == 8.0


def test_family_run_accepts_the_jobs_of_both_balls():
    from iterconv.families.cli import check_job_config

    for config in sc.expand(MICRO).values():
        check_job_config("shortcut", sc, config)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"kk": [16]}, "families.shortcut.kk"),
        ({"ks": []}, "families.shortcut.ks"),
        ({"ks": [1]}, "families.shortcut.ks[0]"),
        ({"ks": [16, 16]}, "families.shortcut.ks"),
        ({"methods": ["resnet"]}, "families.shortcut.methods"),
        ({"trials": 0}, "families.shortcut.trials"),
        ({"eta": -0.1}, "families.shortcut.eta"),
        ({"eta": 0.2, "ks": [100]}, "families.shortcut.eta"),
        ({"angle": 4.0}, "families.shortcut.angle"),
        ({"tol": "small"}, "families.shortcut.tol"),
        ({"paths": "yes"}, "families.shortcut.paths"),
        ({"a_sum": 10.0, "a_norm": 1.0}, "families.shortcut.a_norm"),
        ({"seed": True}, "families.shortcut.seed"),
        ({"ball": "paper"}, "families.shortcut.ball"),
        ({"ball": ["theory"]}, "families.shortcut.ball"),
        ({"sensitivity": ["huge"]}, "families.shortcut.sensitivity"),
        ({"sensitivity": "calibrated"}, "families.shortcut.sensitivity"),
        ({"a_sum": 0.0}, "families.shortcut.a_sum"),
    ],
)
def test_expand_rejects_malformed_specs(spec, key):
    with pytest.raises(ParamsError, match=key.replace("[", r"\[").replace("]", r"\]")):
        sc.expand(spec)


def test_micro_end_to_end(tmp_path):
    results = {}
    for job_id, config in sc.expand(MICRO).items():
        sc.run(config, tmp_path / job_id, data={})
        results[job_id] = json.loads((tmp_path / job_id / "result.json").read_text())
        assert results[job_id]["n_global"] + results[job_id]["n_spurious"] <= config["trials"]
    tables = sc.collect(results)
    for name, frame in tables.items():  # as the framework hands them over: via CSV
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    tables = {name: pd.read_csv(tmp_path / f"{name}.csv") for name in tables}
    success = tables["success"]
    assert len(success) == 12 and set(tables["paths"]["method"]) == {"ssw", "plain"}
    assert set(success["ball"]) == {"theory", "calibrated"}
    assert (success.loc[success["method"] == "ssw", "success_rate"] == 1.0).all()
    assert "| ResNet w/ SSW (theory ball) |" in sc.table1_markdown(success)
    summary = sc.summary(tables)
    theory_part, calibrated_part = summary.split("Sensitivity analysis")
    assert "| ResNet w/o SSW (theory ball) |" in theory_part and "calibrated" not in theory_part
    assert sc.CALIBRATED_LABEL in calibrated_part
    assert "| ResNet w/o SSW (calibrated ball) |" in calibrated_part
    for _caption, build in sc.FIGURES.values():
        fig = build(tables)
        assert isinstance(fig, Figure) and fig.axes
        fig.clear()
    checked = {c.id: c for c in sc.claims(tables, np.random.default_rng(0))}
    assert checked["shortcut_ssw_always"].verdict == SUPPORTED
    assert checked["shortcut_ssw_always_calibrated"].verdict == SUPPORTED
    assert checked["shortcut_paths"].verdict == SUPPORTED
    assert "independent evidence" in checked["shortcut_plain_k_trend"].note
    assert sc.CALIBRATED_LABEL in checked["shortcut_plain_k_trend_calibrated"].note


def test_empty_tables_give_placeholders_and_no_data():
    tables = sc.collect({})
    for _caption, build in sc.FIGURES.values():
        build(tables).clear()
        build({}).clear()
    assert {c.verdict for c in sc.claims(tables, np.random.default_rng(0))} == {NO_DATA}


def test_claims_can_be_contradicted():
    rows = [
        {"k": k, "method": m, "ball": "theory", "trials": 1000, "n_global": n}
        for k in (16, 100)
        for m, n in (("ssw", 900 if k == 16 else 700), ("plain", 990), ("cnn", 995))
    ]
    claims = sc.claims({"success": pd.DataFrame(rows)}, np.random.default_rng(0))
    verdicts = {c.id: c.verdict for c in claims}
    assert verdicts["shortcut_ssw_always"] == CONTRADICTED
    assert verdicts["shortcut_ssw_beats_plain"] == CONTRADICTED
    assert verdicts["shortcut_resnet_beats_cnn"] == CONTRADICTED
    assert verdicts["shortcut_paths"] == NO_DATA
