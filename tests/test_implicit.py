"""The implicit residual layer (Reshniak & Webster 2019) and the ``implicit`` experiment family."""

import json
import math
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from iterconv.families import implicit as fam
from iterconv.models.fixed_point import FLOAT32_FLOOR, fixed_point, float64_needed
from iterconv.models.implicit import (
    ImplicitResNet,
    SolverSettings,
    SolveStats,
    VectorField,
    convergence_penalty,
    frozen_running_stats,
    implicit_residual,
    implicit_step,
    perturbation_penalty,
)
from iterconv.pipeline.grid import ParamsError
from iterconv.report.engine import CONTRADICTED, INCONCLUSIVE, NO_DATA, SUPPORTED

TIGHT = SolverSettings(tol=1e-13, max_iter=1000, backward_tol=1e-13, backward_max_iter=1000)


def _mlp(width: int, scale: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    f = nn.Sequential(nn.Linear(width, 16), nn.Tanh(), nn.Linear(16, width)).double()
    with torch.no_grad():
        f[2].weight.mul_(scale)
    return f


def _unrolled(f: nn.Module, x: torch.Tensor, theta: float, steps: int = 400) -> torch.Tensor:
    """Reference: autograd through the plain fixed-point iteration, run to convergence."""
    y = x + f(x)
    for _ in range(steps):
        y = x + (1 - theta) * f(x) + theta * f(y)
    return y


@pytest.mark.parametrize("method", ["anderson", "picard"])
@pytest.mark.parametrize("theta", [0.3, 0.5, 1.0])
def test_implicit_gradient_matches_unrolled_solver(theta, method):
    f = _mlp(3, 0.5)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, dtype=torch.float64)
    params = list(f.parameters())
    stats = SolveStats()
    y = implicit_residual(f, x, theta, replace(TIGHT, method=method), stats)
    got = torch.autograd.grad((w * y).sum(), [x, *params])
    ref_y = _unrolled(f, x, theta)
    want = torch.autograd.grad((w * ref_y).sum(), [x, *params])
    torch.testing.assert_close(y, ref_y, rtol=0, atol=1e-10)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
    assert stats.backward_calls == 1 and stats.backward_failures == 0
    assert stats.forward_failures == 0


def test_forward_residual_below_tolerance_for_conv_block_with_batchnorm():
    torch.manual_seed(1)
    f = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).double()
    with torch.no_grad():
        f[2].weight.mul_(0.5)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    settings = SolverSettings(tol=1e-8)
    with torch.no_grad():
        y = implicit_residual(f, x, 0.5, settings)
        with frozen_running_stats(f):
            residual = (y - x - 0.5 * f(x) - 0.5 * f(y)).abs().max()
    assert residual < 1e-8
    assert y.shape == x.shape


def test_only_the_first_call_updates_batchnorm_statistics():
    torch.manual_seed(2)
    f = nn.Sequential(nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 3))
    x = torch.randn(8, 3) * 3 + 1
    stats = SolveStats()
    implicit_residual(f, x, 0.5, SolverSettings(), stats).sum().backward()
    assert stats.forward_iterations > 1  # f was called several times ...
    assert int(f[0].num_batches_tracked) == 1  # ... but updated the statistics once
    expected = 0.9 * torch.zeros(3) + 0.1 * x.mean(0)
    torch.testing.assert_close(f[0].running_mean, expected)


def test_theta_zero_is_exactly_the_explicit_resnet():
    f = _mlp(4, 1.0)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    stats = SolveStats()
    y = implicit_residual(f, x, 0.0, TIGHT, stats)
    got = torch.autograd.grad(y.square().sum(), [x, *f.parameters()])
    y_ref = x + f(x)
    want = torch.autograd.grad(y_ref.square().sum(), [x, *f.parameters()])
    assert torch.equal(y, y_ref)
    for g, r in zip(got, want, strict=True):
        assert torch.equal(g, r)
    assert stats.forward_calls == 0 and stats.backward_calls == 0


