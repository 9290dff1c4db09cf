"""Training: run configuration, soft gradient coupling, the epoch loop."""

# Coupling kernels of soft gradient coupling (iterconv.train.coupling); here so that checking a
# run's configuration does not import torch.
KERNELS = ("uniform", "triangular")

# Version of the training code's results. Bump it when a change of the training loop, the models
# or the data pipeline changes what a run learns: every run then gets a new address and is
# retrained (docs/pipeline.md, "Addresses"); speed-only changes keep it.
TRAINING_VERSION = 3
