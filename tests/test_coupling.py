import re

import pytest
import torch
from torch.func import functional_call

from iterconv.models import ModelConfig, ResNet
from iterconv.train.coupling import GradientCoupler, coupling_matrix


def sgd_steps(model, coupler, steps=12, seed=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, 16, 16, generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        coupler()
        opt.step()
    return model


def small(**kw):
    torch.manual_seed(0)
    return ResNet(ModelConfig(width=4, blocks=4, image_size=16, **kw))


@pytest.mark.parametrize("variant", ["standard", "icr", "pcr"])
def test_full_coupling_keeps_recurrent_blocks_identical(variant):
    model = small(recurrent_init=True, variant=variant)
    sgd_steps(model, GradientCoupler(model.stages, 1.0))
    for stage in model.stages:
        first = list(stage.blocks[0].f.parameters())
        for block in stage.blocks[1:]:
            for a, b in zip(first, block.f.parameters()):
                assert torch.equal(a, b)
        # BN running statistics are never shared
        stats = [b.f.bn1.running_mean for b in stage.blocks]
        assert not torch.equal(stats[0], stats[1])


def test_triangular_full_coupling_keeps_blocks_within_tolerance():
    model = small(recurrent_init=True)
    sgd_steps(model, GradientCoupler(model.stages, 1.0, kernel="triangular"))
    for stage in model.stages:
        w = torch.stack([b.f.conv1.weight for b in stage.blocks])
        assert (w - w[0]).abs().max() <= 1e-7


def test_zero_coupling_is_plain_training():
    a, b = small(), small()
    sgd_steps(a, GradientCoupler(a.stages, 0.0))
    sgd_steps(b, lambda: None)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# A parameter of a residual block: stages.<s>.blocks.<b>.f.<slot>
BLOCK_PARAMETER = re.compile(r"stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.(?P<slot>f\..+)")


def block_parameter(stage: int, block: int, slot: str) -> str:
    return f"stages.{stage}.blocks.{block}.{slot}"


def paper_kernel(lam: float, n: int, kernel: str) -> list[list[float]]:
    """K of eq. 2 (uniform) or eq. 7 (triangular, rows normalised), entry by entry in Python
    floats, as docs/science.md states them."""
    if kernel == "uniform":
        return [[(1 - lam) * (s == t) + lam / n for t in range(n)] for s in range(n)]
    if lam >= 0.5:
        rows = [[max(0.0, 1 - 2 * (1 - lam) * abs(s - t) / n) for t in range(n)] for s in range(n)]
    else:
        rows = [[max(0.0, 1 - abs(s - t) / (2 * lam * n)) for t in range(n)] for s in range(n)]
    return [[v / sum(row) for v in row] for row in rows]


@pytest.mark.parametrize("kernel", ["uniform", "triangular"])
@pytest.mark.parametrize("lam", [0.3, 0.75])
@pytest.mark.parametrize("start", [0, 1])
def test_coupled_gradient_is_the_kernel_weighted_sum_of_block_gradients(kernel, lam, start):
    """In float64, every parameter: a coupled block's gradient is sum_u K[t, u] g_u over the
    stage's coupled blocks; blocks before ``start`` and every other parameter keep theirs."""
    model = small().double()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model(x).square().mean().backward()
    raw = {name: p.grad.clone() for name, p in model.named_parameters()}
    GradientCoupler(model.stages, lam, kernel, start)()
    n = model.cfg.blocks - start
    k = paper_kernel(lam, n, kernel)
    coupled = 0
    for name, p in model.named_parameters():
        match = BLOCK_PARAMETER.fullmatch(name)
        if match is None or int(match["block"]) < start:
            assert torch.equal(p.grad, raw[name]), name
            continue
        stage, t = int(match["stage"]), int(match["block"]) - start
        grads = [raw[block_parameter(stage, u + start, match["slot"])] for u in range(n)]
        expected = sum(k[t][u] * g for u, g in enumerate(grads))
        torch.testing.assert_close(p.grad, expected, rtol=1e-12, atol=1e-15)
        coupled += 1
    assert coupled == 3 * n * 6  # stages x coupled blocks x 6 slots (BN gamma, beta; conv)


def test_full_coupling_is_the_weight_tied_networks_gradient_over_the_block_count():
    """lambda = 1 from the recurrent initialisation: each block receives 1/T of the gradient of
    the network whose T blocks per stage share one set of weights (computed by autograd through
    the tied network, float64); every other parameter the tied network's gradient."""
    torch.manual_seed(0)
    model = ResNet(ModelConfig(width=4, blocks=4, image_size=16, recurrent_init=True)).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, 16, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=gen)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    GradientCoupler(model.stages, 1.0)()

    def tied_name(name: str) -> str:  # block b's parameter -> block 0's
        match = BLOCK_PARAMETER.fullmatch(name)
        return name if match is None else block_parameter(int(match["stage"]), 0, match["slot"])

    params = dict(model.named_parameters())
    shared = {
        name: p.detach().clone().requires_grad_()
        for name, p in params.items()
        if tied_name(name) == name
    }
    tied = {name: shared[tied_name(name)] for name in params}
    loss = torch.nn.functional.cross_entropy(functional_call(model, tied, (x,)), y)
    tied_grads = dict(zip(shared, torch.autograd.grad(loss, list(shared.values())), strict=True))
    for name, p in params.items():
        scale = model.cfg.blocks if BLOCK_PARAMETER.fullmatch(name) else 1
        torch.testing.assert_close(p.grad, tied_grads[tied_name(name)] / scale, rtol=1e-10, atol=0)


