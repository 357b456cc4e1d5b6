"""MLAS's final float32 step, shared by the com.microsoft quantized ops that replay onnxruntime's kernels
(profile option qlinear_pipeline="mlas-float32"):

    q = saturate(round_half_even(v) + zero_point)     (v a float32 value already divided by the scale)

The kernels replay MLAS's float32 arithmetic with numpy float32 operations (each one IEEE-rounded,
as the hardware rounds); the final rounding to an integer and the saturation go through refquant.arith.
"""

from __future__ import annotations

import numpy as np

from .. import arith
from ..dtypes import QType

__all__ = ["round_float32"]


_ONE = np.float32(1.0)


def round_float32(values: np.ndarray, qt: QType, zero_point=None, *, overflow: str = "saturate") -> np.ndarray:
    """saturate(round_half_even(values) + zero_point) for float32 values (MLAS's final step);
    without ``zero_point`` the values already include it.

    ``overflow="int32-indefinite"``: kernels that convert with cvtps_epi32 and no clamp first
    (QLinearAdd, QLinearMul) turn a value beyond int32, or NaN, into INT32_MIN, which the
    saturating packs make qmin.
    """
    return arith.quantize_values(np.asarray(values, np.float32), _ONE, zero_point, qt, precision=np.float32, overflow=overflow)
