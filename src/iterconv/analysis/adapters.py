"""Any residual network as stages of residual blocks, and the perturbation engine that computes
the curves of the iterative convergence indices on it (docs/analysis.md, sections 1 and 4).

The protocol, :class:`NetworkAdapter`, describes an eval-mode network as

    images -> stem -> transitions[0] -> stages[0] -> transitions[1] -> stages[1] -> ... -> head

* ``stem(images)``: everything before the first transition;
* ``transitions[s]``: maps the output of stage s - 1 (the stem's output for s = 0) to the input
  of stage s, e.g. a downsampling block; ``None`` is the identity. Never perturbed;
* ``stages[s]``: the residual blocks of stage s, each called as ``block(z, x)`` with the current
  representation z and the stage input x, and returning a tensor of z's shape;
* ``head(z)``: logits from the output of the last stage.

Reading out stage s after a perturbation means running the later transitions and stages
unperturbed and then the head (:func:`finish`), as for the unperturbed network.

:class:`ResidualAdapter` implements the protocol from modules; the factories below build it for
the project's ResNet (:func:`iterconv_resnet_adapter`), torchvision's ResNet family
(:func:`torchvision_resnet_adapter`), VisionTransformer (:func:`vit_adapter`) and ConvNeXt
(:func:`convnext_adapter`); :func:`adapter_for` picks one for a model.

Engine (:func:`perturb_batch`), for one batch of images and every stage s:

    readout k   (k = 1..B)  blocks 1..k, then the later stages
    dropout k   (k = 1..B)  all blocks but block k
    extra j     (j = 1..J)  all blocks, then the last block j more times

Work is shared wherever the result is identical to running the whole network per perturbation:
the stem and every stage input are computed once; read-outs walk the unperturbed chain once and
keep the prefixes z_0..z_B; dropping block k restarts from z_{k-1}; dropping the last block
reuses read-out B - 1; extra evaluations continue from z_B one block at a time; read-out B is
the unperturbed network (one head call); the later stages run on chunks of up to ``max_rows``
concatenated perturbed representations. Block applications are counted per image (one residual
block on one image = 1; transitions are counted separately as downsampling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

KINDS = ("readout", "dropout", "extra")

Block = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z, stage input x) -> z'
Layer = Callable[[torch.Tensor], torch.Tensor]


class NetworkAdapter(Protocol):
    """What the indices need from a network (see the module docstring).

    Attributes:
        module: the network's module (put in eval mode; its parameters give the device).
        num_classes: number of logits.
        stages: per stage, its residual blocks in order, each ``block(z, x) -> z'``.
        transitions: per stage, the map into it (``None``: identity).
    """

    module: nn.Module
    num_classes: int
    stages: Sequence[Sequence[Block]]
    transitions: Sequence[Layer | None]

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """Representation entering ``transitions[0]``."""
        ...

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (b, num_classes) from the output of the last stage."""
        ...

    def epc(self) -> dict[str, Any]:
        """Effective parameter count of the stages' blocks (docs/analysis.md, section 2)."""
        ...