def test_coupling_from_block_k_leaves_earlier_blocks():
    model = small()
    model(torch.randn(4, 3, 16, 16)).square().mean().backward()
    raw = [b.f.bn1.weight.grad.clone() for b in model.stages[0].blocks]
    GradientCoupler(model.stages, 1.0, start=2)()
    got = [b.f.bn1.weight.grad for b in model.stages[0].blocks]
    assert torch.equal(got[0], raw[0]) and torch.equal(got[1], raw[1])
    torch.testing.assert_close(got[2], (raw[2] + raw[3]) / 2)
    assert torch.equal(got[2], got[3])


@pytest.mark.parametrize("n", [1, 4, 11, 16])
@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_triangular_kernel_properties(n, lam):
    k = coupling_matrix(lam, n, "triangular")
    torch.testing.assert_close(k.sum(dim=1), torch.ones(n, dtype=torch.float64))
    assert torch.all(k >= 0)
    if lam == 0.0:
        assert torch.equal(k, torch.eye(n, dtype=torch.float64))
    if lam == 1.0:
        torch.testing.assert_close(k, torch.full((n, n), 1 / n, dtype=torch.float64))


def test_triangular_kernel_decays_with_distance():
    k = coupling_matrix(0.5, 8, "triangular")
    row = k[3]
    assert row[3] > row[2] > row[1] > row[0]


def test_kernels_at_hand_computed_values():
    """Eq. 2 at lambda = 0.4, T = 5: 0.6 + 0.4 / 5 on the diagonal, 0.4 / 5 elsewhere. Eq. 7 at
    T = 4: lambda = 0.75 falls by 2 (1 - lambda) / T = 0.125 per block of distance, lambda =
    0.25 by 1 / (2 lambda T) = 0.5; rows normalised."""
    uniform = [[0.68 if s == t else 0.08 for t in range(5)] for s in range(5)]
    torch.testing.assert_close(coupling_matrix(0.4, 5), torch.tensor(uniform, dtype=torch.float64))
    wide = coupling_matrix(0.75, 4, "triangular")
    expected = torch.tensor([1, 0.875, 0.75, 0.625], dtype=torch.float64) / 3.25
    torch.testing.assert_close(wide[0], expected)
    narrow = coupling_matrix(0.25, 4, "triangular")
    torch.testing.assert_close(narrow[0], torch.tensor([2 / 3, 1 / 3, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(narrow[1], torch.tensor([0.25, 0.5, 0.25, 0], dtype=torch.float64))


def test_invalid_lambda_rejected():
    with pytest.raises(ValueError):
        coupling_matrix(1.5, 4)
