import json

import pytest
import torch
import torch.nn.functional as F
from test_train import synthetic, tiny_config

from iterconv.models import ModelConfig, ResNet, spectral
from iterconv.models.resnet import Block
from iterconv.models.spectral import (
    ConvOperator,
    bn_scale,
    certified_norm,
    gram_norm_bound,
    power_iteration_sigma,
    record_bounds,
    residual_operators,
)
from iterconv.train.checkpoint import load_run_model
from iterconv.train.loop import train_run

C, S = 3, 6  # tiny block: the operators are 108 x 108 matrices


def randomised_block(variant="icr", mu=0.95, seed=0) -> Block:
    torch.manual_seed(seed)
    block = Block(C, S, ModelConfig(variant=variant, mu=mu))
    with torch.no_grad():
        for bn in (block.f.bn1, block.f.bn2):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.2, 3.0)
        for conv in (block.f.conv1, block.f.conv2):
            conv.weight.normal_(0, 0.5)
    return block.eval()


def dense(op: ConvOperator, size: int = S) -> torch.Tensor:
    c = op.weight.shape[1]
    basis = torch.eye(c * size * size, dtype=op.weight.dtype).view(-1, c, size, size)
    return op.apply(basis).reshape(c * size * size, -1).T


def exact_norm(op: ConvOperator, size: int) -> float:
    """||op||_2 on (C, size, size) by SVD of its dense float64 matrix."""
    return float(torch.linalg.matrix_norm(dense(op.double(), size), ord=2))


def exact_bound(block: Block) -> float:
    """L_hat(f) from the exact norms of its two operators (the bound's composition)."""
    first, second = residual_operators(block.f)
    return exact_norm(first, block.sn.size) * exact_norm(second, block.sn.size)


def test_power_iteration_converges_to_exact_norm():
    block = randomised_block()
    f = block.f
    pre, post = bn_scale(f.bn1).detach().double(), bn_scale(f.bn2).detach().double()
    op = ConvOperator(f.conv1.weight.detach().double(), pre, post)
    exact = torch.linalg.matrix_norm(dense(op), ord=2)
    v = torch.randn(1, C, S, S, dtype=torch.float64)
    sigma, _ = power_iteration_sigma(op, v, steps=3000)  # top singular values lie close here
    torch.testing.assert_close(sigma, exact, rtol=1e-6, atol=0)
    assert power_iteration_sigma(op, v, steps=1)[0] <= exact  # estimates approach from below
    # the adjoint really is the transpose of the dense matrix
    u = torch.randn(1, C, S, S, dtype=torch.float64)
    torch.testing.assert_close(op.adjoint(u).flatten(), dense(op).T @ u.flatten())


@pytest.mark.parametrize("channels,size", [(3, 6), (4, 8), (8, 4), (2, 11), (5, 1), (3, 2)])
def test_certified_norm_bounds_the_exact_norm(channels, size):
    gen = torch.Generator().manual_seed(channels * 100 + size)
    for _ in range(3):
        w = torch.randn(channels, channels, 3, 3, generator=gen, dtype=torch.float64)
        pre = torch.rand(channels, generator=gen, dtype=torch.float64) + 0.2
        post = torch.rand(channels, generator=gen, dtype=torch.float64) + 0.2
        for op in (ConvOperator(w, pre, post), ConvOperator(w, None, None)):
            exact = exact_norm(op, size)
            assert certified_norm(op, size, dense_limit=10**6) == pytest.approx(exact, rel=1e-12)
            fft = certified_norm(op, size, dense_limit=0)  # circular on max(size+1, 3)^2
            assert exact <= fft
            assert size < 4 or fft < 1.5 * exact  # loose only on tiny inputs (border effect)


def test_gram_iteration_bounds_the_largest_singular_value():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(20, 6, 6, generator=gen, dtype=torch.complex128)
    exact = torch.linalg.matrix_norm(m, ord=2)
    bound = gram_norm_bound(m)
    assert torch.all(bound >= exact * (1 - 1e-13))
    torch.testing.assert_close(bound, exact, rtol=1e-9, atol=0)  # distinct top values: tight
    eye = torch.eye(4, dtype=torch.float64)  # 4-fold top value: loosest case, 4^(1/8192)
    assert 1.0 <= float(gram_norm_bound(eye)) <= 4 ** (1 / 2**13) * (1 + 1e-12)
    assert float(gram_norm_bound(torch.zeros(3, 3, dtype=torch.float64))) < 1e-30