def test_non_convergence_is_reported_not_silent():
    f = _mlp(3, 8.0)  # theta * Lip(f) far above 1: the fixed-point iteration cannot contract
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    stats = SolveStats()
    settings = SolverSettings(max_iter=5, backward_max_iter=3)
    implicit_residual(f, x, 1.0, settings, stats).sum().backward()
    assert stats.forward_failures == 1 and stats.forward_max_residual > settings.tol
    assert stats.forward_iterations <= 5
    assert stats.backward_fallbacks == 1  # Neumann failed, GMRES was tried
    with pytest.warns(RuntimeWarning, match="did not converge"):
        implicit_residual(f, x.detach(), 1.0, settings)


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_gmres_fallback_recovers_the_gradient_when_neumann_diverges(method):
    # Linear f with theta * W of spectral radius 1.5: the Neumann series diverges, but
    # I - theta W is invertible, so the implicit gradient is still well defined.
    w = torch.tensor([[1.5, 0.0], [0.0, -0.4]], dtype=torch.float64)
    f = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(w)
    x = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    stats = SolveStats()
    settings = SolverSettings(max_iter=3, backward_max_iter=20, method=method)
    y = implicit_residual(f, x, 1.0, settings, stats)
    (gx,) = torch.autograd.grad((g * y).sum(), [x])
    # y = x + W y  =>  dy/dx = (I - W)^{-1}, dL/dx = g (I - W)^{-1}
    want = g @ torch.linalg.inv(torch.eye(2, dtype=torch.float64) - w)
    torch.testing.assert_close(gx, want, rtol=1e-6, atol=1e-8)
    assert stats.backward_failures == 0
    # the Neumann series diverges and GMRES takes over; Anderson, GMRES-like on a linear map
    # of dimension 2, solves it directly
    assert stats.backward_fallbacks == (1 if method == "picard" else 0)


def _slow_map(width: int = 6, rate: float = 0.99) -> tuple[nn.Module, torch.Tensor]:
    """A contraction with Lipschitz constant ``rate``, ``tanh(rate Q y)`` (Q orthogonal), and
    inputs small enough for tanh to be nearly linear: plain iteration contracts by about
    ``rate`` per step."""
    torch.manual_seed(4)
    q = torch.linalg.qr(torch.randn(width, width, dtype=torch.float64))[0]
    f = nn.Linear(width, width, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(rate * q)
    return nn.Sequential(f, nn.Tanh()), 0.1 * torch.randn(5, width, dtype=torch.float64)


def test_anderson_reaches_tolerance_where_plain_iteration_hits_the_cap():
    f, x = _slow_map()
    settings = SolverSettings(tol=1e-10, max_iter=100, method="anderson")
    plain, anderson = SolveStats(), SolveStats()
    with torch.no_grad():
        _, res_p = implicit_step(f, x, 1.0, replace(settings, method="picard"), plain)
        y_a, res_a = implicit_step(f, x, 1.0, settings, anderson)
        y_ref = implicit_residual(f, x, 1.0, replace(settings, method="picard", max_iter=5000))
    assert plain.forward_failures == 1 and plain.forward_iterations == 100
    assert float(res_p.max()) > 1e-10
    assert anderson.forward_failures == 0 and anderson.forward_iterations < 50
    assert float(res_a.max()) <= 1e-10
    torch.testing.assert_close(y_a, y_ref, rtol=0, atol=1e-8)  # the same fixed point
    # the solver alone, on the map of the layer
    g = lambda y: x + f(y)  # noqa: E731
    out = fixed_point(g, x + f(x), 1e-10, 100, "anderson", history=5)
    assert out.converged and out.iterations == anderson.forward_iterations
    assert fixed_point(g, x + f(x), 1e-10, 100, "picard").converged is False


def test_anderson_keeps_converging_on_a_relu_layer_with_kinks():
    # A ReLU vector field close to the edge of contraction: Anderson's safeguards must keep it
    # at least as reliable as plain iteration.
    torch.manual_seed(5)
    layer = VectorField(8, 1.0).double()
    with torch.no_grad():
        w = torch.randn(8, 8, dtype=torch.float64)
        layer.linear.weight.copy_(0.9 * w / torch.linalg.matrix_norm(w, 2))
    x = torch.randn(40, 8, dtype=torch.float64)
    base = x
    g = lambda y: base + layer(y)  # noqa: E731
    plain = fixed_point(g, x + layer(x), 1e-9, 2000, "picard")
    anderson = fixed_point(g, x + layer(x), 1e-9, 2000, "anderson")
    assert plain.converged and anderson.converged
    assert anderson.iterations < plain.iterations
    torch.testing.assert_close(anderson.y, plain.y, rtol=0, atol=1e-7)


def test_a_failed_solve_is_counted_recorded_and_flagged_per_sample():
    f, x = _slow_map()
    stats = SolveStats()
    settings = SolverSettings(tol=1e-10, max_iter=3)
    y, residual = implicit_step(f, x.requires_grad_(True), 1.0, settings, stats)
    y.sum().backward()
    assert stats.forward_calls == 1 and stats.forward_failures == 1
    assert stats.forward_residuals == [pytest.approx(float(residual.max()))]
    assert stats.forward_failure_fraction == 1.0 and residual.shape == (5,)
    assert (residual > settings.tol).all()
    # the network flags the samples that some layer did not solve
    torch.manual_seed(0)
    net = ImplicitResNet(1, 1, 4, 2, 1.0, 4.0, settings).double()
    states, res = net.solve(torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None])
    assert len(states) == 3 and res.shape == (7,)
    assert not net.converged(res).all()
    assert net.stats.forward_failures >= 1 and len(net.stats.forward_residuals) == 2


