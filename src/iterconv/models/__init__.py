"""Residual networks of the paper (:mod:`iterconv.models.resnet`) and of the related papers
(``implicit``, ``van``, ``two_layer``)."""

# The block types of the paper's ResNet (iterconv.models.resnet); here so that checking a run's
# configuration does not import torch.
VARIANTS = ("standard", "icr", "pcr", "plain", "van", "implicit")

__all__ = ["ModelConfig", "ResNet", "count_parameters"]


def __getattr__(name: str):
    # Loaded on first use, so that the numpy-only two_layer module does not import torch.
    if name in __all__:
        from iterconv.models import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
