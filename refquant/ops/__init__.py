"""Operator kernels, one op family per module. Importing this package registers them all."""

from . import quantize  # noqa: F401
