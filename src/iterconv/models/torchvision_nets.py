"""torchvision architectures trained by the pipeline on small images (run variants ``tv_resnet``
and ``tv_vit``), so that their indices sit beside the paper's networks (docs/analysis.md,
"Training a torchvision architecture in a sweep").

``tv_resnet``  torchvision's ``ResNet`` of ``BasicBlock``s as it is usually adapted to 32 x 32
               inputs: a 3x3 stride-1 stem convolution and no max-pool. ``width`` channels in the
               first stage, doubled in each later one; ``stages`` layers (1 to 4) of ``blocks``
               BasicBlocks each, counted as torchvision counts them (the first block of stages
               2.. downsamples). Width 64, 4 stages, 2 blocks is resnet18 (11.2 M parameters
               for 10 classes).
``tv_vit``     torchvision's ``VisionTransformer``: patches of :data:`VIT_PATCH` pixels,
               ``blocks`` encoder layers of hidden size ``width``, :data:`VIT_HEADS` attention
               heads, MLP size 4 x ``width``, no dropout; the patch projection takes the dataset's
               channels. One stage.

Both are the torchvision classes (subclassed only to build them from a
:class:`TorchvisionConfig` and to keep it as ``cfg``): their forward passes, blocks and
initialisation are torchvision's, and the analyses' torchvision adapters apply to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torchvision.models import ResNet, VisionTransformer
from torchvision.models.resnet import BasicBlock

from iterconv.models import RESNET_MAX_STAGES, TORCHVISION_VARIANTS, VIT_HEADS

VIT_PATCH = 4  # pixels per side of a ViT patch: 64 tokens (and a class token) at 32 x 32
VIT_MLP_RATIO = 4  # MLP size / hidden size, as in torchvision's ViTs


@dataclass(frozen=True)
class TorchvisionConfig:
    """Architecture of one torchvision network (the fields shared with
    :class:`~iterconv.models.resnet.ModelConfig` mean the same)."""

    variant: str  # one of TORCHVISION_VARIANTS
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32
    width: int = 64  # tv_resnet: channels of the first stage; tv_vit: hidden size
    stages: int = 4  # tv_resnet: 1 to 4; tv_vit: 1
    blocks: int = 2  # tv_resnet: BasicBlocks per stage; tv_vit: encoder layers

    def __post_init__(self) -> None:
        if self.variant not in TORCHVISION_VARIANTS:
            raise ValueError(f"variant must be one of {TORCHVISION_VARIANTS}, got {self.variant!r}")
        if min(self.width, self.stages, self.blocks, self.in_channels, self.num_classes) < 1:
            raise ValueError("width, stages, blocks, in_channels, num_classes must be >= 1")
        if self.variant == "tv_resnet" and self.stages > RESNET_MAX_STAGES:
            raise ValueError(f"tv_resnet has at most {RESNET_MAX_STAGES} stages")
        if self.variant == "tv_vit":
            if self.stages != 1:
                raise ValueError("tv_vit has one stage")
            if self.width % VIT_HEADS:
                raise ValueError(f"tv_vit's width must be a multiple of {VIT_HEADS} (heads)")
            if self.image_size % VIT_PATCH:
                raise ValueError(
                    f"tv_vit needs an image size divisible by {VIT_PATCH}, got {self.image_size}"
                )


class SmallImageResNet(ResNet):
    """torchvision's ResNet with a 3x3 stride-1 stem, no max-pool and ``cfg``'s widths and
    depths. Stages beyond ``cfg.stages`` are empty layers (identities), so torchvision's forward
    pass applies unchanged."""

    def __init__(self, cfg: TorchvisionConfig):
        # ResNet.__init__ fixes the ImageNet stem and 64..512 channels: build the parts here
        nn.Module.__init__(self)
        self.cfg = cfg
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        channels = cfg.width
        for s in range(RESNET_MAX_STAGES):
            layer = nn.Sequential()
            if s < cfg.stages:
                out = cfg.width * 2**s
                layer.extend(_basic_blocks(channels, out, cfg.blocks, stride=1 if s == 0 else 2))
                channels = out
            setattr(self, f"layer{s + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, cfg.num_classes)
        for m in self.modules():  # torchvision's initialisation of its ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def _basic_blocks(c_in: int, c_out: int, n: int, stride: int) -> list[BasicBlock]:
    """One torchvision layer: its first block projects (1x1 conv + BN) when the shape changes,
    as ``ResNet._make_layer`` builds it."""
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
    first = BasicBlock(c_in, c_out, stride, downsample)
    return [first, *(BasicBlock(c_out, c_out) for _ in range(n - 1))]


class SmallImageViT(VisionTransformer):
    """torchvision's VisionTransformer sized by ``cfg``; its patch projection takes
    ``cfg.in_channels`` channels (initialised as torchvision initialises its own)."""

    def __init__(self, cfg: TorchvisionConfig):
        super().__init__(
            image_size=cfg.image_size,
            patch_size=VIT_PATCH,
            num_layers=cfg.blocks,
            num_heads=VIT_HEADS,
            hidden_dim=cfg.width,
            mlp_dim=VIT_MLP_RATIO * cfg.width,
            num_classes=cfg.num_classes,
        )
        self.cfg = cfg
        if cfg.in_channels != self.conv_proj.in_channels:
            self.conv_proj = nn.Conv2d(cfg.in_channels, cfg.width, VIT_PATCH, stride=VIT_PATCH)
            fan_in = cfg.in_channels * VIT_PATCH**2
            nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
            nn.init.zeros_(self.conv_proj.bias)


def build_torchvision(cfg: TorchvisionConfig) -> nn.Module:
    """The network of ``cfg``, freshly initialised from torch's global generator."""
    return SmallImageResNet(cfg) if cfg.variant == "tv_resnet" else SmallImageViT(cfg)
