"""Efficient perturbation engine behind the iterative convergence indices (docs/analysis.md,
section 1).

For one batch of images and every stage s of an eval-mode :class:`~iterconv.models.resnet.ResNet`
it returns the logits and the distance to the unperturbed stage output of every perturbation:

    readout k   (k = 1..B)  blocks 1..k, then the later stages
    dropout k   (k = 1..B)  all blocks but block k
    extra j     (j = 1..J)  all blocks, then the last block j more times

Work is shared wherever the result is identical to running the whole network per perturbation:

* the stem and every stage input are computed once (the unperturbed output of stage s, passed
  through its downsampling block, is the input of stage s + 1);
* read-outs walk the unperturbed chain once (B block applications) and keep the prefixes
  z_0..z_B; dropping block k restarts from the cached prefix z_{k-1} (B - k blocks);
  dropping the last block equals reading out after B - 1 blocks and reuses that result;
* extra evaluations continue from z_B one block at a time (J blocks);
* read-out B is the unperturbed network, whose logits come from a single head call;
* the later stages (``model.finish``) run on chunks of up to ``max_rows`` concatenated perturbed
  representations, so small batches still fill the device.

Block applications are counted per image: one residual block applied to one image counts 1
(downsampling blocks are counted separately and are not residual blocks of a stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from iterconv.models.resnet import ResNet

KINDS = ("readout", "dropout", "extra")


@dataclass
class BlockCounter:
    """Residual-block applications, in images x blocks, split by where they happen."""

    perturbed_stage: int = 0  # blocks of the stage under perturbation (incl. its unperturbed pass)
    later_stages: int = 0  # blocks of the stages after it, run by ``finish``
    downsampling: int = 0  # downsampling blocks (not residual blocks of a stage)

    @property
    def total(self) -> int:
        return self.perturbed_stage + self.later_stages


@dataclass
class StagePerturbations:
    """Results of one stage for one batch of b images.

    Attributes:
        logits: kind -> (P, b, classes) logits, P = B for readout/dropout and J for extra.
            ``readout`` excludes k = B (the unperturbed logits, returned separately).
        distance: kind -> (P, b) Euclidean distance ||z - z_B||_2 between the perturbed stage
            output and the unperturbed one (read-out k = B excluded, it is 0).
    """

    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    distance: dict[str, torch.Tensor] = field(default_factory=dict)


class _Finisher:
    """Queues perturbed outputs of stage s; runs the later stages on concatenated chunks."""

    def __init__(self, model: ResNet, s: int, max_rows: int, counter: BlockCounter):
        self.model, self.s, self.max_rows, self.counter = model, s, max_rows, counter
        later = range(s + 1, len(model.stages))
        self.later_blocks = sum(len(model.stages[t].blocks) for t in later)
        self.later_transitions = len(model.stages) - 1 - s
        self.pending: list[tuple[tuple[str, int], torch.Tensor]] = []
        self.rows = 0
        self.out: dict[tuple[str, int], torch.Tensor] = {}

    def add(self, key: tuple[str, int], z: torch.Tensor) -> None:
        self.pending.append((key, z))
        self.rows += z.shape[0]
        if self.rows >= self.max_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        keys, zs = zip(*self.pending, strict=True)
        logits = self.model.finish(torch.cat(zs) if len(zs) > 1 else zs[0], self.s)
        self.counter.later_stages += self.rows * self.later_blocks
        self.counter.downsampling += self.rows * self.later_transitions
        for key, part in zip(keys, logits.split([z.shape[0] for z in zs]), strict=True):
            self.out[key] = part
        self.pending, self.rows = [], 0


def _distance(z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(b,) per-image Euclidean distance between (b, ...) tensors."""
    return (z - ref).flatten(1).norm(dim=1)


def perturb_stage(
    model: ResNet, x: torch.Tensor, s: int, extra: int, max_rows: int, counter: BlockCounter
) -> tuple[torch.Tensor, StagePerturbations]:
    """All perturbations of stage s from its input x (b, C, H, W).

    Returns:
        The unperturbed stage output z_B (b, C, H, W) and the stage's perturbation results.
    """
    blocks = model.stages[s].blocks
    n_blocks, b = len(blocks), x.shape[0]
    fin = _Finisher(model, s, max_rows, counter)

    # Unperturbed chain: prefixes z_0 = x, z_1, ..., z_B (B block applications).
    prefix = [x]
    for block in blocks:
        prefix.append(block(prefix[-1], x))
    counter.perturbed_stage += b * n_blocks
    z_final = prefix[-1]
    dist: dict[tuple[str, int], torch.Tensor] = {}

    for k in range(1, n_blocks):  # read-out after k blocks; k = B is the unperturbed network
        fin.add(("readout", k), prefix[k])
        dist["readout", k] = _distance(prefix[k], z_final)

    for k in range(1, n_blocks + 1):  # drop block k (1-based): restart from prefix z_{k-1}
        if k == n_blocks and n_blocks > 1:
            continue  # identical to read-out B - 1; reused below
        z = prefix[k - 1]
        for i in range(k, n_blocks):
            z = blocks[i](z, x)
        counter.perturbed_stage += b * (n_blocks - k)
        fin.add(("dropout", k), z)
        dist["dropout", k] = _distance(z, z_final)

    z = z_final
    for j in range(1, extra + 1):  # apply the last block j more times, incrementally
        z = blocks[-1](z, x)
        fin.add(("extra", j), z)
        dist["extra", j] = _distance(z, z_final)
    counter.perturbed_stage += b * extra
    fin.flush()

    if n_blocks > 1:
        fin.out["dropout", n_blocks] = fin.out["readout", n_blocks - 1]
        dist["dropout", n_blocks] = dist["readout", n_blocks - 1]
    result = StagePerturbations()
    counts = {"readout": n_blocks - 1, "dropout": n_blocks, "extra": extra}
    for kind, n in counts.items():
        keys = [(kind, i) for i in range(1, n + 1)]
        if keys:
            result.logits[kind] = torch.stack([fin.out[key] for key in keys])
            result.distance[kind] = torch.stack([dist[key] for key in keys])
        else:  # a 1-block stage has no read-out before its last block
            n_out = model.head.fc.out_features
            result.logits[kind] = x.new_zeros((0, b, n_out))
            result.distance[kind] = x.new_zeros((0, b))
    return z_final, result


def perturb_batch(
    model: ResNet, images: torch.Tensor, extra: int, max_rows: int, counter: BlockCounter
) -> tuple[torch.Tensor, list[StagePerturbations]]:
    """Unperturbed logits (b, classes) and the perturbations of every stage for one batch.

    Call under ``torch.inference_mode()`` with the model in eval mode.
    """
    z = model.stem(images)
    results = []
    for s, transition in enumerate(model.transitions):
        x = transition(z)
        if s > 0:
            counter.downsampling += images.shape[0]
        z, res = perturb_stage(model, x, s, extra, max_rows, counter)
        results.append(res)
    return model.head(z), results
