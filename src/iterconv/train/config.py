"""The resolved configuration of one training run: a flat, JSON-serialisable record.

Flat on purpose: the same keys are the columns of ``results/<preset>/tables/runs.csv``, the
``params:`` of the Snakemake training job, and the run id's ingredients.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iterconv.models import RESNET_MAX_STAGES, TORCHVISION_VARIANTS, VARIANTS, VIT_HEADS
from iterconv.train import KERNELS

if TYPE_CHECKING:  # the model (and torch) only where a network is built
    from iterconv.models.resnet import ModelConfig
    from iterconv.models.torchvision_nets import TorchvisionConfig

INITS = ("recurrent", "nonrecurrent")
NORMALISED = ("icr", "pcr")  # spectrally normalised variants: mu is their Lipschitz bound
_FLOATS = ("mu", "theta", "multiplier_init", "multiplier_step", "bn_gamma", "coupling", "lr")
_FLOATS += ("lr_factor", "momentum", "weight_decay")
SEED_LIMIT = 2**63  # torch.manual_seed takes seeds below 2**64; params allow [0, 2**63)
# iterconv.train.loop.epoch_generator seeds epoch e's shuffling with seed * stride + e, which
# torch must accept too (checked by tests/test_bad_params.py)
EPOCH_SEED_STRIDE = 100_003


def seed_limit(epochs: int) -> int:
    """Run seeds are below this: torch accepts them and every per-epoch seed derived from them."""
    return min(SEED_LIMIT, (2**64 - epochs) // EPOCH_SEED_STRIDE + 1)


class ConfigError(ValueError):
    """An invalid run setting; ``key`` names the setting, the message what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults follow the paper's CIFAR-10 recipe (appendix A.4)."""

    dataset: str = "cifar10"  # name of a prepared dataset under results/data/
    variant: str = "standard"  # standard | icr | pcr | plain | van | implicit | tv_resnet | tv_vit
    width: int = 16  # channels of the first stage
    stages: int = 3
    blocks: int = 16  # residual blocks per stage
    mu: float = 0.95  # Lipschitz bound for icr/pcr
    theta: float = 0.5  # implicit variant: y = z + (1-theta) f(z) + theta f(y)
    multiplier_init: float = -1.0  # van: initial Lagrange multipliers (0 with step 0: VAN lambda=0)
    multiplier_step: float = 0.1  # van: multiplier step, a fraction of the lr (the VAN paper: 1/10)
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
        for key in _FLOATS:  # YAML's .inf and .nan pass every comparison below or fail obscurely
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(key, f"{getattr(self, key)!r} is not allowed; must be finite")
        normalised = self.variant in NORMALISED
        checks = {
            "variant": (
                self.variant in VARIANTS + TORCHVISION_VARIANTS,
                f"one of {list(VARIANTS + TORCHVISION_VARIANTS)}",
            ),
            "init": (self.init in INITS, f"one of {list(INITS)}"),
            "kernel": (self.kernel in KERNELS, f"one of {list(KERNELS)}"),
            "coupling": (0.0 <= self.coupling <= 1.0, "a number in [0, 1]"),
            "mu": (
                0 < self.mu <= 1 if normalised else self.mu > 0,
                f"a number in (0, 1] for variant {self.variant!r} (the Lipschitz bound of the "
                "spectrally normalised residual function)"
                if normalised
                else "a number > 0",
            ),
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
                and list(self.milestones) == sorted(set(self.milestones)),
                "strictly increasing positive epochs",
            ),
            "seed": (
                0 <= self.seed < seed_limit(self.epochs),
                f"an integer in [0, {seed_limit(self.epochs)}) (the seeds torch accepts, "
                "including the per-epoch seeds derived from it)",
            ),
        }
        for key in ("width", "stages", "blocks", "epochs", "batch_size", "eval_batch_size"):
            checks[key] = (getattr(self, key) >= 1, "an integer >= 1")
        groups = [checks]
        if self.variant in TORCHVISION_VARIANTS:  # after the general checks of the same keys
            groups.append(self._torchvision_checks())
        for key, (ok, allowed) in (item for group in groups for item in group.items()):
            if not ok:
                value = getattr(self, key)
                value = list(value) if isinstance(value, tuple) else value
                raise ConfigError(key, f"{value!r} is not allowed; must be {allowed}")

    def _torchvision_checks(self) -> dict[str, tuple[bool, str]]:
        """What a torchvision architecture allows: none of the project's block options
        (coupling acts on the paper's blocks, recurrent initialisation copies them, bn_gamma
        sets their BN scale), and sizes its network can take."""
        only = f"for variant {self.variant!r} (a torchvision architecture"
        checks = {
            "coupling": (
                self.coupling == 0,
                f"0 {only}: soft gradient coupling is for the project's ResNet)",
            ),
            "couple_from": (self.couple_from == 0, f"0 {only})"),
            "kernel": (self.kernel == "uniform", f"'uniform' {only})"),
            "init": (
                self.init == "nonrecurrent",
                f"'nonrecurrent' {only}: identical initial blocks are the project's ResNet's)",
            ),
            "bn_gamma": (self.bn_gamma == 1.0, f"1 {only})"),
        }
        if self.variant == "tv_resnet":
            checks["stages"] = (
                self.stages <= RESNET_MAX_STAGES,
                f"an integer in [1, {RESNET_MAX_STAGES}] {only} of {RESNET_MAX_STAGES} layers)",
            )
            checks["blocks"] = (
                self.blocks >= 2 or self.stages == 1,
                f"an integer >= 2 {only}: the first block of stages 2.. downsamples, so each "
                "keeps blocks - 1 residual blocks)",
            )
        else:
            checks["stages"] = (self.stages == 1, f"1 {only}: its encoder is one stage)")
            checks["width"] = (
                self.width % VIT_HEADS == 0,
                f"a multiple of {VIT_HEADS} {only} with {VIT_HEADS} attention heads)",
            )
        return checks

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                unknown[0],
                f"unknown run configuration keys {unknown}; allowed: {', '.join(sorted(known))}",
            )
        values = dict(data)
        for f in dataclasses.fields(cls):
            if f.name in values:
                values[f.name] = _typed(f.name, values[f.name], f.type)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def model_config(
        self, in_channels: int, num_classes: int, image_size: int
    ) -> ModelConfig | TorchvisionConfig:
        """The network of this run for images of the given shape and classes."""
        if self.variant in TORCHVISION_VARIANTS:
            from iterconv.models.torchvision_nets import TorchvisionConfig

            return TorchvisionConfig(
                variant=self.variant,
                in_channels=in_channels,
                num_classes=num_classes,
                image_size=image_size,
                width=self.width,
                stages=self.stages,
                blocks=self.blocks,
            )
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
        raise ConfigError(key, f"{value!r} is not allowed; must be of type {kind}")
    return tuple(value) if kind.startswith("tuple") else float(value) if kind == "float" else value


def check_schedule(cfg: RunConfig) -> None:
    """Every milestone is an epoch of the run (a milestone >= epochs never takes effect). Not
    part of ``__post_init__``: a shortened copy of a run (an interrupted one) keeps its
    schedule."""
    if cfg.milestones and cfg.milestones[-1] >= cfg.epochs:
        raise ConfigError(
            "milestones",
            f"{list(cfg.milestones)} is not allowed for {cfg.epochs} epochs; must be strictly "
            f"increasing epochs in [1, {cfg.epochs - 1}] (a milestone >= epochs never takes "
            "effect)",
        )


def learning_rate(cfg: RunConfig, epoch: int) -> float:
    """Step schedule: lr divided by lr_factor at each milestone (epochs counted from 0)."""
    drops = sum(epoch >= m for m in cfg.milestones)
    return cfg.lr / cfg.lr_factor**drops
