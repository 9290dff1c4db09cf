"""The resolved configuration of one training run: a flat, JSON-serialisable record.

Flat on purpose: the same keys are the columns of ``results/<preset>/tables/runs.csv``, the
``params:`` of the Snakemake training job, and the run id's ingredients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iterconv.models import VARIANTS
from iterconv.train import KERNELS

if TYPE_CHECKING:  # the model (and torch) only where a network is built
    from iterconv.models.resnet import ModelConfig

INITS = ("recurrent", "nonrecurrent")


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults follow the paper's CIFAR-10 recipe (appendix A.4)."""

    dataset: str = "cifar10"  # name of a prepared dataset under results/data/
    variant: str = "standard"  # standard | icr | pcr | plain | van | implicit
    width: int = 16  # channels of the first stage
    stages: int = 3
    blocks: int = 16  # residual blocks per stage
    mu: float = 0.95  # Lipschitz bound for icr/pcr
    theta: float = 0.5  # implicit variant: y = z + (1-theta) f(z) + theta f(y)
    multiplier_init: float = -1.0  # van: initial Lagrange multipliers (0 with step 0: VAN lambda=0)
    multiplier_step: float = 0.1  # van: multiplier step as a fraction of the lr (seed 003: 1/10)
    init: str = "nonrecurrent"  # recurrent | nonrecurrent
    bn_gamma: float = 1.0  # initial BN scale
    coupling: float = 0.0  # soft gradient coupling lambda in [0, 1]
    kernel: str = "uniform"  # uniform | triangular
    couple_from: int = 0  # first coupled block of each stage (0-based)
    epochs: int = 400
    lr: float = 0.1
    milestones: tuple[int, ...] = (200, 300)  # epochs at which lr is divided by lr_factor
    lr_factor: float = 10.0
    batch_size: int = 128  # not stated in the paper; the common CIFAR ResNet choice
    momentum: float = 0.9
    weight_decay: float = 1e-4  # not stated in the paper; He et al. (2016a)'s CIFAR value
    seed: int = 0
    eval_batch_size: int = field(default=1000, compare=False)  # speed only, not a result

    def __post_init__(self) -> None:
        checks = {
            "variant": (self.variant in VARIANTS, f"one of {list(VARIANTS)}"),
            "init": (self.init in INITS, f"one of {list(INITS)}"),
            "kernel": (self.kernel in KERNELS, f"one of {list(KERNELS)}"),
            "coupling": (0.0 <= self.coupling <= 1.0, "a number in [0, 1]"),
            "mu": (self.mu > 0, "a number > 0"),
            "theta": (0 <= self.theta <= 1, "a number in [0, 1]"),
            "multiplier_init": (self.multiplier_init <= 0, "a number <= 0"),
            "multiplier_step": (self.multiplier_step >= 0, "a number >= 0"),
            "lr": (self.lr > 0, "a number > 0"),
            "lr_factor": (self.lr_factor > 0, "a number > 0"),
            "momentum": (0 <= self.momentum < 1, "a number in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, "a number >= 0"),
            "bn_gamma": (self.bn_gamma > 0, "a number > 0"),
            "couple_from": (0 <= self.couple_from < self.blocks, "an integer in [0, blocks)"),
            "milestones": (
                all(m > 0 for m in self.milestones)
                and list(self.milestones) == sorted(self.milestones),
                "increasing positive epochs",
            ),
        }
        for key in ("width", "stages", "blocks", "epochs", "batch_size", "eval_batch_size"):
            checks[key] = (getattr(self, key) >= 1, "an integer >= 1")
        for key, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{key}: {getattr(self, key)!r} is not allowed; must be {allowed}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run configuration keys {unknown}; allowed: {sorted(known)}")
        values = dict(data)
        for f in dataclasses.fields(cls):
            if f.name in values:
                values[f.name] = _typed(f.name, values[f.name], f.type)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def model_config(self, in_channels: int, num_classes: int, image_size: int) -> ModelConfig:
        from iterconv.models.resnet import ModelConfig

        return ModelConfig(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            width=self.width,
            stages=self.stages,
            blocks=self.blocks,
            variant=self.variant,
            mu=self.mu,
            theta=self.theta,
            multiplier_init=self.multiplier_init,
            recurrent_init=self.init == "recurrent",
            bn_gamma=self.bn_gamma,
        )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _typed(key: str, value: Any, kind: str) -> Any:
    """``value`` checked against the field's annotation (a string under postponed evaluation)."""
    ok = {
        "int": _is_int(value),
        "float": _is_int(value) or isinstance(value, float),
        "str": isinstance(value, str),
        "tuple[int, ...]": isinstance(value, list | tuple) and all(map(_is_int, value)),
    }[kind]
    if not ok:
        raise ValueError(f"{key}: {value!r} is not allowed; must be of type {kind}")
    return tuple(value) if kind.startswith("tuple") else float(value) if kind == "float" else value


def learning_rate(cfg: RunConfig, epoch: int) -> float:
    """Step schedule: lr divided by lr_factor at each milestone (epochs counted from 0)."""
    drops = sum(epoch >= m for m in cfg.milestones)
    return cfg.lr / cfg.lr_factor**drops