def test_circular_norm_on_the_same_size_is_no_bound():
    """Why the FFT bound uses a larger torus: on H x W the circular convolution can be smaller."""
    w = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    w[0, 0, 1, 0], w[0, 0, 1, 2] = -1.0, 1.0  # horizontal difference, on 2 x 2 inputs
    basis = torch.eye(4, dtype=torch.float64).view(4, 1, 2, 2)
    circular = F.conv2d(F.pad(basis, (1, 1, 1, 1), mode="circular"), w).reshape(4, 4)
    assert float(torch.linalg.matrix_norm(circular, ord=2)) == 0.0
    op = ConvOperator(w, None, None)
    assert exact_norm(op, 2) == pytest.approx(1.0)
    assert certified_norm(op, 2, dense_limit=0) >= 1.0


def test_eval_bound_is_certified_training_bound_is_estimate():
    block = randomised_block()
    exact = exact_bound(block)
    with torch.no_grad():
        certified = float(block.sn(block.f, update=False))
    assert exact <= certified <= exact * (1 + 2 * spectral.MARGIN)
    estimate = float(block.train().sn(block.f, update=True).detach())
    assert estimate < exact  # one power step from a random vector: a lower bound


def test_bound_dominates_jacobian_norm():
    block = randomised_block()
    with torch.no_grad():
        bound = float(block.sn(block.f, update=False))
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        z = torch.randn(1, C, S, S, generator=gen) * 3
        jac = torch.autograd.functional.jacobian(block.f, z).reshape(C * S * S, -1)
        assert torch.linalg.matrix_norm(jac, ord=2) <= bound


@pytest.mark.parametrize("mu", [0.5, 0.95])
def test_normalised_residual_is_mu_lipschitz(mu):
    block = randomised_block(mu=mu)
    assert exact_bound(block) > mu  # normalisation is active
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(200):
            a = torch.randn(1, C, S, S, generator=gen)
            b = a + 0.1 * torch.randn(1, C, S, S, generator=gen)
            ratio = (block.residual(a) - block.residual(b)).norm() / (a - b).norm()
            assert ratio <= mu * (1 + 1e-4)


def test_spectral_bound_updates_only_in_training():
    block = randomised_block()
    before = block.sn.v_conv1.clone()
    block.eval()(torch.randn(2, C, S, S), None)
    assert torch.equal(before, block.sn.v_conv1)
    block.train()(torch.randn(2, C, S, S), None)
    assert not torch.equal(before, block.sn.v_conv1)


def test_eval_bound_follows_weight_changes():
    block = randomised_block()
    with torch.no_grad():
        first = float(block.sn(block.f, update=False))
        block.f.conv2.weight.mul_(2.0)
        assert float(block.sn(block.f, update=False)) == pytest.approx(2 * first, rel=1e-5)


def test_gradient_flows_through_the_bound():
    block = randomised_block().train()
    block.residual(torch.randn(4, C, S, S)).sum().backward()
    assert block.f.bn1.weight.grad is not None and block.f.conv2.weight.grad.abs().sum() > 0


def test_eval_under_inference_mode_then_autograd():
    """The cached bound made under inference mode can divide a tracked tensor later."""
    block = randomised_block()
    with torch.inference_mode():
        block.residual(torch.randn(1, C, S, S))
    z = torch.randn(1, C, S, S, requires_grad=True)
    block.residual(z).sum().backward()
    assert z.grad is not None


def test_recurrent_pcr_stage_converges():
    torch.manual_seed(0)
    model = ResNet(
        ModelConfig(width=4, blocks=4, variant="pcr", mu=0.8, recurrent_init=True, image_size=8)
    )
    stage = model.stages[0]
    with torch.no_grad():  # make the residual function large so normalisation binds
        for p in stage.blocks[0].f.parameters():
            p.mul_(3.0)
    model.eval()
    block = stage.blocks[0]
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        zs = [x]
        for _ in range(40):
            zs.append(block(zs[-1], x))
    diffs = torch.stack([(b - a).norm() for a, b in zip(zs, zs[1:])])
    above_noise = diffs[:-1] > 1e-5  # float32 round-off floor near 1e-7
    assert above_noise.sum() >= 4
    ratio = diffs[1:][above_noise] / diffs[:-1][above_noise]
    assert torch.all(ratio <= 0.8 * (1 + 1e-3))  # geometric decay (Banach)
    assert diffs[-1] < 1e-5 * diffs[0]