def test_convergence_penalty_vanishes_for_fast_contraction_and_not_for_slow():
    x = torch.randn(5, 3, dtype=torch.float64)
    fast, slow = _mlp(3, 0.05), _mlp(3, 3.0)
    assert float(convergence_penalty(fast, x, 0.5, rate=0.5).detach()) == 0.0
    assert float(convergence_penalty(slow, x, 1.0, rate=0.1).detach()) > 0.0
    assert float(convergence_penalty(slow, x, 0.0, rate=0.1).detach()) == 0.0


def test_convergence_penalty_over_the_whole_solve_stops_at_the_tolerance():
    f, x = _slow_map(rate=0.9)
    settings = SolverSettings(tol=1e-6, max_iter=500)
    y = x + f(x)
    steps = 1  # plain steps from y^1 until the step is within tolerance (the solver's test)
    with torch.no_grad():
        while (x + f(y) - y).abs().amax() > settings.tol:
            y, steps = x + f(y), steps + 1

    def penalty(iterations: int | None, s: SolverSettings = settings) -> float:
        return float(convergence_penalty(f, x, 1.0, 0.5, iterations, s).detach())

    assert penalty(None) == pytest.approx(penalty(steps))
    assert penalty(None) > penalty(2)  # more terms
    assert penalty(None, replace(settings, max_iter=3)) == pytest.approx(penalty(3))
    convergence_penalty(f, x, 1.0, 0.5, None, settings).backward()  # through every iterate


def test_antisymmetric_vector_field_and_its_jacobian():
    torch.manual_seed(6)
    layer = VectorField(4, 0.5, antisymmetric=True).double()
    torch.testing.assert_close(layer.weight, -layer.weight.T)
    z = torch.randn(3, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer, z).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    torch.testing.assert_close(layer.jacobian(z), jac)
    net = ImplicitResNet(1, 1, 4, 2, 0.5, 1.0, antisymmetric=True)
    assert all(layer.antisymmetric for layer in net.layers)


def test_float64_only_below_float32_resolution():
    assert not float64_needed(SolverSettings(tol=1e-4, backward_tol=1e-5))
    assert float64_needed(SolverSettings(tol=1e-4, backward_tol=FLOAT32_FLOOR / 2))
    assert float64_needed(SolverSettings(tol=FLOAT32_FLOOR / 2, backward_tol=1e-4))
    with pytest.raises(ValueError, match="method"):
        SolverSettings(method="newton")


def test_perturbation_penalty_counts_only_growth_beyond_damping():
    clean = [torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1)]
    growing = [[torch.full((2, 1), 1.0), torch.full((2, 1), 2.0), torch.full((2, 1), 2.0)]]
    # distances 1, 2, 2: with beta = 1 only the first step grows (by 1)
    assert float(perturbation_penalty(clean, growing, 1.0)) == pytest.approx(1.0)
    # beta = 0.5 also penalises the second step (2 - 0.5 * 2 = 1), first: 2 - 0.5 = 1.5
    assert float(perturbation_penalty(clean, growing, 0.5)) == pytest.approx(2.5)
    assert float(perturbation_penalty(clean, [], 1.0)) == 0.0


