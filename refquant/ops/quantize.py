"""QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear, every version.

    QuantizeLinear:        y = saturate(round_half_even(x / y_scale) + y_zero_point)
    DequantizeLinear:      y = (x - x_zero_point) * x_scale
    DynamicQuantizeLinear: scale = (max(x, 0) - min(x, 0)) / 255,
                           zp = round(clip(0 - min(x, 0) / scale, 0, 255)), y = QuantizeLinear(x, scale, zp)

spec/ops/quantize.md states every choice these kernels make.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..dtypes import FLOAT_TYPES, np_dtype, qtype
from ..errors import AttributeValueError, DTypeError, NonFiniteError, QuantParamError
from ..node import Node
from ..registry import register
from .common import dtype_name, require_dtype, types_at

VERSIONS = (10, 13, 19, 21, 23, 24, 25, 28)

#: quantized element types, by the version that introduced them
QUANTIZED_TYPES = {
    10: (T.UINT8, T.INT8),
    19: (T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ),
    21: (T.UINT16, T.INT16, T.UINT4, T.INT4),
    23: (T.FLOAT4E2M1,),
    25: (T.UINT2, T.INT2),
    28: (T.FLOAT6E2M3, T.FLOAT6E3M2),
}
#: QuantizeLinear's x, by version
Q_INPUT_TYPES = {10: (T.FLOAT, T.INT32), 19: (T.FLOAT16, T.BFLOAT16)}
#: scale types, by version (QuantizeLinear 19-21 further ties the scale to x's type)
SCALE_TYPES = {10: (T.FLOAT,), 19: (T.FLOAT16, T.BFLOAT16), 24: (T.FLOAT8E8M0,)}
Q_SCALE_TYPES = {10: (T.FLOAT,), 19: (T.FLOAT16, T.BFLOAT16, T.INT32), 24: (T.FLOAT8E8M0,)}


def quant_params(node: Node, x, scale, zero_point, axis_allowed: bool):
    """Validated (scale, zero_point) broadcast against x, for Q and DQ alike."""
    arith.check_scale(scale, "scale")
    if zero_point is not None and np.shape(zero_point) != np.shape(scale) and not (
        np.size(zero_point) == 1 and np.size(scale) == 1
    ):
        raise QuantParamError(f"zero point has shape {np.shape(zero_point)}, scale has {np.shape(scale)}: they must match")
    axis = node.attr("axis", 1, int) if axis_allowed else None
    block_size = node.attr("block_size", 0, int) if node.version >= 21 else 0
    scale = arith.param_for(scale, x.shape, axis=axis, block_size=block_size, what="scale")
    if zero_point is not None:
        zero_point = arith.param_for(zero_point, x.shape, axis=axis, block_size=block_size, what="zero point")
    return scale, zero_point


def _division_precision(node: Node, x: np.ndarray, scale: np.ndarray, *, widen: bool = False) -> np.dtype:
    """The type the division x / scale is computed in.

    ONNX: the scale's type, or the ``precision`` attribute (opset >= 23).
    Where that type is not a real float (an int32 or float8e8m0 scale), x's
    float type is used, or float64 for int32 x. ``widen`` (profile option
    quantize_division="float32") divides float16/bfloat16 in float32.
    """
    precision = named_division_precision(node, x, scale)
    return np.dtype(np.float32) if widen and precision.itemsize == 2 else precision


def named_division_precision(node: Node, x: np.ndarray, scale: np.ndarray) -> np.dtype:
    """The type ONNX names for QuantizeLinear's division x / scale: the ``precision`` attribute (opset 23 on)
    when given, else the scale's type, else x's (float64 for an integer scale and x; profile option quantize_division
    may widen it)."""
    if node.version >= 23 and node.attr("precision", 0, int):
        precision = node.attr("precision", 0, int)
        if precision not in FLOAT_TYPES:
            raise AttributeValueError(f"precision must be a float type, got {precision}")
        return np_dtype(precision)
    if scale.dtype.kind == "f" or scale.dtype == np_dtype(T.BFLOAT16):
        return scale.dtype
    return x.dtype if x.dtype.kind == "f" or x.dtype == np_dtype(T.BFLOAT16) else np.dtype(np.float64)


@register("QuantizeLinear", since=VERSIONS)
def quantize_linear(node: Node, x, y_scale, y_zero_point=None):
    v = node.version
    require_dtype(x, types_at(Q_INPUT_TYPES, v), "x")
    require_dtype(y_scale, types_at(Q_SCALE_TYPES if v >= 23 else SCALE_TYPES, v), "y_scale")
    if 19 <= v < 23 and y_scale.dtype != x.dtype:
        raise DTypeError(f"y_scale has type {dtype_name(y_scale.dtype)}, it must match x ({dtype_name(x.dtype)}) at this opset")
    output_type = node.attr("output_dtype", 0, int) if v >= 21 else 0
    if y_zero_point is not None:
        require_dtype(y_zero_point, types_at(QUANTIZED_TYPES, v), "y_zero_point")
        zp_type = qtype(y_zero_point.dtype).proto
        if output_type and output_type != zp_type:
            raise AttributeValueError(
                f"output_dtype {output_type} disagrees with y_zero_point's type {dtype_name(y_zero_point.dtype)}"
            )
        output_type = zp_type
    output_type = output_type or T.UINT8
    if output_type not in types_at(QUANTIZED_TYPES, v):
        raise AttributeValueError(f"output_dtype {output_type} is not a quantized type at opset {v}")
    scale, zero_point = quant_params(node, x, y_scale, y_zero_point, axis_allowed=v >= 13)
    qt = qtype(output_type)
    if node.profile.quantize_formula == "fake-quantize":
        return (arith.fake_quantize(x, scale, zero_point, qt, nan=node.profile.nan),)
    y = arith.quantize(
        x,
        scale,
        zero_point,
        qt,
        precision=_division_precision(node, x, y_scale, widen=node.profile.quantize_division == "float32"),
        saturate=bool(node.attr("saturate", 1, int)) if v >= 19 else True,
        nan=node.profile.nan,
        overflow=node.profile.quantize_overflow,
    )
    return (y,)


def check_dequantize_zero_point(x: np.ndarray, x_zero_point: np.ndarray | None) -> None:
    """x_zero_point has x's type; int32 x takes none (or zero): the spec defines no int32 zero point."""
    if x_zero_point is None:
        return
    if x_zero_point.dtype != x.dtype:
        raise DTypeError(
            f"x_zero_point has type {dtype_name(x_zero_point.dtype)}, it must match x ({dtype_name(x.dtype)})"
        )
    if x.dtype == np.int32 and np.any(x_zero_point != 0):
        raise QuantParamError("int32 input takes no zero point (or zero): the spec defines none for it")


