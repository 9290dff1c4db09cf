"""Analyses of trained runs: the three indices, effective parameter counts, the toy example."""

# Version of the per-run analysis output (indices and effective parameter count). Bump it when
# the analysis code changes its results: every run's analysis is then recomputed under a new
# address, while the trained runs are kept.
ANALYSIS_VERSION = 2
