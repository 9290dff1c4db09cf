"""iterconv: iterative convergence in residual networks, rebuilt as a reproducible pipeline."""

__version__ = "0.1.0"
