"""Residual networks of the paper (:mod:`iterconv.models.resnet`), of the related papers
(``implicit``, ``van``, ``two_layer``) and torchvision architectures trained the same way
(:mod:`iterconv.models.torchvision_nets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from iterconv.models.resnet import ModelConfig
    from iterconv.models.torchvision_nets import TorchvisionConfig

# The block types of the paper's ResNet (iterconv.models.resnet); here so that checking a run's
# configuration does not import torch.
VARIANTS = ("standard", "icr", "pcr", "plain", "van", "implicit")
# torchvision architectures a run may train instead (iterconv.models.torchvision_nets).
TORCHVISION_VARIANTS = ("tv_resnet", "tv_vit")
RESNET_MAX_STAGES = 4  # torchvision's ResNet has layer1..layer4
VIT_HEADS = 4  # attention heads of every tv_vit encoder layer

__all__ = ["ModelConfig", "ResNet", "count_parameters"]


def build_network(cfg: ModelConfig | TorchvisionConfig) -> nn.Module:
    """The network a model configuration describes, freshly initialised."""
    if cfg.variant in TORCHVISION_VARIANTS:
        from iterconv.models.torchvision_nets import build_torchvision

        return build_torchvision(cfg)
    from iterconv.models.resnet import ResNet

    return ResNet(cfg)


def model_config_from_dict(fields: dict[str, Any]) -> ModelConfig | TorchvisionConfig:
    """The model configuration whose ``dataclasses.asdict`` is ``fields`` (as checkpoints
    store it)."""
    if fields.get("variant") in TORCHVISION_VARIANTS:
        from iterconv.models.torchvision_nets import TorchvisionConfig

        return TorchvisionConfig(**fields)
    from iterconv.models.resnet import ModelConfig

    return ModelConfig(**fields)


def __getattr__(name: str):
    # Loaded on first use, so that the numpy-only two_layer module does not import torch.
    if name in __all__:
        from iterconv.models import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
