"""Spectral normalisation of a pre-activation residual function (paper eq. 3, appendix E.1).

The residual function is ``f = Conv2 ∘ ReLU ∘ BN2 ∘ Conv1 ∘ ReLU ∘ BN1``. Its Lipschitz constant
is bounded by

    L_hat(f) = ||Conv2||_2 * ||BN2 ∘ Conv1 ∘ BN1||_2

where each BN enters as its per-channel linear scale ``gamma / sqrt(running_var + eps)`` (its
shift does not affect the Jacobian) and the norms are those of the real (zero-padded, stride-1)
convolution operators on the block's input shape C x H x W. The normalised residual function is
``f~ = f / max(L_hat / mu, 1)``. How the two norms are obtained depends on the mode:

* **Training mode**: power iteration with persistent vectors, one step per forward pass (Miyato
  et al. 2018, Yoshida & Miyato 2017), differentiable in the conv weights and BN gammas. Power
  iteration gives a *lower* bound of each norm, so L_hat is underestimated and the training-time
  f~ may have a Lipschitz constant above mu.
* **Eval mode** (validation during training, every analysis): a certified *upper* bound of each
  norm, computed from the weights in float64 (:func:`certified_norm`):

  - operators with at most :data:`DENSE_LIMIT` rows: the exact norm, by SVD of the dense matrix;
  - larger ones: the norm of the circular convolution on the N x N torus, N = max(H + 1, 3)
    (H = W), i.e. the largest singular value of the kernel's C_out x C_in Fourier symbol over
    the N x N frequencies (by batched SVD on a CPU; on other devices from above by
    :func:`gram_norm_bound`, batched matrix products, where a batched SVD is slow). The
    zero-padded convolution on H x W equals ``R C E``: E embeds the input into the torus with
    zeros in the extra rows and columns, C is the circular convolution there (a 3x3 kernel
    reaching across the border reads only those zeros; N >= 3 keeps the kernel from wrapping
    onto itself), R crops the output, and ``||R||, ||E|| <= 1``. The circular convolution on
    H x W itself is *no* bound (for the 1-D kernel (-1, 0, 1) on 2 positions it is 0, the
    zero-padded one 1). The border makes this bound exceed the exact norm by ~0.2 % at 32 x 32,
    ~1 % at 16 x 16 and ~2 % at 8 x 8 (random kernels).

  The product of the two bounds is enlarged by the relative margin :data:`MARGIN`, which covers
  the round-off of the float64 computation and of the float32 division by mu.

Guarantee: in eval mode, ``L_hat`` used by every normalised block is at least the product of the
two exact operator norms, so ``Lip(f~) <= L_exact(f) / max(L_hat / mu, 1) <= mu`` for every
block of the analysed network (up to the float32 rounding of f itself). The bound uses the BN
*running* variance, the scale eval mode applies; in training mode BN uses batch statistics, so
the training-time function is normalised only approximately (and with the lower-bound estimate).

:func:`record_bounds` runs when training writes ``best.pt``: it converges the power iterations
on the final weights (relative Ritz residual <= :data:`POWER_TOL`), stores the converged vectors
and the certified bound in the checkpoint and returns the per-block record written to
``metrics.json`` under ``lipschitz_bounds``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Operators with at most this many rows (C * H * W) get their exact norm by a dense SVD (0.07 s
# on one core at 512 rows); larger ones the circular-convolution bound.
DENSE_LIMIT = 512
# Gram iterations per frequency (off the CPU): the bound exceeds the largest singular value by
# a factor <= r^(1/2^13) (1.0007 for r = 256) when the top singular value is r-fold degenerate,
# and by ~(s_2 / s_1)^8192 / 8192 otherwise (below 1e-7 for s_2 / s_1 <= 0.999).
GRAM_STEPS = 12
# Relative enlargement of the certified bound: above the float64 round-off of the SVD and Gram
# iteration (~1e-13) and the float32 rounding of the division by mu (6e-8); negligible otherwise.
MARGIN = 1e-6
# Power iteration on the final weights: stop when ||A^T A v - s^2 v|| <= POWER_TOL * s^2 (s: the
# current estimate ||A v||) or after POWER_MAX_STEPS steps.
POWER_TOL = 1e-3
POWER_MAX_STEPS = 5_000


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

    def double(self) -> ConvOperator:
        """The same operator in float64, detached."""

        def d(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().double()

        return ConvOperator(d(self.weight), d(self.pre), d(self.post))


def _normalize(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm().clamp_min(1e-12)


def power_iteration_sigma(
    op: ConvOperator, v: torch.Tensor, steps: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (sigma, new_v): a spectral-norm estimate differentiable in the operator's
    parameters, and the updated right singular vector (detached, unit norm).

    ``sigma = ||A v||`` after the update: a lower bound of ||A||_2 that increases towards it as
    the iteration proceeds (reaching it only if v converges to the top singular vector).
    """
    with torch.no_grad():
        for _ in range(steps):
            v = _normalize(op.adjoint(op.apply(v)))
    return op.apply(v).norm(), v


