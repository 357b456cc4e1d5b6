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

from .. import arith, lowerings
from ..checks import require_dtype
from ..dtypes import EIGHT_BIT_INTS, FLOAT8_TYPES, FLOAT_TYPES, dtype_name, np_dtype, qtype, types_at
from ..errors import AttributeValueError, DTypeError
from ..kernel_options import DequantizeOptions, DynamicQuantizeOptions, QuantizeOptions
from ..node import Node
from ..qparams import check_dequantize_zero_point, qdq_params
from ..registry import register
from .dynamic_quantization import dynamic_quantize

VERSIONS = (10, 13, 19, 21, 23, 24, 25, 28)

#: quantized element types, by the version that introduced them
QUANTIZED_TYPES = {
    10: EIGHT_BIT_INTS,
    19: FLOAT8_TYPES,
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


def _division_precision(node: Node, x: np.ndarray, scale: np.ndarray, *, widen: bool) -> np.dtype:
    """The type the division x / scale is computed in.

    ONNX: the scale's type, or the ``precision`` attribute (opset >= 23).
    Where that type is not a real float (an int32 or float8e8m0 scale), x's
    float type is used, or float64 for int32 x. ``widen`` (QuantizeOptions.widen_half_division,
    profile option quantize_division="float32") divides float16/bfloat16 in float32.
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


@register("QuantizeLinear", since=VERSIONS, options=QuantizeOptions)
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
    scale, zero_point = qdq_params(node, x, y_scale, y_zero_point, axis_allowed=v >= 13)
    qt = qtype(output_type)
    options: QuantizeOptions = node.options
    if options.fake_quantize:
        return (lowerings.fake_quantize(x, scale, zero_point, qt, nan=options.nan),)
    y = arith.quantize_values(
        x,
        scale,
        zero_point,
        qt,
        precision=_division_precision(node, x, y_scale, widen=options.widen_half_division),
        saturate=bool(node.attr("saturate", 1, int)) if v >= 19 else True,
        nan=options.nan,
        overflow=options.overflow,
    )
    return (y,)


@register("DequantizeLinear", since=VERSIONS, options=DequantizeOptions)
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
    scale, zero_point = qdq_params(node, x, x_scale, x_zero_point, axis_allowed=v >= 13)
    options: DequantizeOptions = node.options
    formula, subnormals = options.formula, options.subnormals
    if x.dtype == np.int32 and options.int32_formula != "exact" and formula == "exact":
        # x - zp rounded to float32 first (onnxruntime, onnx.reference): spec/ops/quantize.md
        return (lowerings.dequantize_int32_via_float32(x, scale, zero_point, out_dtype, product=options.int32_formula),)
    if formula == "exact" and subnormals == "keep":
        return (arith.dequantize_values(x, scale, zero_point, out_dtype),)
    return (lowerings.dequantize_lowered(x, scale, zero_point, out_dtype, formula=formula, subnormals=subnormals),)


@register("DynamicQuantizeLinear", since=(11,), options=DynamicQuantizeOptions)
def dynamic_quantize_linear(node: Node, x):
    """scale = (max(x, 0) - min(x, 0)) / 255, zp = round(clip(0 - min(x, 0) / scale, 0, 255)),
    y = QuantizeLinear(x, scale, zp): (y, scale, zp), uint8."""
    return dynamic_quantize(x, node.options)
