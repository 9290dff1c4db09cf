import pytest
import torch

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


def test_partial_coupling_matches_eq2_by_hand():
    model = small()
    lam = 0.3
    x = torch.randn(4, 3, 16, 16)
    model(x).square().mean().backward()
    raw = [b.f.conv2.weight.grad.clone() for b in model.stages[1].blocks]
    GradientCoupler(model.stages, lam)()
    mean = sum(raw) / len(raw)
    for g, block in zip(raw, model.stages[1].blocks):
        torch.testing.assert_close(block.f.conv2.weight.grad, (1 - lam) * g + lam * mean)


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


def test_uniform_kernel_is_eq2():
    k = coupling_matrix(0.4, 5)
    torch.testing.assert_close(k, 0.6 * torch.eye(5, dtype=torch.float64) + 0.4 / 5)


def test_invalid_lambda_rejected():
    with pytest.raises(ValueError):
        coupling_matrix(1.5, 4)
