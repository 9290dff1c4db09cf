"""Soft gradient coupling (paper eqs. 1-2; appendix D.2-D.3).

Between ``loss.backward()`` and ``optimizer.step()`` the gradient of each parameter of block t
of a stage is replaced by ``sum_s K[t, s] * g_s`` over the coupled blocks s of that stage:

    uniform     K = (1 - lambda) I + lambda / T * 11^T            (eq. 2)
    triangular  K[s, t] = (1 - 2 (1 - lambda) |s - t| / T)_+      lambda >= 0.5   (eq. 7)
                K[s, t] = (1 - |s - t| / (2 lambda T))_+          lambda <  0.5
                rows normalised to sum to 1

T is the number of coupled blocks. With ``start`` > 0 only blocks start..B-1 are coupled
("start coupling at block 5" couples blocks 6..16, appendix D.3). Conv weights and BN affine
parameters are coupled; BN running statistics are buffers and never touched.

Vectorised: one (T, T) @ (T, P) product per parameter slot and stage, no loop over elements.
"""

from __future__ import annotations

import torch
from torch import nn

from iterconv.train import KERNELS  # re-exported: the coupling kernels


def coupling_matrix(lam: float, n: int, kernel: str = "uniform") -> torch.Tensor:
    """The (n, n) coupling kernel K for coupling parameter ``lam`` (float64, rows sum to 1)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"coupling lambda must lie in [0, 1], got {lam}")
    eye = torch.eye(n, dtype=torch.float64)
    if kernel == "uniform":
        return (1 - lam) * eye + lam / n
    if kernel != "triangular":
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if lam == 0.0:
        return eye
    dist = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().double()
    slope = 2 * (1 - lam) / n if lam >= 0.5 else 1 / (2 * lam * n)
    k = (1 - slope * dist).clamp_min(0)
    return k / k.sum(dim=1, keepdim=True)


class GradientCoupler:
    """Applies soft gradient coupling to the residual blocks of every stage of a model.

    Args:
        stages: iterable of stages, each with a ``blocks`` ModuleList of identical structure.
        lam: coupling parameter lambda in [0, 1].
        kernel: ``uniform`` or ``triangular``.
        start: index of the first coupled block in each stage (0 = all blocks).
    """

    def __init__(self, stages, lam: float, kernel: str = "uniform", start: int = 0):
        self.lam, self.kernel = lam, kernel
        self.groups: list[list[list[nn.Parameter]]] = []  # per stage: per slot: block params
        self.matrices: list[torch.Tensor] = []
        for stage in stages:
            blocks = list(stage.blocks)[start:]
            if len(blocks) < 2:
                continue
            slots = [list(b.f.parameters()) for b in blocks]
            self.groups.append([list(ps) for ps in zip(*slots, strict=True)])
            self.matrices.append(coupling_matrix(lam, len(blocks), kernel))

    @property
    def active(self) -> bool:
        return self.lam > 0 and bool(self.groups)

    @torch.no_grad()
    def __call__(self) -> None:
        """Couple the ``.grad`` of every block parameter in place."""
        if not self.active:
            return  # lambda = 0: gradients untouched, exactly the uncoupled training
        for slots, k in zip(self.groups, self.matrices, strict=True):
            for params in slots:
                grads = torch.stack([p.grad for p in params])  # (T, *shape)
                if self.kernel == "uniform":
                    # (1 - lam) g_t + lam mean_s g_s; at lam = 1 the first term is exactly 0,
                    # so every block receives bitwise the same mean gradient
                    mean = grads.mean(dim=0, keepdim=True)
                    coupled = grads.mul_(1 - self.lam).add_(mean, alpha=self.lam)
                else:
                    flat = grads.reshape(len(params), -1)
                    coupled = (k.to(flat) @ flat).view_as(grads)
                torch._foreach_copy_([p.grad for p in params], list(coupled.unbind(0)))
