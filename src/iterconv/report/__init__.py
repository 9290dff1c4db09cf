"""Checks of the paper's claims on the pipeline's tables (``iterconv claims``)."""