def test_amplification_matches_finite_differences():
    torch.manual_seed(3)
    net = ImplicitResNet(1, 1, 2, 2, 0.5, 1.0, TIGHT).double()
    x = torch.tensor([[0.3]], dtype=torch.float64)
    states = net.trajectory(x)
    amp = net.amplification(states)
    jac = torch.autograd.functional.jacobian(
        lambda z: implicit_residual(net.layers[0], z, 0.5, TIGHT), states[0]
    )[0, :, 0, :]
    assert float(amp[0, 0]) == pytest.approx(float(torch.linalg.eigvals(jac).abs().max()))


# --- the family ----------------------------------------------------------------------------

MICRO = {
    "function": {
        "thetas": [0, 1],
        "depths": [2],
        "seeds": [0, 1],
        "epochs": 6,
        "n_train": 8,
        "n_val": 10,
        "log_every": 2,
    },
    "spirals": {
        "thetas": [0.5],
        "noise": [0, 0.1],
        "depths": [2],
        "n_points": 32,
        "epochs": 4,
        "eval_noise": [0, 0.2],
        "eval_draws": 2,
        "grid": 5,
        "log_every": 2,
    },
}


def test_expand_gives_the_expected_job_ids_and_defaults():
    jobs = fam.expand(MICRO)
    assert sorted(jobs) == [
        "fn_t0_d2_s0",
        "fn_t0_d2_s1",
        "fn_t1_d2_s0",
        "fn_t1_d2_s1",
        "sp_t0.5_n0.1_d2_s0",
        "sp_t0.5_n0_d2_s0",
    ]
    cfg = jobs["fn_t1_d2_s1"]
    assert (cfg["example"], cfg["theta"], cfg["depth"], cfg["seed"]) == ("function", 1.0, 2, 1)
    assert cfg["horizon"] == fam.FunctionSpec().horizon
    json.dumps(jobs)
    assert fam.datasets(cfg) == []
    assert len(fam.expand({"spirals": {}})) == len(fam.SpiralsSpec().thetas) * len(
        fam.SpiralsSpec().noise
    )


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({}, "families.implicit"),
        ({"mnist": {}}, "families.implicit.mnist"),
        ({"function": {"thetaz": [0]}}, "families.implicit.function.thetaz"),
        ({"function": {"thetas": [0, 1.5]}}, "families.implicit.function.thetas"),
        ({"function": {"thetas": []}}, "families.implicit.function.thetas"),
        ({"function": {"depths": [2, 2]}}, "families.implicit.function.depths"),
        ({"function": {"depths": [0]}}, "families.implicit.function.depths"),
        ({"function": {"epochs": 2.5}}, "families.implicit.function.epochs"),
        ({"function": {"lr": -1}}, "families.implicit.function.lr"),
        ({"function": {"rate": 2}}, "families.implicit.function.rate"),
        ({"spirals": {"noise": "0.1"}}, "families.implicit.spirals.noise"),
        ({"spirals": {"width": 1}}, "families.implicit.spirals.width"),
        ({"spirals": [1, 2]}, "families.implicit.spirals"),
        ({"function": {"method": "newton"}}, "families.implicit.function.method"),
        ({"function": {"antisymmetric": 1}}, "families.implicit.function.antisymmetric"),
        ({"function": {"rate_iterations": -1}}, "families.implicit.function.rate_iterations"),
        ({"spirals": {"history": 0}}, "families.implicit.spirals.history"),
    ],
)
def test_expand_rejects_malformed_specs_naming_the_key(spec, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        fam.expand(spec)


@pytest.fixture(scope="module")
def micro_tables(tmp_path_factory):
    out = tmp_path_factory.mktemp("implicit")
    results = {}
    for job_id, cfg in fam.expand(MICRO).items():
        fam.run(cfg, out / job_id, data={})
        results[job_id] = json.loads((out / job_id / "result.json").read_text())
    return fam.collect(results), results


def test_run_writes_complete_deterministic_results(micro_tables, tmp_path):
    _tables, results = micro_tables
    res = results["fn_t1_d2_s0"]
    assert res["config"]["theta"] == 1.0 and len(res["curve"]) == 4
    assert math.isfinite(res["val_loss"]) and res["fwd_iters"] >= 1
    assert res["fwd_fail"] == 0 and res["eval_fail"] == 0 and res["amp_points"] == 1
    assert res["fwd_residual"] <= res["config"]["tol"]
    assert res["fwd_max_iters"] < res["config"]["max_iter"]  # the cap did not bind
    assert res["float64"]  # the default backward tolerance is below float32's resolution
    cfg = fam.expand(MICRO)["fn_t1_d2_s0"]
    fam.run(cfg, tmp_path / "again", data={})
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["curve"] == res["curve"] and again["fit"] == res["fit"]


def test_collect_figures_and_claims_on_micro(micro_tables):
    tables, _ = micro_tables
    assert set(tables) == set(fam.figs.TABLES)
    assert len(tables["fn_runs"]) == 4 and len(tables["sp_runs"]) == 2
    assert len(tables["sp_robustness"]) == 4 and len(tables["sp_regions"]) == 2 * 25
    for name, (caption, build) in fam.FIGURES.items():
        assert name.startswith("implicit_") and caption
        fig = build(tables)
        assert fig.axes
        plt.close(fig)
    results = fam.claims(tables, np.random.default_rng(0))
    verdicts = {c.id: c.verdict for c in results}
    assert set(verdicts.values()) <= {SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA}
    assert verdicts["fn_explicit_best_train_shallow"] != NO_DATA  # 2 seeds per group
    assert verdicts["sp_noise_training_more_robust"] == NO_DATA  # one seed per group
    assert all(c.paper_reference.startswith("Reshniak & Webster 2019") for c in results)


def test_failed_solves_are_counted_and_kept_out_of_the_measures(tmp_path):
    spec = {"thetas": [1], "depths": [2], "seeds": [0], "epochs": 2, "n_train": 8}
    spec |= {"n_val": 10, "log_every": 1, "max_iter": 1}  # one evaluation: never solved
    ((job_id, cfg),) = fam.expand({"function": spec}).items()
    fam.run(cfg, tmp_path, data={})
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["fwd_fail"] == 1 and res["eval_fail"] == 1 and res["amp_points"] == 0
    assert math.isnan(res["amplification"])  # no fixed point to take a Jacobian at
    assert all(r["fwd_fail"] == 1 and r["fwd_residual"] > cfg["tol"] for r in res["curve"])
    tables = fam.collect({job_id: res})
    assert tables["fn_runs"].loc[0, "eval_fail"] == 1


def test_claims_leave_out_jobs_with_unsolved_points():
    rows = [
        {"theta": t, "depth": d, "seed": s, "train_loss": 0.1 + t, "val_loss": 0.2 + t}
        | {"amplification": 1.0 + t, "amp_points": 1.0, "fwd_iters": 5.0, "bwd_iters": 5.0}
        | {"fwd_fail": 0.0, "bwd_fail": 0.0, "eval_fail": 0.5 if (t, s) == (1.0, 2) else 0.0}
        for t in (0.0, 1.0)
        for d in (2, 8)
        for s in (0, 1, 2)
    ]
    runs = pd.DataFrame(rows)
    out = {c.id: c for c in fam.claims({"fn_runs": runs}, np.random.default_rng(0))}
    train = out["fn_explicit_best_train_shallow"]
    assert train.n["runs"] == 5 and train.n["runs_excluded_unsolved"] == 1
    assert train.measured["mean_eval_fail"] == pytest.approx(0.5 / 6, abs=1e-4)
    conv = out["implicit_solves_converge"]
    # the solver claim covers the implicit jobs of both depths
    assert conv.measured["mean_eval_fail"] == pytest.approx(1 / 6, abs=1e-4)
    assert conv.measured["mean_failure_fraction"] == pytest.approx(1 / 6, abs=1e-4)


def test_figures_and_claims_cope_with_missing_tables():
    for _caption, build in fam.FIGURES.values():
        plt.close(build({}))
    assert {c.verdict for c in fam.claims({}, np.random.default_rng(0))} == {NO_DATA}