@torch.no_grad()
def converge_power_iteration(
    op: ConvOperator, v: torch.Tensor, tol: float = POWER_TOL, max_steps: int = POWER_MAX_STEPS
) -> tuple[float, torch.Tensor, int, float]:
    """Power iteration from ``v`` until the relative Ritz residual is <= ``tol``.

    Returns (sigma, v, steps, residual): sigma = ||A v|| (a lower bound of ||A||_2), the unit
    vector, the steps taken and ``||A^T A v - sigma^2 v|| / sigma^2`` at the returned v.
    """
    v = _normalize(v)
    for step in range(max_steps + 1):
        w = op.adjoint(op.apply(v))
        s2 = float((v * w).sum())  # = ||A v||^2
        residual = float((w - s2 * v).norm()) / max(s2, 1e-30)
        if residual <= tol or step == max_steps:
            return s2**0.5, v, step, residual
        v = _normalize(w)
    raise AssertionError("unreachable")


@torch.no_grad()
def certified_norm(op: ConvOperator, size: int, dense_limit: int | None = None) -> float:
    """An upper bound of the spectral norm of ``op`` on inputs of shape (C, size, size), float64:
    exact (dense SVD) up to ``dense_limit`` rows (default :data:`DENSE_LIMIT`), else a bound of
    the circular convolution's norm on N x N, N = max(size + 1, 3) (module docstring)."""
    op = op.double()
    c_in = op.weight.shape[1]
    limit = DENSE_LIMIT if dense_limit is None else dense_limit
    with torch.autocast(op.weight.device.type, enabled=False):
        if c_in * size * size <= limit:
            n = c_in * size * size
            basis = torch.eye(n, dtype=torch.float64, device=op.weight.device)
            matrix = op.apply(basis.view(n, c_in, size, size)).reshape(n, -1)  # rows: A^T
            return float(torch.linalg.matrix_norm(matrix, ord=2))
        # Fourier symbol of the kernel on the N x N torus, N >= 3 so that the kernel does not
        # wrap onto itself: (N, N//2 + 1, C_out, C_in). Real kernel: the other frequencies
        # are complex conjugates, with the same singular values.
        n = max(size + 1, 3)
        symbol = torch.fft.rfft2(op.weight, s=(n, n)).permute(2, 3, 0, 1)
        if op.post is not None:
            symbol = symbol * op.post.view(-1, 1)
        if op.pre is not None:
            symbol = symbol * op.pre.view(1, -1)
        if symbol.device.type == "cpu":
            return float(torch.linalg.matrix_norm(symbol, ord=2).max())
        return float(gram_norm_bound(symbol).max())


def gram_norm_bound(m: torch.Tensor, steps: int = GRAM_STEPS) -> torch.Tensor:
    """Upper bounds of the spectral norms of a batch of matrices (..., p, q) by Gram iteration
    (Delattre et al. 2023): with G_0 = A and G_{k+1} = G_k^H G_k, the singular values of G_k are
    those of A to the power 2^k, so ``||A||_2 <= ||G_k||_F^(1/2^k)``. Batched matrix products
    only (fast on a GPU, unlike a batched SVD); each G_k is rescaled to unit Frobenius norm and
    its scale kept as a logarithm, so nothing overflows."""
    log_scale = torch.zeros(m.shape[:-2], dtype=torch.float64, device=m.device)
    g = m
    for _ in range(steps):
        norm = torch.linalg.matrix_norm(g).clamp_min(1e-300)  # Frobenius
        log_scale = 2 * (log_scale + norm.log())
        g = g / norm[..., None, None]
        g = g.mH @ g
    log_scale = log_scale + torch.linalg.matrix_norm(g).clamp_min(1e-300).log()
    return torch.exp(log_scale / 2**steps)


def residual_operators(residual: nn.Module) -> tuple[ConvOperator, ConvOperator]:
    """(BN2 ∘ Conv1 ∘ BN1, Conv2) of a residual function, the two factors of L_hat."""
    first = ConvOperator(residual.conv1.weight, bn_scale(residual.bn1), bn_scale(residual.bn2))
    return first, ConvOperator(residual.conv2.weight, None, None)