def test_record_bounds_updates_weights_not_model():
    torch.manual_seed(0)
    model = ResNet(ModelConfig(in_channels=1, image_size=8, width=4, stages=2, blocks=2))
    assert record_bounds(model, model.state_dict()) == {}  # no normalised blocks
    model = ResNet(
        ModelConfig(in_channels=1, image_size=8, width=4, stages=2, blocks=2, variant="icr")
    )
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    record = record_bounds(model, weights)
    assert all(torch.equal(v, untouched[k]) for k, v in model.state_dict().items())
    assert set(record["blocks"]) == {f"stages.{s}.blocks.{b}" for s in (0, 1) for b in (0, 1)}
    for name, rec in record["blocks"].items():
        block = model.get_submodule(name)
        assert rec["residual"] <= spectral.POWER_TOL
        assert rec["training_estimate"] <= rec["lower"] * (1 + 1e-6)  # converging raises it
        assert rec["lower"] <= exact_bound(block) * (1 + 1e-9) <= rec["certified"]
        assert float(weights[f"{name}.sn.bound"]) == rec["certified"]
        assert rec["normalised"] == pytest.approx(min(rec["certified"], 0.95), abs=1e-12)


# -- a briefly trained network honours mu ----------------------------------------------------


@pytest.fixture(scope="module", params=["icr", "pcr"])
def trained_run(request, tmp_path_factory):
    cfg = tiny_config(
        variant=request.param, blocks=3, epochs=3, lr=0.1, milestones=(2,), lr_factor=10.0, seed=1
    )
    out = tmp_path_factory.mktemp(request.param)
    metrics = train_run(cfg, synthetic(), out, torch.device("cpu"), log=lambda msg: None)
    return out, metrics


def normalised_blocks(model: ResNet) -> dict[str, Block]:
    return {
        f"stages.{s}.blocks.{b}": block
        for s, stage in enumerate(model.stages)
        for b, block in enumerate(stage.blocks)
    }


@pytest.mark.parametrize("dense_limit", [spectral.DENSE_LIMIT, 0])  # exact SVD, FFT bound
def test_trained_blocks_are_mu_lipschitz(trained_run, dense_limit, monkeypatch):
    """Exact norms (dense float64 SVD) of every block of the analysed network: Lip(f~) <= mu."""
    monkeypatch.setattr(spectral, "DENSE_LIMIT", dense_limit)
    out, _ = trained_run
    model, config = load_run_model(out / "best.pt")
    mu = config["mu"]
    binding = 0
    with torch.no_grad():
        for block in normalised_blocks(model).values():
            exact = exact_bound(block)
            bound = float(block.sn(block.f, update=False))
            assert exact / max(bound / mu, 1.0) <= mu + 1e-6
            binding += exact > mu
    assert binding > 0  # normalisation is active in the test


def test_trained_run_records_bounds(trained_run):
    out, metrics = trained_run
    record = metrics["lipschitz_bounds"]
    assert json.loads((out / "metrics.json").read_text())["lipschitz_bounds"] == record
    model, config = load_run_model(out / "best.pt")
    blocks = normalised_blocks(model)
    assert set(record["blocks"]) == set(blocks) and record["mu"] == config["mu"]
    below = 0
    for name, block in blocks.items():
        rec, exact = record["blocks"][name], exact_bound(block)
        assert float(block.sn.bound) == rec["certified"]  # stored in best.pt
        with torch.no_grad():
            assert float(block.sn(block.f, update=False)) == rec["certified"]
        assert rec["lower"] <= exact * (1 + 1e-9) and exact <= rec["certified"]
        assert rec["normalised"] <= config["mu"]
        below += rec["training_estimate"] < exact  # the training estimate underestimates
    assert below > 0
