"""Training: run configuration, soft gradient coupling, the epoch loop."""

# Coupling kernels of soft gradient coupling (iterconv.train.coupling); here so that checking a
# run's configuration does not import torch.
KERNELS = ("uniform", "triangular")