def _round_up(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s dtype and device, rounded up if not representable."""
    out = torch.tensor(value, dtype=like.dtype, device=like.device)
    if float(out) < value:
        out = torch.nextafter(out, torch.tensor(float("inf"), dtype=like.dtype, device=like.device))
    return out


@dataclass(frozen=True)
class BlockBound:
    """Bounds of L_hat(f) for one normalised block (see :meth:`SpectralBound.converge`)."""

    training_estimate: float  # L_hat from the stored vectors before converging (last step's)
    lower: float  # converged power iteration: a lower bound of the exact L_hat(f)
    certified: float  # certified upper bound of L_hat(f): what eval mode divides by
    normalised: float  # guaranteed Lipschitz bound of f~: certified / max(certified / mu, 1)
    steps: int  # power-iteration steps taken (the larger of the two operators)
    residual: float  # relative Ritz residual at the end (the larger of the two)


class SpectralBound(nn.Module):
    """Persistent power-iteration state for the two operators of one residual function.

    Args:
        channels: channels of the block's input (= output) representation.
        size: spatial size (H = W) of the block's input.
    """

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.size = size
        self.register_buffer("v_conv1", _normalize(torch.randn(1, channels, size, size)))
        self.register_buffer("v_conv2", _normalize(torch.randn(1, channels, size, size)))
        self.register_buffer("bound", torch.ones(()))  # the bound last used
        self._cache: tuple | None = None  # (tensor versions, certified bound) for evaluation

    def forward(self, residual: nn.Module, update: bool) -> torch.Tensor:
        """The bound L_hat(f).

        ``update`` (training mode): one power-iteration step, store the new vectors, return the
        estimate, differentiable in conv weights and BN gammas. Otherwise (eval mode): the
        certified upper bound, a constant cached until a weight or BN statistic changes.
        """
        if update:
            return self._estimate(residual)
        tensors = (
            residual.conv1.weight,
            residual.conv2.weight,
            residual.bn1.weight,
            residual.bn1.running_var,
            residual.bn2.weight,
            residual.bn2.running_var,
        )
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.certified(residual))
        bound = self._cache[1]
        with torch.no_grad():
            self.bound.copy_(bound)
        return bound

    def _estimate(self, residual: nn.Module) -> torch.Tensor:
        first, second = residual_operators(residual)
        s1, v1 = power_iteration_sigma(first, self.v_conv1, 1)
        s2, v2 = power_iteration_sigma(second, self.v_conv2, 1)
        with torch.no_grad():
            self.v_conv1.copy_(v1)
            self.v_conv2.copy_(v2)
        bound = s1 * s2
        self.bound.copy_(bound.detach())
        return bound

    def certified(self, residual: nn.Module) -> torch.Tensor:
        """Certified upper bound of L_hat(f) (float64 norms, times 1 + MARGIN), rounded up to
        the weights' dtype. A constant, and a normal tensor even under inference mode (it is
        cached and may later divide a tensor that autograd tracks)."""
        with torch.inference_mode(False), torch.no_grad():
            first, second = residual_operators(residual)
            product = certified_norm(first, self.size) * certified_norm(second, self.size)
            return _round_up(product * (1 + MARGIN), residual.conv1.weight)

    @torch.no_grad()
    def stored_estimate(self, residual: nn.Module) -> float:
        """L_hat from the stored vectors without a step (the last training step's estimate)."""
        first, second = residual_operators(residual)
        return float(first.apply(self.v_conv1).norm() * second.apply(self.v_conv2).norm())

    @torch.no_grad()
    def converge(
        self,
        residual: nn.Module,
        mu: float,
        tol: float = POWER_TOL,
        max_steps: int = POWER_MAX_STEPS,
    ) -> BlockBound:
        """Converge both power iterations (float64, from the stored vectors), store the
        vectors, and return the training estimate, converged and certified bounds."""
        before = self.stored_estimate(residual)
        sigmas, steps, residuals = [], [], []
        for op, name in zip(residual_operators(residual), ("v_conv1", "v_conv2"), strict=True):
            vec = getattr(self, name)
            sigma, v, k, res = converge_power_iteration(op.double(), vec.double(), tol, max_steps)
            vec.copy_(v)
            sigmas.append(sigma)
            steps.append(k)
            residuals.append(res)
        certified = float(self.certified(residual))
        self.bound.fill_(certified)
        return BlockBound(
            training_estimate=before,
            lower=sigmas[0] * sigmas[1],
            certified=certified,
            normalised=min(certified, mu),  # = certified / max(certified / mu, 1)
            steps=max(steps),
            residual=max(residuals),
        )


@torch.no_grad()
def record_bounds(model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict:
    """Converge and certify the bound of every normalised block of ``weights``.

    ``model`` gives the architecture (a module whose normalised blocks hold a
    :class:`SpectralBound` as ``sn``, their residual function as ``f`` and the bound as ``mu``);
    ``weights`` is a state_dict of it (e.g. the best-validation weights). Updates ``weights`` in
    place (converged vectors, certified ``bound`` buffers; CPU, contiguous) and returns
    ``{"mu", "power_tol", "blocks": {name: BlockBound fields}}`` ({} without normalised blocks).
    ``model`` itself is left unchanged.
    """
    names = [
        n for n, m in model.named_modules() if isinstance(getattr(m, "sn", None), SpectralBound)
    ]
    if not names or weights is None:
        return {}
    work = copy.deepcopy(model).eval()
    work.load_state_dict(weights)
    blocks = {}
    for name in names:
        block = work.get_submodule(name)
        blocks[name] = asdict(block.sn.converge(block.f, block.mu))
        for key, value in block.sn.state_dict().items():
            weights[f"{name}.sn.{key}"] = value.to(
                "cpu", memory_format=torch.contiguous_format, copy=True
            )
    mu = work.get_submodule(names[0]).mu
    return {"mu": mu, "power_tol": POWER_TOL, "blocks": blocks}
