"""DynamicQuantizeLinear's arithmetic, shared by ai.onnx DynamicQuantizeLinear (refquant/ops/quantize.py) and
com.microsoft DynamicQuantizeMatMul (refquant/ops/contrib_linear.py):

    scale = (max(x, 0) - min(x, 0)) / 255
    zp    = round(clip(0 - min(x, 0) / scale, 0, 255))
    y     = saturate(round_half_even(x / scale) + zp)             (uint8)

spec/ops/quantize.md states every choice, and the profile options that change it.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith, lowerings
from ..checks import require_dtype
from ..dtypes import qtype
from ..errors import NonFiniteError, QuantParamError
from ..kernel_options import DynamicQuantizeOptions

__all__ = ["dynamic_quantize"]


def dynamic_quantize(x: np.ndarray, options: DynamicQuantizeOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, scale, zero_point) of DynamicQuantizeLinear on float32 ``x``, uint8, under ``options`` (the profile's
    nan, dynamic_quantize_formula, dynamic_zero_range_scale and dynamic_scale_out_of_range)."""
    require_dtype(x, {T.FLOAT}, "x")
    u8 = qtype(T.UINT8)
    if np.isinf(x).any():
        raise NonFiniteError("x contains infinity; the scale would be infinite")
    has_nan = np.isnan(x).any()
    if has_nan and options.nan == "error":
        raise NonFiniteError("x contains NaN (profile option nan='error')")
    if options.reciprocal:
        return lowerings.dynamic_quantize_reciprocal(x)
    find_max, find_min = (np.nanmax, np.nanmin) if has_nan else (np.max, np.min)
    x_max = np.float32(max(0.0, find_max(x, initial=0.0)))
    x_min = np.float32(min(0.0, find_min(x, initial=0.0)))
    if x_max == x_min:
        scale = np.float32(options.zero_range_scale)
    else:  # max - min beyond float32 is inf (the Session runs kernels with floating-point exceptions as values)
        scale = (x_max - x_min) / np.float32(u8.qmax - u8.qmin)
    if not 0 < scale < np.inf and options.refuse_out_of_range_scale:
        problem = (
            "is too narrow for a float32 scale: (max - min) / 255 underflows to 0 and the zero point qmin - min / "
            "scale would divide by it" if scale == 0 else "overflows float32: max - min is infinite, and so would the scale be"
        )
        raise QuantParamError(f"x's range [{x_min}, {x_max}] {problem} (profile option dynamic_scale_out_of_range)")
    initial_zero_point = np.float32(u8.qmin) - x_min / scale  # x / 0 and 0 / 0 only where the profile allows them
    if np.isnan(initial_zero_point):  # 0 / 0: std::min(255.f, NaN) is 255
        initial_zero_point = np.float32(u8.qmax)
    zero_point = arith.saturate_int(np.rint(np.clip(initial_zero_point, u8.qmin, u8.qmax)), u8)
    y = arith.quantize_values(x, np.asarray(scale), zero_point, u8, precision=np.float32, nan=options.nan)
    return y, np.asarray(scale, np.float32), np.asarray(zero_point)