@register("DequantizeLinear", since=VERSIONS)
def dequantize_linear(node: Node, x, x_scale, x_zero_point=None):
    v = node.version
    require_dtype(x, types_at(QUANTIZED_TYPES, v) | {T.INT32}, "x")
    require_dtype(x_scale, types_at(SCALE_TYPES, v), "x_scale")
    check_dequantize_zero_point(x, x_zero_point)
    output_type = node.attr("output_dtype", 0, int) if v >= 23 else 0
    if output_type:
        if output_type not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
            raise AttributeValueError(f"output_dtype {output_type} must be float, float16 or bfloat16")
        out_dtype = np_dtype(output_type)
    elif x_scale.dtype == np_dtype(T.FLOAT8E8M0):
        raise AttributeValueError("a float8e8m0 x_scale needs output_dtype (the output cannot be float8e8m0)")
    else:
        out_dtype = x_scale.dtype
    scale, zero_point = quant_params(node, x, x_scale, x_zero_point, axis_allowed=v >= 13)
    formula, subnormals = node.profile.dequantize_formula, node.profile.dequantize_subnormals
    if x.dtype == np.int32 and node.profile.dequantize_int32 != "exact" and formula == "exact":
        # x - zp rounded to float32 first (onnxruntime, onnx.reference): spec/ops/quantize.md
        return (arith.dequantize_int32_via_float32(x, scale, zero_point, out_dtype, product=node.profile.dequantize_int32),)
    if formula == "exact" and subnormals == "keep":
        return (arith.dequantize(x, scale, zero_point, out_dtype),)
    return (arith.dequantize_lowered(x, scale, zero_point, out_dtype, formula=formula, subnormals=subnormals),)


@register("DynamicQuantizeLinear", since=(11,))
def dynamic_quantize_linear(node: Node, x):
    require_dtype(x, {T.FLOAT}, "x")
    u8 = qtype(T.UINT8)
    if np.isinf(x).any():
        raise NonFiniteError("x contains infinity; the scale would be infinite")
    has_nan = np.isnan(x).any()
    if has_nan and node.profile.nan == "error":
        raise NonFiniteError("x contains NaN (profile option nan='error')")
    if node.profile.dynamic_quantize_formula == "reciprocal":
        return arith.dynamic_quantize_reciprocal(x)
    find_max, find_min = (np.nanmax, np.nanmin) if has_nan else (np.max, np.min)
    x_max = np.float32(max(0.0, find_max(x, initial=0.0)))
    x_min = np.float32(min(0.0, find_min(x, initial=0.0)))
    if x_max == x_min:
        scale = np.float32(node.profile.dynamic_zero_range_scale)
    else:
        with np.errstate(over="ignore"):  # max - min beyond float32: refused below unless the profile allows it
            scale = (x_max - x_min) / np.float32(u8.qmax - u8.qmin)
    if not 0 < scale < np.inf and node.profile.dynamic_scale_out_of_range == "error":
        problem = (
            "is too narrow for a float32 scale: (max - min) / 255 underflows to 0 and the zero point qmin - min / "
            "scale would divide by it" if scale == 0 else "overflows float32: max - min is infinite, and so would the scale be"
        )
        raise QuantParamError(f"x's range [{x_min}, {x_max}] {problem} (profile option dynamic_scale_out_of_range)")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # only as the profile allows
        initial_zero_point = np.float32(u8.qmin) - x_min / scale
    if np.isnan(initial_zero_point):  # 0 / 0: std::min(255.f, NaN) is 255
        initial_zero_point = np.float32(u8.qmax)
    zero_point = arith.saturate_int(np.rint(np.clip(initial_zero_point, u8.qmin, u8.qmax)), u8)
    y = arith.quantize(x, np.asarray(scale), zero_point, u8, precision=np.float32, nan=node.profile.nan)
    return y, np.asarray(scale, np.float32), np.asarray(zero_point)
