"""Shared by the com.microsoft quantized ops: per-tensor parameters and MLAS's float32 steps.

    dequantize(q) = (q - zero_point) * scale
    quantize(v)   = saturate(round_half_even(v / scale) + zero_point)

The ``"mlas-float32"`` helpers replay onnxruntime's MLAS float32 arithmetic with
numpy float32 operations (each one IEEE-rounded, as the hardware rounds); the
final rounding to an integer and the saturation go through refquant.arith.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..dtypes import QType, qtype
from .common import require_dtype, require_input
from .integer import scalar_param, zero_point_of

__all__ = ["EIGHT_BIT", "QParams", "qparams", "mlas_pipeline", "round_float32"]

EIGHT_BIT = (T.UINT8, T.INT8)
FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization parameters: a float32 scale and a zero point (0-d arrays)."""

    scale: np.ndarray
    zero_point: np.ndarray

    @property
    def qtype(self) -> QType:
        return qtype(self.zero_point.dtype)

    def dequantize(self, q: np.ndarray, dtype=np.float64) -> np.ndarray:
        """(q - zero_point) * scale: exact in float64, one rounding in float32 (MLAS's dequantization)."""
        return arith.dequantize(q, self.scale, self.zero_point, dtype)

    def quantize(self, real: np.ndarray, precision=np.float64) -> np.ndarray:
        """saturate(round_half_even(real / scale) + zero_point), the division in ``precision``."""
        return arith.quantize(real, self.scale, self.zero_point, self.qtype, precision=precision)

    def same_as(self, other: QParams) -> bool:
        return bool(self.scale == other.scale and self.zero_point == other.zero_point)


def qparams(scale, zero_point, like: np.ndarray, what: str, *, zero_point_required: bool = False) -> QParams:
    """Validated per-tensor parameters of the tensor ``what`` whose values have ``like``'s type.

    scale: one float32 value, finite and > 0; zero point: one value of ``like``'s type (0 when absent).
    """
    require_input(scale, f"{what}_scale")
    if zero_point_required:
        require_input(zero_point, f"{what}_zero_point")
    require_dtype(scale, {T.FLOAT}, f"{what}_scale")
    arith.check_scale(scale, f"{what}_scale")
    zero_point = zero_point_of(zero_point, like, what)
    return QParams(scalar_param(scale, f"{what}_scale"), scalar_param(zero_point, f"{what}_zero_point"))


def mlas_pipeline(node) -> bool:
    """True when the profile replays onnxruntime's MLAS float32 kernels (qlinear_pipeline)."""
    return node.profile.qlinear_pipeline == "mlas-float32"


_ONE = np.float32(1.0)


def round_float32(values: np.ndarray, qt: QType, zero_point=None, *, overflow: str = "saturate") -> np.ndarray:
    """saturate(round_half_even(values) + zero_point) for float32 values (MLAS's final step);
    without ``zero_point`` the values already include it.

    ``overflow="int32-indefinite"``: kernels that convert with cvtps_epi32 and no clamp first
    (QLinearAdd, QLinearMul) turn a value beyond int32, or NaN, into INT32_MIN, which the
    saturating packs make qmin.
    """
    return arith.quantize(np.asarray(values, FLOAT32), _ONE, zero_point, qt, precision=FLOAT32, overflow=overflow)
