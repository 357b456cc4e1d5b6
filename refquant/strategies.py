"""Moved in refquant 0.2: the hypothesis strategies belong to the judge, ``refquant.backends.strategies``.

This module only says so: the interpreter imports neither hypothesis nor the judge.
"""

raise ImportError(
    "refquant.strategies moved to refquant.backends.strategies in refquant 0.2: "
    "write `from refquant.backends import strategies`"
)
