"""com.microsoft QuantizeLinear and DequantizeLinear (onnxruntime's contrib definitions, 16- and 4-bit included).

    QuantizeLinear:   y = saturate(round_half_even(x / y_scale) + y_zero_point)
    DequantizeLinear: y = (x - x_zero_point) * x_scale

As ai.onnx's versions (refquant.ops.quantize, same arithmetic and profile options), with
this domain's types: x and y_scale float or float16 (one type), y of type int8, uint8,
int16, uint16, int4 or uint4 (uint8 without a zero point). Without the ``axis``
attribute the parameters are per tensor; with it, 1-D along that axis.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype, require_input
from ..dtypes import dtype_name, qtype
from ..errors import DTypeError
from ..kernel_options import QuantizeOptions
from ..node import Node
from ..qparams import check_dequantize_zero_point, contrib_qdq_params
from ..registry import MS_DOMAIN, register

#: x of DequantizeLinear, y of QuantizeLinear
QUANTIZED_TYPES = (T.INT8, T.UINT8, T.INT16, T.UINT16, T.INT4, T.UINT4)
#: x of QuantizeLinear and the scales: float or float16
FLOAT_INPUT_TYPES = (T.FLOAT, T.FLOAT16)


@register("QuantizeLinear", since=(1,), domain=MS_DOMAIN, options=QuantizeOptions)
def contrib_quantize_linear(node: Node, x, y_scale=None, y_zero_point=None):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point), the division in y_scale's type."""
    require_input(y_scale, "y_scale")
    require_dtype(x, FLOAT_INPUT_TYPES, "x")
    if y_scale.dtype != x.dtype:
        raise DTypeError(f"y_scale has type {dtype_name(y_scale.dtype)}, it must match x ({dtype_name(x.dtype)})")
    if y_zero_point is not None:
        require_dtype(y_zero_point, QUANTIZED_TYPES, "y_zero_point")
    out = qtype(y_zero_point.dtype if y_zero_point is not None else np.uint8)
    scale, zero_point = contrib_qdq_params(node, x, y_scale, y_zero_point, "y")
    options: QuantizeOptions = node.options
    y = arith.quantize_values(
        x, scale, zero_point, out, precision=y_scale.dtype, nan=options.nan, overflow=options.overflow
    )
    return (y,)


@register("DequantizeLinear", since=(1,), domain=MS_DOMAIN)
def contrib_dequantize_linear(node: Node, x, x_scale=None, x_zero_point=None):
    """y = (x - x_zero_point) * x_scale, rounded once to x_scale's type (int32 x: no zero point but 0)."""
    require_input(x_scale, "x_scale")
    require_dtype(x, QUANTIZED_TYPES + (T.INT32,), "x")
    require_dtype(x_scale, FLOAT_INPUT_TYPES, "x_scale")
    check_dequantize_zero_point(x, x_zero_point)
    scale, zero_point = contrib_qdq_params(node, x, x_scale, x_zero_point, "x")
    return (arith.dequantize_values(x, scale, zero_point, x_scale.dtype),)
