"""Figures of the paper, drawn from the pipeline's tables (``results/<preset>/tables/*.csv``).

Statistics live in :mod:`iterconv.analysis` and :mod:`iterconv.report`; this package only
draws. Plotting functions take data frames and ``ax=None``, return the axes and never save;
:mod:`iterconv.figures.registry` composes them into the paper's figures and
:mod:`iterconv.figures.cli` saves them.
"""
