"""Training memory of a run, estimated by formula, to refuse runs no machine can train.

The network (iterconv.models.resnet): a stem convolution, ``stages`` stages of ``blocks``
pre-activation residual blocks at ``width * 2**s`` channels and side ``ceil(image / 2**s)``
(stage s > 0 starts with a downsampling block), a linear head. In float32 (4 bytes):

    memory = 4 * (batch_size * activations + PARAM_COPIES * parameters)

    activations = image_channels * image**2 + width * image**2                 (input, stem)
                + sum_s (blocks + [s > 0]) * TENSORS_PER_BLOCK * c_s * side_s**2
    parameters  = 9 * image_channels * width                                   (stem)
                + sum_s blocks * (18 * c_s**2 + 4 * c_s)                        (2 convs, 2 BNs)
                + sum_{s > 0} (27 * c_{s-1} * c_s + 2 * c_{s-1} + 2 * c_s)     (downsampling)
                + 2 * c_last + (c_last + 1) * classes                           (head)

A block keeps about TENSORS_PER_BLOCK activations of its size for the backward pass (its
input, two batch-norm outputs, two ReLU outputs, two convolution outputs, the sum); the
parameters have PARAM_COPIES copies (weights, gradients, SGD momentum, coupled gradients).
The estimate ignores the framework's workspace and the variants' small extras (VAN's gates,
the power-iteration vectors); the limit is meant to catch settings that cannot fit by far.
"""

from __future__ import annotations

# The largest memory of a single accelerator (NVIDIA H200: 141 GB); a run estimated above it
# cannot be trained on any one device.
MEMORY_LIMIT_BYTES = 141 * 10**9
TENSORS_PER_BLOCK = 8
PARAM_COPIES = 4
BYTES_PER_NUMBER = 4  # float32
# (image channels, image side, classes) of each dataset source; unknown sources: the largest
SHAPES = {
    "digitclutter": (1, 32, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "mnist": (1, 28, 10),
    "fashion_mnist": (1, 28, 10),
}
LARGEST_SHAPE = (3, 32, 100)


def training_memory_bytes(
    width: int, stages: int, blocks: int, batch_size: int, source: str = "cifar100"
) -> int:
    """Estimated bytes to train the network on ``source`` images (see the module docstring)."""
    image_channels, side, classes = SHAPES.get(source, LARGEST_SHAPE)
    activations = (image_channels + width) * side**2
    parameters = 9 * image_channels * width
    for s in range(stages):
        c = width * 2**s
        if s > 0:
            side = (side + 1) // 2
            parameters += 27 * (c // 2) * c + c + 2 * c  # conv c/2 -> c, conv c -> c, two BNs
        activations += (blocks + (s > 0)) * TENSORS_PER_BLOCK * c * side**2
        parameters += blocks * (18 * c**2 + 4 * c)
    c_last = width * 2 ** (stages - 1)
    parameters += 2 * c_last + (c_last + 1) * classes  # head: BN, linear
    return BYTES_PER_NUMBER * (batch_size * activations + PARAM_COPIES * parameters)
