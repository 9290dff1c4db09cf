"""Spectral normalisation of a pre-activation residual function (paper eq. 3, appendix E.1).

The residual function is ``f = Conv2 ∘ ReLU ∘ BN2 ∘ Conv1 ∘ ReLU ∘ BN1``. Its Lipschitz constant
is bounded by

    L_hat(f) = ||Conv2||_2 * ||BN2 ∘ Conv1 ∘ BN1||_2

where each BN enters as its per-channel linear scale ``gamma / sqrt(var + eps)`` (its shift does
not affect the Jacobian). Both norms are spectral norms of the *real* convolution operators on
the block's input shape, estimated by power iteration with persistent vectors (one step per
training forward pass, as in Miyato et al. 2018 / Yoshida & Miyato 2017).

Which BN scale: the bound uses the BN *running* variance. That is the scale of the function the
trained network computes in eval mode, which every analysis (indices, convergence) uses, so the
guarantee ``L(f~) <= mu`` holds exactly for the analysed network. In training mode BN uses batch
statistics; the running variance is their moving average, so the training-time function is
normalised approximately. See docs/science.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bn_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """Per-channel linear scale of an eval-mode BatchNorm: gamma / sqrt(running_var + eps)."""
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


class ConvOperator:
    """A 3x3, stride-1, padding-1 convolution as a linear map on (C, H, W), optionally
    pre- and post-scaled per channel: ``v -> post * conv(pre * v)``."""

    def __init__(self, weight: torch.Tensor, pre: torch.Tensor | None, post: torch.Tensor | None):
        self.weight, self.pre, self.post = weight, pre, post

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            v = v * self.pre.view(1, -1, 1, 1)
        out = F.conv2d(v, self.weight, padding=1)
        if self.post is not None:
            out = out * self.post.view(1, -1, 1, 1)
        return out

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        if self.post is not None:
            u = u * self.post.view(1, -1, 1, 1)
        out = F.conv_transpose2d(u, self.weight, padding=1)
        if self.pre is not None:
            out = out * self.pre.view(1, -1, 1, 1)
        return out


def _normalize(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm().clamp_min(1e-12)


def power_iteration_sigma(
    op: ConvOperator, v: torch.Tensor, steps: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (sigma, new_v): a spectral-norm estimate differentiable in the operator's
    parameters, and the updated right singular vector (detached, unit norm).

    ``sigma = ||A v|| `` after the update; it increases monotonically towards ||A||_2 as the
    iteration proceeds and is exact at convergence.
    """
    with torch.no_grad():
        for _ in range(steps):
            v = _normalize(op.adjoint(op.apply(v)))
    return op.apply(v).norm(), v


class SpectralBound(nn.Module):
    """Persistent power-iteration state for the two operators of one residual function.

    Args:
        channels: channels of the block's input (= output) representation.
        size: spatial size (H = W) of the block's input.
    """

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.register_buffer("v_conv1", _normalize(torch.randn(1, channels, size, size)))
        self.register_buffer("v_conv2", _normalize(torch.randn(1, channels, size, size)))
        self.register_buffer("bound", torch.ones(()))
        self._cache: tuple | None = None  # (tensor versions, bound) for evaluation

    def forward(self, residual: nn.Module, update: bool) -> torch.Tensor:
        """The bound L_hat(f), differentiable in conv weights and BN gammas.

        ``update``: do one power-iteration step and store the new vectors (training); otherwise
        reuse the stored vectors (evaluation is then a pure function of the state, cached
        until a weight, BN statistic or vector changes in place).
        """
        if not update and not torch.is_grad_enabled():
            tensors = (
                residual.conv1.weight,
                residual.conv2.weight,
                residual.bn1.weight,
                residual.bn1.running_var,
                residual.bn2.weight,
                residual.bn2.running_var,
                self.v_conv1,
                self.v_conv2,
            )
            key = tuple((t.data_ptr(), t._version) for t in tensors)
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self._bound(residual, update=False))
            return self._cache[1]
        return self._bound(residual, update)

    def _bound(self, residual: nn.Module, update: bool) -> torch.Tensor:
        first = ConvOperator(residual.conv1.weight, bn_scale(residual.bn1), bn_scale(residual.bn2))
        second = ConvOperator(residual.conv2.weight, None, None)
        steps = 1 if update else 0
        s1, v1 = power_iteration_sigma(first, self.v_conv1, steps)
        s2, v2 = power_iteration_sigma(second, self.v_conv2, steps)
        if update:
            self.v_conv1.copy_(v1)
            self.v_conv2.copy_(v2)
        bound = s1 * s2
        self.bound.copy_(bound.detach())
        return bound

    @torch.no_grad()
    def converge(self, residual: nn.Module, steps: int = 200) -> float:
        """Run many power-iteration steps (e.g. before analysis); returns the bound."""
        for _ in range(steps):
            self.forward(residual, update=True)
        return float(self.bound)
