"""Residual networks of the paper: see :mod:`iterconv.models.resnet`."""

from iterconv.models.resnet import ModelConfig, ResNet, count_parameters

__all__ = ["ModelConfig", "ResNet", "count_parameters"]