class _IgnoreInput:
    """A one-argument block called as ``block(z, x)``."""

    def __init__(self, block: Layer):
        self.block = block

    def __call__(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.block(z)


class ResidualAdapter:
    """A network built from its parts; implements :class:`NetworkAdapter`.

    Args:
        stem: images -> the input of the first transition (a module or a function).
        stages: per stage, its residual blocks (modules mapping z to a tensor of z's shape).
        head: the output of the last stage -> logits.
        transitions: per stage, the map into it (``None`` or omitted: identity).
        num_classes: number of logits.
        module: the module holding every parameter (default: one made of the parts above).
        stage_input: blocks are called ``block(z, x)`` with the stage input x (as the project's
            PCR blocks need) instead of ``block(z)``.
        epc: replaces the generic effective parameter count (:func:`block_epc`).
    """

    def __init__(
        self,
        stem: Layer,
        stages: Sequence[Sequence[nn.Module]],
        head: Layer,
        transitions: Sequence[Layer | None] | None = None,
        *,
        num_classes: int,
        module: nn.Module | None = None,
        stage_input: bool = False,
        epc: Callable[[], dict[str, Any]] | None = None,
    ):
        if not stages or any(len(blocks) == 0 for blocks in stages):
            raise ValueError("every stage needs at least one residual block")
        transitions = list(transitions) if transitions is not None else [None] * len(stages)
        if len(transitions) != len(stages):
            raise ValueError(f"{len(transitions)} transitions for {len(stages)} stages")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.block_modules = [list(blocks) for blocks in stages]
        self.stages = [
            list(blocks) if stage_input else [_IgnoreInput(b) for b in blocks]
            for blocks in self.block_modules
        ]
        self.transitions = transitions
        self._stem, self._head, self._epc = stem, head, epc
        self.num_classes = num_classes
        if module is None:
            parts = [stem, *(b for blocks in stages for b in blocks), *transitions, head]
            module = nn.ModuleList(p for p in parts if isinstance(p, nn.Module))
        self.module = module

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        return self._stem(images)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self._head(z)

    def epc(self) -> dict[str, Any]:
        return self._epc() if self._epc is not None else block_epc(self.module, self.block_modules)


# ---------------------------------------------------------------- effective parameter count


@torch.no_grad()
def block_epc(module: nn.Module, stages: Sequence[Sequence[nn.Module]]) -> dict[str, Any]:
    """Effective parameter count (eq. 4) with every parameter of a stage's residual blocks as
    its W_l(s) (all blocks coupled) and everything else of ``module`` as uncoupled; slots and
    sigma as in :mod:`iterconv.analysis.epc`. A stage whose blocks differ in parameter names or
    shapes has no per-slot mean: its deviation terms and the total are NaN.

    Returns the dict of :func:`iterconv.analysis.epc.effective_parameter_count`.
    """
    from iterconv.analysis.epc import normalized_deviations

    params = list(module.parameters())  # unique parameters
    in_blocks = {id(p) for blocks in stages for b in blocks for p in b.parameters()}
    raw = sum(p.numel() for p in params)
    uncoupled = sum(p.numel() for p in params if id(p) not in in_blocks)
    epc, recurrent, out = float(uncoupled), uncoupled, []
    for s, blocks in enumerate(stages):
        named = [dict(b.named_parameters()) for b in blocks]
        first = named[0]
        per_block = sum(p.numel() for p in first.values())
        same = all(
            n.keys() == first.keys() and all(n[k].shape == first[k].shape for k in first)
            for n in named
        )
        if same:
            l1 = sum(
                float(
                    normalized_deviations(
                        torch.stack([n[k].detach().double().cpu() for n in named])
                    )
                    .abs()
                    .sum()
                )
                for k in first
            )
        else:
            l1 = float("nan")
        epc += per_block + l1
        recurrent += per_block
        out.append(
            {
                "stage": s + 1,
                "blocks": len(blocks),
                "coupled_blocks": len(blocks),
                "block_parameters": per_block,
                "deviation_l1": l1,
                "mean_abs_deviation": l1 / (per_block * len(blocks)) if per_block else 0.0,
            }
        )
    return {
        "raw": raw,
        "recurrent": recurrent,
        "uncoupled": uncoupled,
        "epc": epc,
        "couple_from": 0,
        "stages": out,
    }


# ---------------------------------------------------------------- shipped adapters


def iterconv_resnet_adapter(model: nn.Module, couple_from: int = 0) -> ResidualAdapter:
    """The project's ResNet (:class:`iterconv.models.resnet.ResNet`): its stages' blocks, its
    downsampling blocks as transitions (the first stage's identity as ``None``), its head and
    its own effective parameter count (blocks before ``couple_from`` uncoupled)."""
    from iterconv.analysis.epc import effective_parameter_count

    return ResidualAdapter(
        model.stem,
        [list(stage.blocks) for stage in model.stages],
        model.head,
        [None if isinstance(t, nn.Identity) else t for t in model.transitions],
        num_classes=model.cfg.num_classes,
        module=model,
        stage_input=True,
        epc=lambda: effective_parameter_count(model, couple_from),
    )


def _compose(layers: Sequence[Layer]) -> Layer | None:
    if not layers:
        return None
    if len(layers) == 1:
        return layers[0]

    def run(z: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            z = layer(z)
        return z

    return run


def _staged(
    groups: Sequence[tuple[Sequence[Layer], Sequence[nn.Module]]], head: Layer
) -> tuple[list[Layer | None], list[list[nn.Module]], Layer]:
    """Transitions, stages and head from (transition layers, residual blocks) per group; a group
    without residual blocks joins its transition layers to the next group's (or the head)."""
    transitions: list[Layer | None] = []
    stages: list[list[nn.Module]] = []
    pending: list[Layer] = []
    for layers, blocks in groups:
        pending.extend(layers)
        if blocks:
            transitions.append(_compose(pending))
            stages.append(list(blocks))
            pending = []
    if not stages:
        raise ValueError("the network has no residual block that keeps its input's shape")
    rest = _compose(pending)
    if rest is None:
        return transitions, stages, head

    def head_after_rest(z: torch.Tensor) -> torch.Tensor:
        return head(rest(z))

    return transitions, stages, head_after_rest


def torchvision_resnet_adapter(model: nn.Module) -> ResidualAdapter:
    """torchvision ResNet, Wide ResNet and ResNeXt: stage s is ``layer{s+1}``; its first block
    is the transition when it changes the shape (it has a ``downsample`` projection), otherwise
    it is a residual block of the stage like the others; an empty layer (a network of fewer
    stages, :mod:`iterconv.models.torchvision_nets`) is no stage. stem = conv1, bn1, relu,
    maxpool; head = avgpool, flatten, fc."""

    def stem(x: torch.Tensor) -> torch.Tensor:
        return model.maxpool(model.relu(model.bn1(model.conv1(x))))

    def head(z: torch.Tensor) -> torch.Tensor:
        return model.fc(torch.flatten(model.avgpool(z), 1))

    groups = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        blocks = list(layer)
        if blocks and getattr(blocks[0], "downsample", None) is not None:
            groups.append(([blocks[0]], blocks[1:]))
        else:
            groups.append(([], blocks))
    transitions, stages, head = _staged(groups, head)
    return ResidualAdapter(
        stem, stages, head, transitions, num_classes=model.fc.out_features, module=model
    )


def vit_adapter(model: nn.Module) -> ResidualAdapter:
    """torchvision VisionTransformer: one stage, the encoder layers acting on the tokens.
    stem = patch projection, class token, positional embedding, encoder dropout;
    head = final encoder norm, class token, ``heads``."""

    def stem(x: torch.Tensor) -> torch.Tensor:
        tokens = model._process_input(x)
        cls = model.class_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        return model.encoder.dropout(tokens + model.encoder.pos_embedding)

    def head(z: torch.Tensor) -> torch.Tensor:
        return model.heads(model.encoder.ln(z)[:, 0])

    last = [m for m in model.heads.modules() if isinstance(m, nn.Linear)][-1]
    return ResidualAdapter(
        stem, [list(model.encoder.layers)], head, num_classes=last.out_features, module=model
    )


def convnext_adapter(model: nn.Module) -> ResidualAdapter:
    """torchvision ConvNeXt: each sequence of CNBlocks in ``features`` is a stage; the layers
    between them (LayerNorm + strided convolution) are the transitions. stem = ``features[0]``;
    head = avgpool, classifier."""
    from torchvision.models.convnext import CNBlock

    def head(z: torch.Tensor) -> torch.Tensor:
        return model.classifier(model.avgpool(z))

    groups: list[tuple[list[Layer], list[nn.Module]]] = []
    for layer in list(model.features)[1:]:
        children = list(layer.children()) if isinstance(layer, nn.Sequential) else []
        if children and all(isinstance(c, CNBlock) for c in children):
            groups.append(([], children))
        else:
            groups.append(([layer], []))
    transitions, stages, head = _staged(groups, head)
    last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][-1]
    return ResidualAdapter(
        model.features[0],
        stages,
        head,
        transitions,
        num_classes=last.out_features,
        module=model,
    )


def adapter_for(model: nn.Module, couple_from: int = 0) -> ResidualAdapter:
    """The shipped adapter for ``model``; TypeError for a network none of them knows.
    ``couple_from``: the project's ResNet's first coupled block (for its effective parameter
    count); the other networks count every residual block as coupled."""
    from iterconv.models.resnet import ResNet

    if isinstance(model, ResNet):
        return iterconv_resnet_adapter(model, couple_from)
    from torchvision.models import ConvNeXt, VisionTransformer
    from torchvision.models import ResNet as TorchvisionResNet

    if isinstance(model, TorchvisionResNet):
        return torchvision_resnet_adapter(model)
    if isinstance(model, VisionTransformer):
        return vit_adapter(model)
    if isinstance(model, ConvNeXt):
        return convnext_adapter(model)
    raise TypeError(
        f"no adapter for {type(model).__name__}: build a ResidualAdapter from its stem, "
        "stages, transitions and head (docs/analysis.md, section 4)"
    )


# ---------------------------------------------------------------- engine


@dataclass
class BlockCounter:
    """Residual-block applications, in images x blocks, split by where they happen."""

    perturbed_stage: int = 0  # blocks of the stage under perturbation (incl. its unperturbed pass)
    later_stages: int = 0  # blocks of the stages after it, run by ``finish``
    downsampling: int = 0  # transitions other than the identity (not residual blocks)

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


def run_stage(adapter: NetworkAdapter, s: int, x: torch.Tensor) -> torch.Tensor:
    """The unperturbed stage s from its input x."""
    z = x
    for block in adapter.stages[s]:
        z = block(z, x)
    return z


def finish(adapter: NetworkAdapter, z: torch.Tensor, s: int) -> torch.Tensor:
    """Logits from the output z of stage s: the later transitions and stages, then the head."""
    for t in range(s + 1, len(adapter.stages)):
        transition = adapter.transitions[t]
        z = run_stage(adapter, t, transition(z) if transition is not None else z)
    return adapter.head(z)


class _Finisher:
    """Queues perturbed outputs of stage s; runs the later stages on concatenated chunks."""

    def __init__(self, adapter: NetworkAdapter, s: int, max_rows: int, counter: BlockCounter):
        self.adapter, self.s, self.max_rows, self.counter = adapter, s, max_rows, counter
        later = range(s + 1, len(adapter.stages))
        self.later_blocks = sum(len(adapter.stages[t]) for t in later)
        self.later_transitions = sum(adapter.transitions[t] is not None for t in later)
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
        logits = finish(self.adapter, torch.cat(zs) if len(zs) > 1 else zs[0], self.s)
        self.counter.later_stages += self.rows * self.later_blocks
        self.counter.downsampling += self.rows * self.later_transitions
        for key, part in zip(keys, logits.split([z.shape[0] for z in zs]), strict=True):
            self.out[key] = part
        self.pending, self.rows = [], 0


def _distance(z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(b,) per-image Euclidean distance between (b, ...) tensors."""
    return (z - ref).flatten(1).norm(dim=1)


def perturb_stage(
    adapter: NetworkAdapter,
    x: torch.Tensor,
    s: int,
    extra: int,
    max_rows: int,
    counter: BlockCounter,
) -> tuple[torch.Tensor, StagePerturbations]:
    """All perturbations of stage s from its input x (b, ...).

    Returns:
        The unperturbed stage output z_B and the stage's perturbation results.
    """
    blocks = adapter.stages[s]
    n_blocks, b = len(blocks), x.shape[0]
    fin = _Finisher(adapter, s, max_rows, counter)

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
            result.logits[kind] = x.new_zeros((0, b, adapter.num_classes))
            result.distance[kind] = x.new_zeros((0, b))
    return z_final, result


def perturb_batch(
    adapter: NetworkAdapter,
    images: torch.Tensor,
    extra: int,
    max_rows: int,
    counter: BlockCounter,
) -> tuple[torch.Tensor, list[StagePerturbations]]:
    """Unperturbed logits (b, classes) and the perturbations of every stage for one batch.

    Call under ``torch.inference_mode()`` with the network in eval mode.
    """
    z = adapter.stem(images)
    results = []
    for s, transition in enumerate(adapter.transitions):
        if transition is not None:
            z = transition(z)
            counter.downsampling += images.shape[0]
        z, res = perturb_stage(adapter, z, s, extra, max_rows, counter)
        results.append(res)
    return adapter.head(z), results
