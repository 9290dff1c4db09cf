"""Datasets: the Digitclutter generator and the preparation of the public archives."""

# Version of each source's prepared files. Bump it when the generator or the preparation code
# changes what it writes: every dataset of that source then gets a new address, so it is
# prepared again and every run trained on it is retrained (docs/pipeline.md, "Addresses").
PREPARATION_VERSION = {
    "digitclutter": 2,
    "cifar10": 1,
    "cifar100": 1,
    "mnist": 1,
    "fashion_mnist": 1,
}
